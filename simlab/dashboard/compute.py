"""What the dashboard shows, computed without Streamlit (so it is testable and cacheable).

Every function takes plain, hashable parameters (``Scenario``: the sidebar's
controls) and returns pandas tables or plain data. A scenario is built by
the same builder as the command line's and the sweeps' (``simlab.scenario``),
with the same defaults.

One number, one source: a model's threads and memory on the scenario as set
come from the simulated run (``one_run``, the same run on every page); the
estimates (``steady_state``, the curves) say on their label what differs:
every connection has sent a request once, or the pool is sized to hold them.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simlab import scenario as builder
from simlab.fast import reason_not_fast
from simlab.models import MODELS, get_model
from simlab.params import SCENARIOS, Architecture, Platform, Workload
from simlab.paths import experiments_dir, validation_dir
from simlab.planner import Goals, max_connections, max_rate, plan
from simlab.planner.estimate import Sampler, estimate, memory
from simlab.planner.platforms import plan_platforms
from simlab.platforms import calibrated, load_platform, platform_names
from simlab.results import SimSummary
from simlab.simulation import Result, simulate
from simlab.streams import Deal

__all__ = [
    "ALL_MODELS",
    "RUN",
    "Scenario",
    "capacity_curve",
    "compare_table",
    "first_stable",
    "idle_cost_curve",
    "one_run",
    "plan_report",
    "platform_names",
    "readable",
    "steady_state",
]

DRAWS = 4000  # Monte Carlo draws per estimate: enough for a p99 on a chart, and quick
ALL_MODELS: tuple[str, ...] = tuple(MODELS)
# Every page's simulated numbers come from runs of this length, so they agree.
# jobs=1: a Streamlit server forks no workers (its own threads hold locks),
# whatever the pages ask for.
RUN = builder.RunOptions(duration=20.0, warmup=5.0, seed=1, replications=3, engine="auto", jobs=1)
# The hockey stick stops just short of saturation, where the p99 runs away.
SATURATION_MARGIN = 0.98


@dataclass(frozen=True)
class Scenario:
    """Everything the controls set. Frozen and hashable, so results cache on it."""

    connections: int = 10_000
    rate: float = 100.0
    cpu_ms: float = 1.0
    cpu_dist: str = "fixed"
    io_ms: float = 50.0
    io_dist: str = "fixed"
    calls: int = 1
    fanout: str = "sequential"
    requests_per_connection: int | None = None
    platform: str = "cpython"
    cores: int | None = None  # None: unlimited
    workers: int = 32
    processes: int = 1

    @classmethod
    def default(cls) -> Scenario:
        """The command line's default scenario, as controls (the platform's own cores)."""
        built = builder.build({})
        w = built.workload
        return cls(
            connections=w.connections,
            rate=float(w.rate or 100.0),
            cpu_ms=w.cpu.mean * 1e3,
            io_ms=w.io.mean * 1e3,
            calls=w.calls,
            fanout=w.fanout,
            requests_per_connection=w.requests_per_connection,
            cores=built.platform.cores,
            workers=built.architecture.workers,
            processes=built.architecture.processes,
        )

    def built(self) -> builder.Scenario:
        """The scenario, built as the command line builds it (cores None: unlimited)."""
        return _built(self)

    def workload(self) -> Workload:
        return self.built().workload

    def platform_obj(self) -> Platform:
        return self.built().platform

    def architecture(self) -> Architecture:
        return self.built().architecture

    def with_(self, **changes: Any) -> Scenario:
        return replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        return asdict(self)


# A control change asks for the same scenario's parts a few hundred times (each
# model's steady state, architecture and curves): building it each time (its
# options checked, its platform's profile read) took about a tenth of a second
# of every change. The built scenario is frozen, so one copy serves them all.
@functools.lru_cache(maxsize=256)
def _built(s: Scenario) -> builder.Scenario:
    return builder.build(asdict(s))


def scenario_from_preset(name: str, base: Scenario | None = None) -> Scenario:
    """A built-in scenario's workload as controls, over ``base``'s other controls."""
    w = SCENARIOS[name]()
    return (base or Scenario.default()).with_(
        connections=w.connections,
        rate=float(w.rate or 100.0),
        cpu_ms=w.cpu.mean * 1e3,
        io_ms=w.io.mean * 1e3,
        calls=w.calls,
        fanout=w.fanout,
        requests_per_connection=w.requests_per_connection,
    )


def architecture_for(model: str, s: Scenario) -> Architecture:
    """The scenario's architecture as ``model`` runs it (no pool if it has none)."""
    arch = s.architecture()
    return arch if get_model(model).pooled else replace(arch, workers=1)


