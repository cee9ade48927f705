"""The ``simlab`` command line.

Options are named the same in every subcommand (DESIGN.md). A bad option
gets one line naming it on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import csv
import math
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from simlab import __version__, commands, lab_commands, plan_commands
from simlab.distributions import parse_distribution
from simlab.models import MODELS
from simlab.params import SCENARIOS, Architecture, Platform, Trace, Workload
from simlab.platforms import load_platform
from simlab.real import commands as real_commands
from simlab.real import peers
from simlab.real.measure import TARGETS
from simlab.real.options import SERVER_MODELS
from simlab.real.peers.units import RUNTIMES

__all__ = ["main"]


class UsageError(Exception):
    """A bad option: reported in one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints the whole usage block; one line that names the option is enough.
        sys.stderr.write(f"simlab: error: {message} (see simlab {self._sub_name()}--help)\n")
        raise SystemExit(2)

    def _sub_name(self) -> str:
        parts = self.prog.split()
        return f"{parts[-1]} " if len(parts) > 1 else ""


# ------------------------------------------------------------------ value types


def _number(text: str, *, integer: bool, low: float, strict: bool = False) -> Any:
    try:
        value: float = int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise argparse.ArgumentTypeError(f"must be {kind}, got {text!r}") from None
    if not math.isfinite(value) or value < low or (strict and value == low):
        op = ">" if strict else ">="
        raise argparse.ArgumentTypeError(f"must be {op} {low:g}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return int(_number(text, integer=True, low=1))


def nonneg_int(text: str) -> int:
    return int(_number(text, integer=True, low=0))


def positive_float(text: str) -> float:
    return float(_number(text, integer=False, low=0, strict=True))


def nonneg_float(text: str) -> float:
    return float(_number(text, integer=False, low=0))


def _or_word(word: str, inner: Callable[[str], int]) -> Callable[[str], int | None]:
    def parse(text: str) -> int | None:
        if text.strip().lower() == word:
            return None
        try:
            return inner(text)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"{exc} (or {word!r})") from None

    parse.__name__ = f"int_or_{word}"
    return parse


def model_name(text: str) -> str:
    if text not in MODELS:
        raise argparse.ArgumentTypeError(
            f"unknown model {text!r} (choose from: {', '.join(MODELS)})"
        )
    return text


def model_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError("must name at least one model")
    return [model_name(n) for n in names]


def setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


# --------------------------------------------------------------------- options


def add_common(p: argparse.ArgumentParser) -> None:
    """The options of the simulating subcommands."""
    add_workload(p, trace=True)
    add_platform(p)
    add_architecture(p)
    add_run(p, real=False)


def add_workload(p: argparse.ArgumentParser, *, trace: bool) -> None:
    wl = p.add_argument_group("workload")
    wl.add_argument(
        "--scenario",
        choices=list(SCENARIOS),
        default="c10k",
        help="starting workload; the options below override it (default c10k)",
    )
    wl.add_argument("--connections", type=positive_int, help="client connections N (c10k: 10000)")
    arr = wl.add_mutually_exclusive_group()
    arr.add_argument("--rate", type=positive_float, help="open Poisson arrivals, total requests/s")
    arr.add_argument(
        "--think-ms",
        type=positive_float,
        help="closed loop: each client thinks this long (exponential) between requests",
    )
    if trace:
        arr.add_argument(
            "--trace",
            type=Path,
            metavar="CSV",
            help="replay arrivals from a CSV of time_s,connection rows",
        )
    wl.add_argument("--cpu-ms", type=nonneg_float, help="CPU per request, ms (c10k: 1)")
    wl.add_argument(
        "--cpu-dist",
        default="fixed",
        help="fixed, exp, lognormal[:CV] or empirical:FILE (default fixed)",
    )
    wl.add_argument("--io-ms", type=nonneg_float, help="latency of one backend call, ms (c10k: 50)")
    wl.add_argument("--io-dist", default="fixed", help="distribution of a call's latency")
    wl.add_argument("--calls", type=nonneg_int, help="backend calls per request (c10k: 1)")
    wl.add_argument("--fanout", choices=["sequential", "parallel"], help="how the calls are made")
    wl.add_argument(
        "--requests-per-connection",
        type=_or_word("persistent", positive_int),
        metavar="K",
        default=argparse.SUPPRESS,
        help="K requests then reconnect, or 'persistent' (default)",
    )


