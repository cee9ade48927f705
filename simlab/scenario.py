"""The one scenario builder: options by name in, a workload, platform and architecture out.

The command line, sweep files and the dashboard all describe a scenario as
options named like the command line's (``connections``, ``cpu_ms``,
``workers``...) and all build it here, so the same options give the same
scenario with the same defaults everywhere. ``OPTIONS`` is the table of
every option: its group, its type and bounds, its default and its help.
The command line makes its arguments from it, and a sweep file is checked
against it.

Values are checked here whatever their source: a bad one raises
``UserError`` naming the option (``--workers: must be an integer >= 1,
got 0``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from simlab.distributions import parse_distribution
from simlab.errors import UserError
from simlab.overload import options as overload_options
from simlab.params import SCENARIOS, Architecture, Platform, Trace, Workload
from simlab.platforms import PRESETS, load_platform

__all__ = ["ENGINES", "OPTIONS", "Option", "RunOptions", "Scenario", "build", "run_options"]

ENGINES = ("des", "fast", "auto")
UNSET = object()


@dataclass(frozen=True)
class Option:
    """One scenario option: its name, what values it takes, its default and help.

    ``kind`` is ``int``, ``float``, ``choice``, ``text``, ``bool``, ``path``,
    or one of ``simlab.overload.options.KINDS`` (a rate or a schedule, a delay);
    ``low`` bounds a number from below (``strict``: it must be above it), ``high`` from above;
    ``word`` is a word that stands for None (``persistent``, ``unbounded``...).
    """

    name: str
    group: str
    kind: str
    help: str
    default: Any = UNSET
    low: float | None = None
    strict: bool = False
    word: str | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def fail(self, message: str) -> UserError:
        return UserError(f"{self.flag}: {message}")

    def check(self, value: Any) -> Any:  # noqa: PLR0911, PLR0912 - one return per kind of value
        """A typed value (from a sweep file, the dashboard or ``parse``), checked."""
        if self.word is not None and (value is None or value == self.word):
            return None
        alt = f" or {self.word!r}" if self.word else ""
        if self.kind in overload_options.KINDS:
            try:
                return overload_options.check(self.kind, value)
            except UserError as exc:
                raise self.fail(str(exc)) from None
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int) or not self._above(value):
                raise self.fail(f"must be an integer {self._bound()}{alt}, got {value!r}")
            return value
        if self.kind == "float":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or not self._above(value):
                raise self.fail(f"must be a number {self._bound()}{alt}, got {value!r}")
            return float(value)
        if self.kind == "choice":
            if value not in self.choices:
                raise self.fail(f"must be one of {', '.join(self.choices)}, got {value!r}")
            return value
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise self.fail(f"must be true or false, got {value!r}")
            return value
        if self.kind == "path":
            if not isinstance(value, str | Path) or not str(value):
                raise self.fail(f"must be a file path, got {value!r}")
            return Path(value)
        if not isinstance(value, str) or not value:
            raise self.fail(f"must be a non-empty string, got {value!r}")
        return value

    def parse(self, text: str) -> Any:
        """A value from the command line's text, checked."""
        if self.word is not None and text.strip().lower() == self.word:
            return None
        if self.kind == "int":
            try:
                return self.check(int(text))
            except ValueError:
                raise self._typed("an integer", text) from None
        if self.kind == "float":
            try:
                return self.check(float(text))
            except ValueError:
                raise self._typed("a number", text) from None
        return self.check(text)

    def _typed(self, what: str, text: str) -> UserError:
        alt = f" or {self.word!r}" if self.word else ""
        return self.fail(f"must be {what} {self._bound()}{alt}, got {text!r}")

    def _above(self, value: float) -> bool:
        if self.high is not None and value > self.high:
            return False
        if self.low is None:
            return True
        return value > self.low if self.strict else value >= self.low

    def _bound(self) -> str:
        if self.low is None:
            return ""
        if self.high is not None:
            return f"in [{self.low:g}, {self.high:g}]"
        return f"{'>' if self.strict else '>='} {self.low:g}"

    def shown_default(self) -> str:
        if self.default is UNSET:
            return ""
        if self.default is None:
            return f" (default {self.word})" if self.word else ""
        return (
            f" (default {self.default:g})"
            if isinstance(self.default, float)
            else (f" (default {self.default})")
        )