def steady_state(s: Scenario, model: str) -> tuple[int, float, float]:
    """(threads, resident MiB, reserved MiB) of ``model`` on the scenario as set, at
    steady state: every connection has sent a request (so every forked child
    has been touched, every thread has its backend connection). An estimate."""
    return memory(model, s.workload(), s.platform_obj(), architecture_for(model, s))


# One deal for every estimate: a control change asked for it a few hundred
# times (each curve point's sizing and load), a tenth of a second of salts.
@functools.lru_cache(maxsize=1)
def _deal() -> Deal:
    return Deal.of_run(RUN.seed, RUN.replications)


def idle_cost_curve(s: Scenario, models: tuple[str, ...], points: int = 25) -> pd.DataFrame:
    """Threads, resident and reserved memory against connections (100 to 100,000+),
    each model sized to hold every connection (a thread-pool that owns
    persistent connections grows to a worker per connection)."""
    top = max(100_000, s.connections)
    counts = np.unique(np.geomspace(100, top, points).round().astype(int))
    # Built once: only the connections change along the curve (building the
    # scenario per point, 25 points a model, took most of a control change).
    built = s.built()
    platform, base = built.platform, built.workload
    rows = []
    for model in models:
        cls = get_model(model)
        as_run = architecture_for(model, s)
        for n in counts:
            w = base.with_(connections=int(n))
            arch = cls.sized(w, as_run, _deal())
            threads, resident, virtual = memory(model, w, platform, arch)
            rows.append(
                {
                    "model": model,
                    "connections": int(n),
                    "threads": threads,
                    "resident_mib": resident,
                    "reserved_mib": virtual,
                }
            )
    return pd.DataFrame(rows)


def capacity_curve(s: Scenario, models: tuple[str, ...], points: int = 14) -> pd.DataFrame:
    """Estimated latency (mean, p50, p99) against the offered rate, up to where
    each model saturates: the hockey stick. Rates run from 5% to 100% of each
    model's saturation rate."""
    platform = s.platform_obj()
    w0 = s.workload()
    rows = []
    for model in models:
        arch = architecture_for(model, s)
        top = _saturation_rate(model, w0, platform, arch)
        # Each model's curve is cached on what it depends on: not the scenario's
        # own rate (every point sets its rate), nor the pool size of a model
        # without a pool. A change to the rate, or to the workers, then
        # recomputes none, or only the pooled models' curves (14 estimates a
        # model, about a hundredth of a second each on this machine).
        key = s.with_(rate=CURVE_RATE, workers=arch.workers)
        rows += _model_capacity(model, key, top, points)
    return pd.DataFrame(rows)


# The rate a capacity curve's cache key carries (any will do: no point uses it).
CURVE_RATE = 1.0


@functools.lru_cache(maxsize=512)
def _model_capacity(model: str, s: Scenario, top: float, points: int) -> list[dict[str, Any]]:
    """One model's hockey stick, ``points`` rates from 5% to 100% of ``top``."""
    platform = s.platform_obj()
    w0 = s.workload()
    sampler = _sampler(w0, platform)
    arch = architecture_for(model, s)
    rows = []
    for frac in np.linspace(0.05, 1.0, points):
        rate = top * float(frac)
        e = estimate(model, w0.with_(rate=rate), platform, arch, _deal(), sampler=sampler)
        saturated = bool(e.saturated)
        rows.append(
            {
                "model": model,
                "rate": rate,
                "utilization": frac,
                "mean_ms": None if saturated else e.mean * 1e3,
                "p50_ms": None if saturated else e.p50 * 1e3,
                "p99_ms": None if saturated else e.p99 * 1e3,
                "saturated": saturated,
                "exact": e.exact,
            }
        )
    return rows


@functools.lru_cache(maxsize=8)
def _sampler(w: Workload, platform: Platform) -> Sampler:
    """The estimates' common random numbers (drawn once for every model's curve)."""
    return Sampler(w, platform, draws=DRAWS)


def _saturation_rate(model: str, w: Workload, platform: Platform, arch: Architecture) -> float:
    """The rate at which the first resource reaches rho = 1 (linear in the rate)."""
    probe = 1.0
    loads = get_model(model).offered_load(w.with_(rate=probe), platform, arch, _deal())
    rho = max((v for k, v in loads.items() if k != "client"), default=0.0)
    if rho <= 0:
        return 10 * (w.rate or 100.0)
    return probe / rho * SATURATION_MARGIN