def add_platform(p: argparse.ArgumentParser) -> None:
    pl = p.add_argument_group("platform")
    pl.add_argument(
        "--platform",
        default="cpython",
        help="preset (ideal, cpython, jvm, go), profile name or profile JSON file",
    )
    pl.add_argument(
        "--cores",
        type=_or_word("unlimited", positive_int),
        default=argparse.SUPPRESS,
        help="CPU cores, or 'unlimited' (default: the platform's)",
    )
    pl.add_argument(
        "--gil",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one thread per process runs at a time",
    )
    pl.add_argument(
        "--set",
        type=setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a platform number: {', '.join(Platform.numeric_fields())}",
    )


def add_architecture(p: argparse.ArgumentParser) -> None:
    ar = p.add_argument_group("architecture")
    ar.add_argument(
        "--workers",
        type=positive_int,
        default=32,
        help="pool size per process (thread-pool, reactor-pool; default 32)",
    )
    ar.add_argument("--processes", type=positive_int, default=1, help="pre-forked server processes")
    ar.add_argument(
        "--backlog",
        type=_or_word("unbounded", nonneg_int),
        default=None,
        help="bound of the accept or work queue; overflow is dropped (default unbounded)",
    )


def add_run(p: argparse.ArgumentParser, *, real: bool) -> None:
    run = p.add_argument_group("run")
    seconds = "seconds" if real else "simulated seconds"
    run.add_argument(
        "--duration",
        type=positive_float,
        default=10.0 if real else 60.0,
        help=f"measured {seconds} (default {10 if real else 60})",
    )
    run.add_argument(
        "--warmup",
        type=nonneg_float,
        default=2.0 if real else 5.0,
        help=f"{seconds} discarded first (default {2 if real else 5})",
    )
    run.add_argument("--seed", type=nonneg_int, default=1, help="root seed (default 1)")
    if not real:
        run.add_argument(
            "--engine",
            choices=["des", "fast", "auto"],
            default="des",
            help="des (events), fast (FCFS recursion where it applies) or auto (default des)",
        )
        run.add_argument(
            "--replications",
            type=positive_int,
            default=5,
            help="independent replications for confidence intervals (default 5)",
        )
    p.add_argument("--json", action="store_true", help="print one JSON object")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="simlab", description=__doc__)
    parser.add_argument("--version", action="version", version=f"simlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sim = sub.add_parser("simulate", help="simulate one model")
    sim.add_argument("model", type=model_name, metavar="MODEL", help=", ".join(MODELS))
    sim.add_argument(
        "--theory",
        action="store_true",
        help="print the textbook value beside the simulated one where one applies",
    )
    add_common(sim)
    cmp_ = sub.add_parser("compare", help="every model side by side")
    cmp_.add_argument("--models", type=model_list, help="comma-separated subset (default all)")
    add_common(cmp_)

    add_plan(sub.add_parser("plan", help="the smallest configuration of each model for a goal"))

    dash = sub.add_parser("dashboard", help="start the Streamlit dashboard on 127.0.0.1")
    dash.add_argument("--port", type=positive_int, default=8501, help="port (default 8501)")

    swp = sub.add_parser("sweep", help="run a what-if sweep file (resumable; local or Dask)")
    swp.add_argument("file", type=Path, metavar="FILE.toml", help="the sweep file")
    swp.add_argument("--workers", type=positive_int, help="local processes (default: one per core)")
    swp.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run on Dask: a scheduler address, or 'local' for a LocalCluster on loopback",
    )
    swp.add_argument("--out", type=Path, help="output directory (default data/sweeps/NAME/)")
    swp.add_argument("--no-plots", action="store_true", help="skip the figures")
    swp.add_argument("--json", action="store_true", help="print a JSON summary")

    peer_help = f"peers (resembles MODEL on PLATFORM):\n{peers.describe()}"
    servable = (*SERVER_MODELS, *peers.ALL_PEERS)
    srv = sub.add_parser(
        "serve",
        help="run one real server (or peer) in the foreground",
        epilog=peer_help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    srv.add_argument(
        "model", type=choice("MODEL", servable), metavar="MODEL", help=", ".join(servable)
    )
    srv.add_argument(
        "--port", type=nonneg_int, default=8080, help="port on 127.0.0.1 (default 8080)"
    )
    srv.add_argument(
        "--backend-port", type=positive_int, help="use a running backend (default: start one)"
    )
    add_architecture(srv)
    add_server_knobs(srv)

    mea = sub.add_parser(
        "measure",
        help="measure a real server under load (or 'memory')",
        epilog=peer_help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mea.add_argument(
        "target",
        type=choice("TARGET", (*TARGETS, "memory")),
        metavar="TARGET",
        help=", ".join((*TARGETS, "memory")),
    )
    add_workload(mea, trace=False)
    add_architecture(mea)
    add_run(mea, real=True)
    add_server_knobs(mea)
    lab = mea.add_argument_group("load and output")
    lab.add_argument(
        "--timeout",
        type=positive_float,
        default=30.0,
        help="seconds a request may take before it counts as timed out (default 30)",
    )
    lab.add_argument(
        "--sources",
        type=positive_int,
        default=4,
        help="source addresses 127.0.0.1..k to spread connections over (default 4)",
    )
    lab.add_argument(
        "--sizes",
        type=size_pair,
        default=(200, 1000),
        metavar="A,B",
        help="memory: the two counts whose difference gives each unit's cost",
    )
    lab.add_argument(
        "--runtime",
        type=choice("RUNTIME", RUNTIMES),
        default="cpython",
        help=f"memory: whose units to measure: {', '.join(RUNTIMES)} (default cpython)",
    )
    lab.add_argument("--no-save", action="store_true", help="do not save under data/measurements/")
    lab.add_argument("--out", type=Path, help="directory for the saved run")

    cal = sub.add_parser("calibrate", help="fit a platform profile to real runs on this machine")
    cal.add_argument(
        "--name",
        default="cpython",
        type=profile_name,
        help="profile name: writes data/profiles/NAME.json (default cpython)",
    )
    cal.add_argument("--quick", action="store_true", help="a smaller grid (about 3 minutes)")
    cal.add_argument(
        "--refit",
        action="store_true",
        help="fit again from the runs kept in the existing profile, without measuring",
    )
    cal.add_argument("--json", action="store_true", help="print the profile as JSON")

    val = sub.add_parser("validate", help="held-out real runs against the calibrated simulation")
    val.add_argument(
        "--platform", default="cpython", help="profile name or file to validate (default cpython)"
    )
    val.add_argument("--quick", action="store_true", help="a smaller grid (about 3 minutes)")
    val.add_argument("--json", action="store_true", help="print rows and summary as JSON")
    val.add_argument("--out", type=Path, help="directory for the report (default data/validation/)")

    usl = sub.add_parser("usl", help="fit the Universal Scalability Law to closed-loop real runs")
    # Only targets whose resembled model exists can have a simulated curve.
    fittable = [t for t in TARGETS if peers.RESEMBLES.get(t, t) in MODELS]
    usl.add_argument(
        "target", type=choice("TARGET", fittable), metavar="TARGET", help=", ".join(fittable)
    )
    usl.add_argument(
        "--levels",
        type=int_list,
        default=None,
        help="concurrency levels (default 1,2,4,8,16,32,64; --quick 1,2,4,8,16)",
    )
    usl.add_argument("--cpu-ms", type=nonneg_float, default=2.0, help="CPU per request (default 2)")
    usl.add_argument("--io-ms", type=nonneg_float, default=5.0, help="backend call (default 5)")
    usl.add_argument("--calls", type=nonneg_int, default=1, help="backend calls (default 1)")
    usl.add_argument("--platform", default="cpython", help="profile for the simulated curve")
    usl.add_argument("--duration", type=positive_float, default=4.0, help="seconds per level")
    usl.add_argument("--warmup", type=nonneg_float, default=1.0, help="seconds per level first")
    usl.add_argument("--quick", action="store_true", help="fewer levels")
    usl.add_argument("--json", action="store_true", help="print the result as JSON")
    add_architecture(usl)
    return parser


def add_plan(p: argparse.ArgumentParser) -> None:
    add_workload(p, trace=False)
    add_platform(p)
    goals = p.add_argument_group("goals")
    goals.add_argument(
        "--slo-p99-ms", type=positive_float, default=100.0, help="p99 latency goal (default 100)"
    )
    goals.add_argument("--slo-mean-ms", type=positive_float, help="mean latency goal")
    goals.add_argument("--memory-gib", type=positive_float, help="memory budget, GiB")
    goals.add_argument(
        "--memory-basis",
        choices=["resident", "reserved"],
        default="resident",
        help="what the budget counts: resident memory, or reserved virtual (thread stacks)",
    )
    q = p.add_argument_group("questions")
    which = q.add_mutually_exclusive_group()
    which.add_argument(
        "--max-connections",
        action="store_true",
        help="instead: the most connections each model fits in --memory-gib",
    )
    which.add_argument(
        "--max-rate",
        action="store_true",
        help="instead: the highest rate each model serves within the latency goal",
    )
    q.add_argument("--workers", type=positive_int, help="inverse questions: hold this pool size")
    q.add_argument("--processes", type=positive_int, help="inverse questions: hold this count")
    q.add_argument(
        "--backlog",
        type=_or_word("unbounded", nonneg_int),
        default=None,
        help="bound of the accept or work queue (default unbounded)",
    )
    s = p.add_argument_group("search")
    s.add_argument("--models", type=model_list, help="comma-separated subset (default all)")
    s.add_argument(
        "--max-processes", type=positive_int, help="most processes to try (default 4 per core)"
    )
    s.add_argument(
        "--analytic", action="store_true", help="skip the DES check (formulas only; faster)"
    )
    s.add_argument("--seed", type=nonneg_int, default=1, help="root seed of the DES (default 1)")
    s.add_argument(
        "--replications", type=positive_int, default=5, help="DES replications (default 5)"
    )
    s.add_argument(
        "--des-requests",
        type=positive_int,
        default=4000,
        help="measured requests per DES replication (default 4000)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")


def profile_name(text: str) -> str:
    if not text or not all(c.isalnum() or c in "-_." for c in text) or text.startswith("."):
        raise argparse.ArgumentTypeError(f"must be letters, digits, '-', '_' or '.', got {text!r}")
    return text


def int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be integers A,B,..., got {text!r}") from None
    if len(values) < 4 or any(v < 1 or v > 10_000 for v in values) or values != sorted(set(values)):
        raise argparse.ArgumentTypeError(
            f"must be at least 4 increasing integers in 1..10000, got {text!r}"
        )
    return values


def add_server_knobs(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("real server")
    g.add_argument(
        "--request-timeout",
        type=positive_float,
        default=10.0,
        help="seconds a started request may take to arrive (slow clients; default 10)",
    )
    g.add_argument(
        "--stack-kib",
        type=nonneg_int,
        default=0,
        help="stack reserved per thread, KiB (default: the system's, 8 MiB)",
    )
    g.add_argument("--uvloop", action="store_true", help="async: run on uvloop")
    g.add_argument(
        "--httptools",
        action="store_true",
        help="parse HTTP with httptools (C, as uvicorn does) instead of h11",
    )


def choice(what: str, options: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise argparse.ArgumentTypeError(
                f"unknown {what.lower()} {text!r} (choose from: {', '.join(options)})"
            )
        return text

    parse.__name__ = what.lower()
    return parse


def size_pair(text: str) -> tuple[int, int]:
    try:
        a, b = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be two integers A,B, got {text!r}") from None
    if not 1 <= a < b <= 20_000:
        raise argparse.ArgumentTypeError(f"must satisfy 1 <= A < B <= 20000, got {text!r}")
    return a, b


# ------------------------------------------------------------------ conversion


def workload_from(args: argparse.Namespace) -> Workload:
    base = SCENARIOS[args.scenario]()
    changes: dict[str, Any] = {}
    if args.connections is not None:
        changes["connections"] = args.connections
    trace = getattr(args, "trace", None)
    if args.rate is not None or args.think_ms is not None or trace is not None:
        changes.update(rate=None, think=None, trace=None)
        if args.rate is not None:
            changes["rate"] = args.rate
        elif args.think_ms is not None:
            changes["think"] = parse_distribution("exp", args.think_ms / 1e3, option="--think-ms")
        else:
            assert trace is not None
            changes["trace"] = read_trace(trace)
    cpu_mean = args.cpu_ms / 1e3 if args.cpu_ms is not None else base.cpu.mean
    changes["cpu"] = parse_distribution(args.cpu_dist, cpu_mean, option="--cpu-dist")
    io_mean = args.io_ms / 1e3 if args.io_ms is not None else base.io.mean
    changes["io"] = parse_distribution(args.io_dist, io_mean, option="--io-dist")
    if args.calls is not None:
        changes["calls"] = args.calls
    if args.fanout is not None:
        changes["fanout"] = args.fanout
    # Absent unless given (argparse.SUPPRESS), because 'persistent' parses to None.
    if hasattr(args, "requests_per_connection"):
        changes["requests_per_connection"] = args.requests_per_connection
    return base.with_(**changes)


def read_trace(path: Path) -> Trace:
    try:
        with path.open(newline="") as fh:
            rows = [r for r in csv.reader(fh) if r and not r[0].startswith("#")]
    except OSError as exc:
        raise UsageError(f"--trace: cannot read {str(path)!r}: {exc.strerror}") from None
    if rows and not _is_number(rows[0][0]):
        rows = rows[1:]  # a header line
    times: list[float] = []
    conns: list[int] = []
    for k, row in enumerate(rows, 1):
        try:
            times.append(float(row[0]))
            conns.append(int(row[1]))
        except (ValueError, IndexError):
            raise UsageError(f"--trace: row {k} is not 'time_s,connection': {row!r}") from None
    try:
        return Trace(tuple(times), tuple(conns))
    except ValueError as exc:
        raise UsageError(f"--trace: {exc}") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def platform_from(args: argparse.Namespace) -> Platform:
    try:
        platform = load_platform(args.platform)
    except ValueError as exc:
        raise UsageError(f"--{exc}") from None
    changes: dict[str, Any] = {}
    if hasattr(args, "cores"):
        changes["cores"] = args.cores
    if args.gil is not None:
        changes["gil"] = args.gil
    numeric = Platform.numeric_fields()
    for key, raw in args.set:
        if key not in numeric:
            raise UsageError(
                f"--set: unknown platform number {key!r} (one of: {', '.join(numeric)})"
            )
        try:
            changes[key] = float(raw)
        except ValueError:
            raise UsageError(f"--set {key}: must be a number, got {raw!r}") from None
    try:
        return platform.with_(**changes)
    except ValueError as exc:
        raise UsageError(f"--set/--cores: {exc}") from None


def architecture_from(args: argparse.Namespace) -> Architecture:
    return Architecture(workers=args.workers, processes=args.processes, backlog=args.backlog)


# ------------------------------------------------------------------------ main


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    # SIGTERM (kill, timeout) and SIGHUP (a closed terminal) stop simlab the
    # way Ctrl-C does, so that every process it started is stopped too.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        if args.command == "serve":
            return real_commands.serve_command(args, architecture_from(args))
        if args.command == "measure":
            if args.target == "memory":
                return real_commands.memory_command(args)
            return real_commands.measure_command(args, workload_from(args), architecture_from(args))
        if args.command == "calibrate":
            return lab_commands.calibrate_command(args)
        if args.command == "validate":
            return lab_commands.validate_command(args)
        if args.command == "dashboard":
            return plan_commands.dashboard_command(args)
        if args.command == "sweep":
            return plan_commands.sweep_command(args)
        if args.command == "usl":
            return lab_commands.usl_command(args, architecture_from(args))
        workload = workload_from(args)
        platform = platform_from(args)
        if args.command == "plan":
            return plan_commands.plan_command(args, workload, platform)
        arch = architecture_from(args)
        if args.command == "simulate":
            return commands.simulate_command(args, workload, platform, arch)
        return commands.compare_command(args, workload, platform, arch)
    except UsageError as exc:
        sys.stderr.write(f"simlab: error: {exc}\n")
        return 2
    except RuntimeError as exc:
        # A real run that could not be carried out (a server failed to start...).
        sys.stderr.write(f"simlab: failed: {exc}\n")
        return 1
    except ValueError as exc:
        sys.stderr.write(f"simlab: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("simlab: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