def _opt(name: str, group: str, kind: str, help: str, **kw: Any) -> Option:
    return Option(name, group, kind, help, **kw)


_SCENARIO_NAMES = tuple(SCENARIOS)
_PRESET_NAMES = ", ".join(PRESETS)

# Every scenario option. The defaults of the workload come from the chosen
# ``scenario`` (c10k unless given); the others are listed here.
OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        _opt(
            "scenario",
            "workload",
            "choice",
            "starting workload; the options below override it",
            default="c10k",
            choices=_SCENARIO_NAMES,
        ),
        _opt("connections", "workload", "int", "client connections N (c10k: 10000)", low=1),
        _opt(
            "rate",
            "workload",
            "rate",
            "open Poisson arrivals, total requests/s; or a schedule, e.g. "
            "'100/s for 60s, 2000/s for 10s, 100/s for 120s', or a CSV of time_s,rate "
            "rows (FILE.csv), piecewise constant; a schedule's length sets --duration "
            "unless it is given",
            low=0,
            strict=True,
            metavar="RATE|SCHEDULE",
        ),
        _opt(
            "think_ms",
            "workload",
            "float",
            "closed loop: each client thinks this long (exponential) between requests",
            low=0,
            strict=True,
        ),
        _opt(
            "trace",
            "workload",
            "path",
            "replay arrivals from a CSV of time_s,connection rows",
            metavar="CSV",
        ),
        _opt("cpu_ms", "workload", "float", "CPU per request, ms (c10k: 1)", low=0),
        _opt(
            "cpu_dist",
            "workload",
            "text",
            "fixed, exp, lognormal[:CV] or empirical:FILE",
            default="fixed",
        ),
        _opt("io_ms", "workload", "float", "latency of one backend call, ms (c10k: 50)", low=0),
        _opt("io_dist", "workload", "text", "distribution of a call's latency", default="fixed"),
        _opt("calls", "workload", "int", "backend calls per request (c10k: 1)", low=0),
        _opt(
            "fanout",
            "workload",
            "choice",
            "how the calls are made",
            choices=("sequential", "parallel"),
        ),
        _opt(
            "requests_per_connection",
            "workload",
            "int",
            "K requests then reconnect, or 'persistent' (default)",
            low=1,
            word="persistent",
            metavar="K",
        ),
        _opt(
            "client_send_ms",
            "workload",
            "float",
            "slow clients: time a client takes to send its request, ms",
            default=0.0,
            low=0,
        ),
        _opt(
            "client_recv_ms",
            "workload",
            "float",
            "slow clients: time a client takes to read its answer, ms",
            default=0.0,
            low=0,
        ),
        _opt(
            "client_dist",
            "workload",
            "text",
            "distribution of both transfer times (fixed, exp, lognormal[:CV], empirical:FILE)",
            default="fixed",
        ),
        _opt("request_kib", "workload", "float", "request size, KiB", default=1.0, low=0),
        _opt("response_kib", "workload", "float", "response size, KiB", default=4.0, low=0),
        _opt(
            "platform",
            "platform",
            "text",
            f"preset ({_PRESET_NAMES}), profile name or profile JSON file; a calibrated "
            "profile of a preset's name in $SIMLAB_DATA/profiles/ (default ./data/profiles/) "
            "replaces the preset, NAME-preset forces the preset",
            default="cpython",
        ),
        _opt(
            "cores",
            "platform",
            "int",
            "CPU cores, or 'unlimited' (default: the platform's)",
            low=1,
            word="unlimited",
        ),
        _opt("gil", "platform", "bool", "one thread per process runs at a time"),
        _opt(
            "workers",
            "architecture",
            "int",
            "pool size per process (thread-pool, reactor-pool)",
            default=32,
            low=1,
        ),
        _opt("processes", "architecture", "int", "pre-forked server processes", default=1, low=1),
        _opt(
            "loops",
            "architecture",
            "int",
            "event loops per process, each on its own thread (async)",
            default=1,
            low=1,
        ),
        _opt(
            "backlog",
            "architecture",
            "int",
            "bound of the accept or work queue; overflow is dropped",
            default=None,
            low=0,
            word="unbounded",
        ),
        _opt(
            "fronts",
            "architecture",
            "int",
            "front event loops of two-tier (nginx workers)",
            default=1,
            low=1,
        ),
        _opt(
            "hop",
            "architecture",
            "choice",
            "two-tier's hop to the back: a connection per request or kept alive",
            default="per-request",
            choices=("per-request", "kept-alive"),
        ),
        _opt(
            "duration",
            "run",
            "float",
            "measured simulated seconds",
            default=60.0,
            low=0,
            strict=True,
        ),
        _opt(
            "warmup",
            "run",
            "float",
            "simulated seconds discarded first, or 'auto': several relaxation times of the "
            "bottleneck, checked by MSER-5",
            default=5.0,
            low=0,
            word="auto",
        ),
        _opt("seed", "run", "int", "root seed", default=1, low=0),
        _opt(
            "replications",
            "run",
            "int",
            "independent replications for confidence intervals",
            default=5,
            low=1,
        ),
        _opt(
            "engine",
            "run",
            "choice",
            "des (events), fast (the DES's requests, compiled, where it applies) or auto",
            default="des",
            choices=ENGINES,
        ),
        _opt(
            "jobs",
            "run",
            "int",
            "processes that run the replications side by side, or 'auto': one per core "
            "when the run is long enough to gain (1: one after another; always one "
            "with --timeline, --warmup auto or an overload option, which read the "
            "requests again)",
            default=None,
            low=1,
            word="auto",
        ),
    )
}
OPTIONS.update({spec["name"]: Option(**spec) for spec in overload_options.SPECS})
# Every platform number can be set by name too (``--set KEY=VALUE`` on the command line).
PLATFORM_NUMBERS = Platform.numeric_fields()
for _name in PLATFORM_NUMBERS:
    OPTIONS[_name] = Option(_name, "platform number", "float", f"platform's {_name}", low=0)