def first_stable(s: Scenario, models: tuple[str, ...]) -> str:
    """The first of ``models`` whose resources all stay under full load on the scenario
    (so that the first run a user sees is not an overloaded one), the fast engine's
    first among them; else the first.

    The Explore page simulates this model again at every control change: the
    fast engine answers the default scenario in a few hundredths of a second,
    the DES (process-per-connection's forked children, say) in most of one."""
    w, platform = s.workload(), s.platform_obj()
    stable = []
    for model in models:
        arch = architecture_for(model, s)
        loads = get_model(model).offered_load(w, platform, arch, _deal())
        if all(v < 1 for v in loads.values()):
            if reason_not_fast(model, w, platform, arch) is None:
                return model
            stable.append(model)
    return stable[0] if stable else models[0]


def one_run(s: Scenario, model: str) -> Result:
    """The simulated run of one model on the scenario: every page's simulated numbers."""
    b = s.built()
    return simulate(model, b.workload, b.platform, architecture_for(model, s), **RUN.kwargs())


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """Numbers rounded for reading: whole numbers from 100 up, one decimal from 1,
    three significant digits below."""
    out = table.copy()
    for col in out.columns:
        if out[col].dtype.kind == "f":
            out[col] = out[col].map(_round)
    return out


def _round(x: float) -> float:
    if x is None or not math.isfinite(x) or x == 0:
        return x
    if abs(x) >= 100:
        return float(round(x))
    if abs(x) >= 1:
        return round(x, 1)
    return round(x, 2 - math.floor(math.log10(abs(x))))


def compare_table(results: list[Result]) -> pd.DataFrame:
    """Every model's outputs with their 95% confidence intervals, one row each."""
    rows = [_row(r.summary) for r in results]
    return readable(pd.DataFrame(rows))


def _row(s: SimSummary) -> dict[str, Any]:
    row = s.to_row()
    keep = {k: row[k] for k in COMPARE_COLUMNS}
    keep["why_unstable"] = row["stability"]
    return keep


COMPARE_COLUMNS = (
    "model",
    "stable",
    "engine",
    "throughput_rps",
    "latency_mean_ms",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_p99_ci_lo",
    "latency_p99_ci_hi",
    "queue_delay_mean_ms",
    "threads_peak",
    "threads_busy_mean",
    "memory_peak_mib",
    "virtual_peak_mib",
    "cpu_utilization",
    "dropped",
)


def plan_report(
    s: Scenario, p99_ms: float, memory_gib: float | None, *, confirm: bool
) -> dict[str, Any]:
    """The planner's answer and both inverse questions, as plain data."""
    goals = Goals(p99_ms=p99_ms, memory_gib=memory_gib)
    w, platform = s.workload(), s.platform_obj()
    report = plan(w, platform, goals, check="des" if confirm else "analytic", replications=3)
    out: dict[str, Any] = report.to_dict()
    if memory_gib is not None:
        out["max_connections"] = max_connections(w, platform, goals)
    out["max_rate"] = [r.to_dict() for r in max_rate(w, platform, goals, check="analytic")]
    return out


def plan_across(
    s: Scenario,
    platforms: tuple[str, ...],
    p99_ms: float,
    memory_gib: float | None,
    *,
    confirm: bool,
) -> dict[str, Any]:
    """Every model sized on each platform (``simlab plan --platforms``), as plain data."""
    goals = Goals(p99_ms=p99_ms, memory_gib=memory_gib)
    chosen = [s.with_(platform=name).platform_obj() for name in platforms]
    report = plan_platforms(
        s.workload(), chosen, goals, check="des" if confirm else "analytic", replications=3
    )
    return report.to_dict()


def validation_folder(profile: str) -> Path:
    return validation_dir() / profile


def experiments() -> list[Path]:
    base = experiments_dir()
    return sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def profiles() -> list[str]:
    """The platforms that have a calibrated profile in the data root."""
    return [p for p in platform_names() if calibrated(p)]


def platform_cores(name: str) -> int | None:
    return load_platform(name).cores


def claims_ledger() -> list[Any]:
    """The claims ledger (``simlab.claims.ledger``), recomputed only when a
    file it may read changes (a new experiment, measurement or profile)."""
    from simlab.paths import data_root  # noqa: PLC0415

    root = data_root()
    stamp = tuple(
        sorted(
            (str(p), p.stat().st_mtime)
            for pattern in ("experiments/*/*.csv", "experiments/*/*.json", "*/*.json")
            for p in root.glob(pattern)
        )
    )
    return list(_ledger_at(str(root), stamp))


@functools.lru_cache(maxsize=4)
def _ledger_at(root: str, stamp: tuple[tuple[str, float], ...]) -> tuple[Any, ...]:
    from simlab.claims import ledger  # noqa: PLC0415 - its rules load the planner

    return tuple(ledger(Path(root)))
