"""What the dashboard shows, computed without Streamlit (so it is testable and cacheable).

Every function takes plain, hashable parameters (``Scenario``) and returns
pandas tables or plain dicts. The default view uses the analytic estimates
(``simlab.planner.estimate``, milliseconds) and short simulations with the
fast engine where it applies; the DES runs only when asked.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simlab.distributions import parse_distribution
from simlab.models import MODELS, get_model
from simlab.params import SCENARIOS, Architecture, Platform, Workload
from simlab.planner import Goals, max_connections, max_rate, plan
from simlab.planner.estimate import POOLED, Sampler, estimate, memory
from simlab.platforms import PROFILE_DIR, load_platform
from simlab.provenance import ROOT
from simlab.simulation import Result, simulate

__all__ = [
    "Scenario",
    "capacity_curve",
    "compare_table",
    "idle_cost_curve",
    "one_run",
    "plan_report",
    "platform_names",
]

DRAWS = 4000  # Monte Carlo draws per estimate: enough for a p99 on a chart, and quick


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
    cores: int | None = 2
    workers: int = 32
    processes: int = 1

    def workload(self) -> Workload:
        return Workload(
            connections=self.connections,
            rate=self.rate,
            cpu=parse_distribution(self.cpu_dist, self.cpu_ms / 1e3, option="CPU distribution"),
            io=parse_distribution(self.io_dist, self.io_ms / 1e3, option="I/O distribution"),
            calls=self.calls,
            fanout="parallel" if self.fanout == "parallel" else "sequential",
            requests_per_connection=self.requests_per_connection,
        )

    def platform_obj(self) -> Platform:
        return load_platform(self.platform).with_(cores=self.cores)

    def architecture(self) -> Architecture:
        return Architecture(workers=self.workers, processes=self.processes)

    def with_(self, **changes: Any) -> Scenario:
        return replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def scenario_from_preset(name: str) -> Scenario:
    """A built-in scenario as dashboard controls."""
    w = SCENARIOS[name]()
    return Scenario(
        connections=w.connections,
        rate=float(w.rate or 100.0),
        cpu_ms=w.cpu.mean * 1e3,
        io_ms=w.io.mean * 1e3,
        calls=w.calls,
        fanout=w.fanout,
        requests_per_connection=w.requests_per_connection,
    )


def platform_names() -> list[str]:
    """Presets and the calibrated profiles in data/profiles/."""
    names = ["cpython", "ideal", "jvm", "go"]
    if PROFILE_DIR.is_dir():
        for path in sorted(PROFILE_DIR.glob("*.json")):
            if path.stem not in names:
                names.append(path.stem)
    return names


def _arch_for(model: str, s: Scenario) -> Architecture:
    return Architecture(workers=s.workers if model in POOLED else 1, processes=s.processes)


def cost_at(s: Scenario, model: str) -> tuple[int, float, float]:
    """(threads, resident MiB, reserved MiB) of ``model`` on the scenario as set,
    a thread-pool holding every persistent connection with a thread."""
    w = s.workload()
    arch = _arch_for(model, s)
    if model == "thread-pool" and w.persistent:
        arch = replace(arch, workers=max(arch.workers, math.ceil(w.connections / arch.processes)))
    return memory(model, w, s.platform_obj(), arch)


def idle_cost_curve(s: Scenario, models: tuple[str, ...], points: int = 25) -> pd.DataFrame:
    """Threads, resident and reserved memory against connections (100 to 100,000+),
    with a thread-pool's workers growing to hold every persistent connection."""
    top = max(100_000, s.connections)
    counts = np.unique(np.geomspace(100, top, points).round().astype(int))
    rows = []
    for model in models:
        for n in counts:
            threads, resident, virtual = cost_at(s.with_(connections=int(n)), model)
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
    each model saturates: the hockey stick. Rates run from 5% to 150% of the
    scenario's rate scaled to the busiest model's capacity."""
    platform = s.platform_obj()
    w0 = s.workload()
    sampler = Sampler(w0, platform, draws=DRAWS)
    rows = []
    for model in models:
        arch = _arch_for(model, s)
        top = _saturation_rate(model, w0, platform, arch)
        for frac in np.linspace(0.05, 1.0, points):
            rate = top * float(frac)
            e = estimate(model, w0.with_(rate=rate), platform, arch, sampler)
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
    return pd.DataFrame(rows)


def _saturation_rate(model: str, w: Workload, platform: Platform, arch: Architecture) -> float:
    """The rate at which the first resource reaches rho = 1 (linear in the rate)."""
    probe = 1.0
    loads = get_model(model).offered_load(w.with_(rate=probe), platform, arch)
    rho = max((v for k, v in loads.items() if k != "client"), default=0.0)
    if rho <= 0:
        return 10 * (w.rate or 100.0)
    return probe / rho * 0.98


def one_run(
    s: Scenario, model: str, *, duration: float = 20.0, replications: int = 3, seed: int = 1
) -> Result:
    """A short simulation of one model (fast engine where it applies)."""
    w = s.workload()
    warmup = min(5.0, max(1.0, 4 * (w.cpu.mean + w.calls * w.io.mean)))
    return simulate(
        model,
        w,
        s.platform_obj(),
        _arch_for(model, s),
        duration=duration,
        warmup=warmup,
        seed=seed,
        replications=replications,
        engine="auto",
    )


def compare_table(results: list[Result]) -> pd.DataFrame:
    """Every model's outputs with their 95% confidence intervals, one row each."""
    rows = []
    for r in results:
        s = r.summary
        lat, q, th, mem = s["latency_ms"], s["queue_delay_ms"], s["threads"], s["memory_mib"]
        ci = lat.get("p99_ci95") or [None, None]
        rows.append(
            {
                "model": r.model,
                "stable": s["stable"],
                "engine": s["engine"],
                "throughput_rps": s["throughput_rps"],
                "latency_mean_ms": lat["mean"],
                "latency_p50_ms": lat["p50"],
                "latency_p99_ms": lat["p99"],
                "p99_ci_lo": ci[0],
                "p99_ci_hi": ci[1],
                "queue_delay_mean_ms": q["mean"],
                "threads_peak": th["peak"],
                "threads_busy_mean": th["busy_mean"],
                "resident_mib_peak": mem["peak"],
                "reserved_mib_peak": mem["virtual_peak"],
                "cpu_utilization": s["cpu_utilization"],
                "dropped": s["dropped"],
                "why_unstable": "; ".join(s["stability"]["reasons"]),
            }
        )
    return pd.DataFrame(rows)


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


def validation_dir(profile: str) -> Path:
    return ROOT / "data" / "validation" / profile


def experiments() -> list[Path]:
    base = ROOT / "data" / "experiments"
    return sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


ALL_MODELS: tuple[str, ...] = tuple(MODELS)