@dataclass(frozen=True)
class RunOptions:
    """How long and how many times a scenario is simulated."""

    duration: float = 60.0
    # Seconds, or "auto" (``simulation.auto_warmup``).
    warmup: float | Literal["auto"] = 5.0
    seed: int = 1
    replications: int = 5
    engine: str = "des"
    timeline: bool = False
    # Worker processes for the replications; None: ``simulate``'s choice.
    jobs: int | None = None

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "duration": self.duration,
            "warmup": self.warmup,
            "seed": self.seed,
            "replications": self.replications,
            "engine": self.engine,
            "jobs": self.jobs,
        }
        if self.timeline:
            out["timeline"] = True
        return out


@dataclass(frozen=True)
class Scenario:
    workload: Workload
    platform: Platform
    architecture: Architecture
    run: RunOptions


def checked(options: Mapping[str, Any]) -> dict[str, Any]:
    """Every option checked against the table, under its canonical name."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        name = key.replace("-", "_")
        option = OPTIONS.get(name)
        if option is None:
            raise UserError(f"unknown option {key!r}")
        out[name] = option.check(value)
    return out


def _default(name: str) -> Any:
    return OPTIONS[name].default


def build(options: Mapping[str, Any]) -> Scenario:
    """The scenario the options describe; an option not given takes its default."""
    o = checked(options)
    w = workload(o)
    run = run_options(o)
    if w.schedule is not None and w.schedule.span is not None and "duration" not in o:
        # A schedule written with its length runs to its end, unless told otherwise.
        # (An automatic warm-up is not known yet: the schedule's whole length runs.)
        warm = run.warmup if isinstance(run.warmup, float | int) else 0.0
        run = replace(run, duration=max(w.schedule.span - warm, 1.0))
    return Scenario(w, platform(o), architecture(o), run)


def workload(o: Mapping[str, Any]) -> Workload:
    base = SCENARIOS[o.get("scenario", _default("scenario"))]()
    changes: dict[str, Any] = {}
    if "connections" in o:
        changes["connections"] = o["connections"]
    given = [k for k in ("rate", "think_ms", "trace") if o.get(k) is not None]
    if len(given) > 1:
        raise UserError(f"give one of --rate, --think-ms or --trace, not {' and '.join(given)}")
    if given:
        changes.update(rate=None, think=None, trace=None)
        if "rate" in given:
            changes.update(overload_options.rate_changes(o["rate"]))
        elif "think_ms" in given:
            changes["think"] = parse_distribution("exp", o["think_ms"] / 1e3, option="--think-ms")
        else:
            changes["trace"] = read_trace(o["trace"])
    cpu_mean = o["cpu_ms"] / 1e3 if "cpu_ms" in o else base.cpu.mean
    cpu_dist = o.get("cpu_dist", _default("cpu_dist"))
    changes["cpu"] = parse_distribution(cpu_dist, cpu_mean, option="--cpu-dist")
    io_mean = o["io_ms"] / 1e3 if "io_ms" in o else base.io.mean
    io_dist = o.get("io_dist", _default("io_dist"))
    changes["io"] = parse_distribution(io_dist, io_mean, option="--io-dist")
    for key in ("calls", "fanout", "requests_per_connection", "request_kib", "response_kib"):
        if key in o:
            changes[key] = o[key]
    changes.update(overload_options.workload_changes(o, changes["io"]))
    client_dist = o.get("client_dist", _default("client_dist"))
    for key, field_name in (("client_send_ms", "client_send"), ("client_recv_ms", "client_recv")):
        mean = o.get(key, _default(key)) / 1e3
        # A zero time is no slow client whatever the distribution.
        dist = client_dist if mean > 0 else "fixed"
        changes[field_name] = parse_distribution(dist, mean, option="--client-dist")
    return base.with_(**changes)


def platform(o: Mapping[str, Any]) -> Platform:
    try:
        chosen = load_platform(o.get("platform", _default("platform")))
    except UserError as exc:
        raise UserError(f"--{exc}") from None  # "--platform: ...", naming the option
    changes = {k: v for k, v in o.items() if k in PLATFORM_NUMBERS}
    for key in ("cores", "gil"):
        if key in o:
            changes[key] = o[key]
    try:
        return chosen.with_(**changes)
    except UserError as exc:
        raise UserError(f"--set/--cores: {exc}") from None


def architecture(o: Mapping[str, Any]) -> Architecture:
    return Architecture(
        workers=o.get("workers", _default("workers")),
        processes=o.get("processes", _default("processes")),
        backlog=o.get("backlog", _default("backlog")),
        limits=overload_options.limits(o),
        fronts=o.get("fronts", _default("fronts")),
        hop=o.get("hop", _default("hop")),
        loops=o.get("loops", _default("loops")),
    )


def run_options(o: Mapping[str, Any]) -> RunOptions:
    values = {k: o.get(k, _default(k)) for k in RunOptions.__dataclass_fields__}
    # The option's word "auto" checks to None, like every option's word.
    if values["warmup"] is None:
        values["warmup"] = "auto"
    return RunOptions(**values)


def read_trace(path: Path) -> Trace:
    """Arrivals to replay, from a CSV of ``time_s,connection`` rows (a header is allowed)."""
    try:
        with path.open(newline="") as fh:
            rows = [r for r in csv.reader(fh) if r and not r[0].startswith("#")]
    except OSError as exc:
        raise UserError(f"--trace: cannot read {str(path)!r}: {exc.strerror}") from None
    if rows and not _is_number(rows[0][0]):
        rows = rows[1:]  # a header line
    times: list[float] = []
    conns: list[int] = []
    for k, row in enumerate(rows, 1):
        try:
            times.append(float(row[0]))
            conns.append(int(row[1]))
        except (ValueError, IndexError):
            raise UserError(f"--trace: row {k} is not 'time_s,connection': {row!r}") from None
    try:
        return Trace(tuple(times), tuple(conns))
    except UserError as exc:
        raise UserError(f"--trace: {exc}") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
