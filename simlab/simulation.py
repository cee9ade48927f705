"""Running a model: replications, warm-up, the stability verdict, and the ``Result``.

``simulate`` runs independent replications with seeds from
``SeedSequence(seed).spawn(replications)``. Each replication sends requests
from time 0 to ``warmup + duration``; only requests sent in the window
[warmup, warmup + duration) are measured. After the last send, the run goes
on (the drain) so that measured requests can finish; whatever is still
unanswered when the drain ends is counted as ``incomplete``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import simpy

from simlab.fast import reason_not_fast, run_fast_replication
from simlab.metrics import Step, ci95, replication_levels, replication_summary, series
from simlab.models import MODELS, Analytic, Record, get_model
from simlab.models.loads import io_moments
from simlab.params import Architecture, Platform, Workload, c10k_workload
from simlab.platforms import cpython
from simlab.provenance import json_safe

__all__ = ["ENGINES", "Result", "choose_engine", "compare", "simulate"]

ENGINES = ("des", "fast", "auto")

Progress = Callable[[float], None]
OUTCOMES = ("completed", "dropped", "pending")


@dataclass(frozen=True)
class Result:
    """One model's simulated results.

    ``summary`` is the JSON contract (DESIGN.md); ``requests`` has one row per
    request; ``series`` the levels of each replication on a time grid;
    ``replications`` one row of numbers per replication.
    """

    model: str
    summary: dict[str, Any]
    requests: pd.DataFrame
    series: pd.DataFrame
    replications: pd.DataFrame
    analytic: Analytic | str = field(repr=False)

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.summary, indent=indent, allow_nan=False)


def _check_run(duration: float, warmup: float, replications: int, seed: int) -> None:
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration(={duration!r}) must be > 0 simulated seconds")
    if not (math.isfinite(warmup) and warmup >= 0):
        raise ValueError(f"warmup(={warmup!r}) must be >= 0 simulated seconds")
    if not (isinstance(replications, int) and replications >= 1):
        raise ValueError(f"replications(={replications!r}) must be an integer >= 1")
    if not (isinstance(seed, int) and seed >= 0):
        raise ValueError(f"seed(={seed!r}) must be an integer >= 0")


def _drain(workload: Workload, duration: float) -> float:
    """Time allowed after the last send: the run length, or 20 mean service
    times when those are longer (so a stable system always empties)."""
    return max(duration, 20 * (workload.cpu.mean + io_moments(workload)[0]))


def run_replication(
    model: str,
    workload: Workload,
    platform: Platform,
    architecture: Architecture,
    *,
    duration: float,
    warmup: float,
    seed: int,
    replication: int,
    seed_seq: np.random.SeedSequence,
    progress: Progress | None = None,
    engine: str = "des",
) -> Record:
    """One replication with ``engine`` (``des`` or ``fast``, already chosen)."""
    cls = get_model(model)
    stop = warmup + duration
    horizon = stop + _drain(workload, duration)
    if engine == "fast":
        rec = run_fast_replication(
            model,
            workload,
            platform,
            architecture,
            duration=duration,
            warmup=warmup,
            seed=seed,
            replication=replication,
            seed_seq=seed_seq,
            horizon=horizon,
        )
        if progress is not None:
            progress(1.0)
        return rec
    cls.check_request_cap(workload, stop)
    env = simpy.Environment()
    sim = cls(env, workload, platform, architecture, seed=seed_seq, stop=stop)
    sim.start_arrivals()
    steps = 20 if progress is not None else 1
    for k in range(1, steps + 1):
        env.run(until=horizon * k / steps)
        if progress is not None:
            progress(k / steps)
    return sim.record(replication=replication, seed=seed, window=(warmup, stop))


def simulate(
    model: str,
    workload: Workload | None = None,
    platform: Platform | None = None,
    architecture: Architecture | None = None,
    *,
    duration: float = 60.0,
    warmup: float = 5.0,
    seed: int = 1,
    replications: int = 5,
    progress: Progress | None = None,
    engine: str = "des",
    tables: bool = True,
) -> Result:
    """Simulate ``model`` and summarise it with 95% confidence intervals.

    Defaults: the C10K workload, the ``cpython`` platform, 32 workers.
    ``duration`` and ``warmup`` are simulated seconds. ``engine`` is ``des``
    (events), ``fast`` (the FCFS recursion of ``simlab.fast``; an error if the
    configuration does not qualify) or ``auto`` (fast where it qualifies);
    ``summary["engine"]`` says which ran. ``tables=False`` leaves the
    per-request and series tables empty (the summary is the same), which
    saves their memory and the time to build them on long runs.
    """
    workload = workload if workload is not None else c10k_workload()
    platform = platform if platform is not None else cpython()
    architecture = architecture if architecture is not None else Architecture()
    get_model(model)
    _check_run(duration, warmup, replications, seed)
    chosen = choose_engine(engine, model, workload, platform, architecture)
    seeds = np.random.SeedSequence(seed).spawn(replications)
    records: list[Record] = []
    for r, seed_seq in enumerate(seeds):
        tick = None
        if progress is not None:
            tick = _scaled(progress, r, replications)
        records.append(
            run_replication(
                model,
                workload,
                platform,
                architecture,
                duration=duration,
                warmup=warmup,
                seed=seed,
                replication=r,
                seed_seq=seed_seq,
                progress=tick,
                engine=chosen,
            )
        )
    return _result(
        model,
        records,
        workload=workload,
        platform=platform,
        arch=architecture,
        duration=duration,
        warmup=warmup,
        seed=seed,
        engine=chosen,
        tables=tables,
    )


def choose_engine(
    engine: str, model: str, workload: Workload, platform: Platform, arch: Architecture
) -> str:
    """The engine that will run: ``fast`` only where it reproduces the DES."""
    if engine not in ENGINES:
        raise ValueError(f"engine(={engine!r}) must be one of {', '.join(ENGINES)}")
    if engine == "des":
        return "des"
    reason = reason_not_fast(model, workload, platform, arch)
    if reason is None:
        return "fast"
    if engine == "fast":
        raise ValueError(f"--engine fast does not apply to {model} here: {reason}")
    return "des"


def compare(
    workload: Workload | None = None,
    platform: Platform | None = None,
    architecture: Architecture | None = None,
    *,
    models: Sequence[str] | None = None,
    duration: float = 60.0,
    warmup: float = 5.0,
    seed: int = 1,
    replications: int = 5,
    progress: Callable[[str, float], None] | None = None,
    engine: str = "des",
) -> list[Result]:
    """Every model (or ``models``) on the same workload, platform and seed."""
    out = []
    for name in models if models is not None else list(MODELS):
        tick = None
        if progress is not None:
            tick = _named(progress, name)
        out.append(
            simulate(
                name,
                workload,
                platform,
                architecture,
                duration=duration,
                warmup=warmup,
                seed=seed,
                replications=replications,
                progress=tick,
                engine=engine,
            )
        )
    return out


def _scaled(progress: Progress, r: int, total: int) -> Progress:
    return lambda f: progress((r + f) / total)


def _named(progress: Callable[[str, float], None], name: str) -> Progress:
    return lambda f: progress(name, f)


# --------------------------------------------------------------------- summary


def _pooled(arrays: list[np.ndarray], scale: float) -> dict[str, Any]:
    """Mean and percentiles over all replications' requests, each with a
    95% CI from the per-replication values."""
    pooled = np.concatenate(arrays) if arrays else np.empty(0)
    out: dict[str, Any] = {}
    if len(pooled) == 0:
        for key in ("mean", "p50", "p95", "p99"):
            out[key] = None
            out[f"{key}_ci95"] = None
        return out
    per_rep = [a for a in arrays if len(a)]
    out["mean"] = float(np.mean([a.mean() for a in per_rep])) * scale
    out["mean_ci95"] = _scaled_ci([a.mean() for a in per_rep], scale)
    for q in (50, 95, 99):
        out[f"p{q}"] = float(np.percentile(pooled, q)) * scale
        out[f"p{q}_ci95"] = _scaled_ci([np.percentile(a, q) for a in per_rep], scale)
    return out


def _scaled_ci(values: list[float], scale: float) -> list[float] | None:
    ci = ci95(values)
    return None if ci is None else [ci[0] * scale, ci[1] * scale]


def _mean_ci(reps: list[dict[str, Any]], key: str) -> tuple[float, list[float] | None]:
    values = [r[key] for r in reps]
    return float(np.mean(values)), ci95(values)


def _result(
    model: str,
    records: list[Record],
    *,
    workload: Workload,
    platform: Platform,
    arch: Architecture,
    duration: float,
    warmup: float,
    seed: int,
    engine: str = "des",
    tables: bool = True,
) -> Result:
    cls = get_model(model)
    levels = [replication_levels(rec, platform) for rec in records]
    reps = [replication_summary(rec, platform, lv) for rec, lv in zip(records, levels, strict=True)]
    tput, tput_ci = _mean_ci(reps, "throughput_rps")
    summary: dict[str, Any] = {
        "model": model,
        "engine": engine,
        "throughput_rps": tput,
        "throughput_ci95": tput_ci,
        "offered_rps": workload.rate,
        "latency_ms": _pooled([r["latency"] for r in reps], 1e3),
        "queue_delay_ms": _pooled([r["wait"] for r in reps], 1e3),
    }
    blocks: dict[str, dict[str, Any]] = {}
    for out_key, level, scale_keys in (
        ("threads", "threads_alive", ("peak", "mean")),
        ("memory_mib", "memory_mib", ("peak", "mean")),
        ("connections", "connections", ("peak", "mean")),
        ("in_flight", "in_flight", ("peak", "mean")),
        ("queued", "queued", ("peak", "mean")),
    ):
        block: dict[str, Any] = {}
        for stat in scale_keys:
            block[stat], block[f"{stat}_ci95"] = _mean_ci(reps, f"{level}_{stat}")
        blocks[out_key] = block
    blocks["threads"]["busy_mean"], blocks["threads"]["busy_mean_ci95"] = _mean_ci(
        reps, "threads_busy_mean"
    )
    blocks["threads"]["busy_peak"], _ = _mean_ci(reps, "threads_busy_peak")
    blocks["memory_mib"]["virtual_peak"], blocks["memory_mib"]["virtual_peak_ci95"] = _mean_ci(
        reps, "virtual_mib_peak"
    )
    blocks["memory_mib"]["virtual_mean"], _ = _mean_ci(reps, "virtual_mib_mean")
    # The user-space part is what a process's PSS shows; the kernel part is not in it.
    blocks["memory_mib"]["user_peak"], blocks["memory_mib"]["user_peak_ci95"] = _mean_ci(
        reps, "user_mib_peak"
    )
    blocks["memory_mib"]["user_mean"], _ = _mean_ci(reps, "user_mib_mean")
    blocks["memory_mib"]["kernel_peak"], _ = _mean_ci(reps, "kernel_mib_peak")
    summary.update(blocks)
    busy_cores, busy_ci = _mean_ci(reps, "cpu_busy_mean")
    summary["cpu_busy_cores"] = busy_cores
    summary["cpu_utilization"] = busy_cores / platform.cores if platform.cores else None
    summary["cpu_utilization_ci95"] = (
        [x / platform.cores for x in busy_ci] if platform.cores and busy_ci else None
    )
    for key in ("requests", "completed", "dropped", "incomplete"):
        summary[key] = int(sum(r[key] for r in reps))
    offered = {k: float(v) for k, v in cls.offered_load(workload, platform, arch).items()}
    reasons = [cls.explain_overload(k, v, workload, arch) for k, v in offered.items() if v >= 1]
    if any(rec.truncated for rec in records):
        reasons.append(f"stopped at the cap of {cls.max_requests:,} requests per replication")
    elif any(rec.overloaded for rec in records):
        reasons.append(
            f"stopped sending early: over {cls.max_in_system:,} requests were in the system"
        )
    if summary["incomplete"]:
        reasons.append(f"{summary['incomplete']:,} measured requests were never answered")
    growth = _growing(reps, duration)
    if growth and not any(v >= 1 for v in offered.values()):
        reasons.append(growth)
    summary["stable"] = not reasons
    summary["stability"] = {"offered_load": offered, "reasons": reasons}
    summary["warnings"] = _warnings(workload, duration, warmup)
    summary["replications"] = len(records)
    summary["seed"] = seed
    summary["duration_s"] = duration
    summary["warmup_s"] = warmup
    summary["workload"] = workload.describe()
    summary["architecture"] = arch.describe()
    summary["platform"] = platform.describe()
    summary = json_safe(summary)
    return Result(
        model=model,
        summary=summary,
        requests=_requests_table(records) if tables else pd.DataFrame(),
        series=_series_table(records, levels) if tables else pd.DataFrame(),
        replications=pd.DataFrame(
            [
                {k: v for k, v in r.items() if not isinstance(v, np.ndarray)}
                | {"replication": i, "seed": seed}
                for i, r in enumerate(reps)
            ]
        ),
        analytic=cls.analytic(workload, platform, arch),
    )


# The backlog must grow by more than this share of the window's requests
# (and by more than GROWTH_MIN) before growth counts as overload: a stable
# queue's count at two instants differs only by its own fluctuation.
GROWTH_SHARE = 0.01
GROWTH_MIN = 10.0


def _growing(reps: list[dict[str, Any]], duration: float) -> str | None:
    """Say so when the number of requests in the system grows over the window.

    The offered-load formulas leave out load-dependent costs (switch
    contention), so the verdict also looks at what happened. In a stable
    system the growth of one replication is as likely negative as positive;
    it counts as overload only when every replication grew by more than 1% of
    its window's requests.
    """
    grew = [r["growth"] > max(GROWTH_SHARE * r["requests"], GROWTH_MIN) for r in reps]
    if not all(grew):
        return None
    mean = float(np.mean([r["growth"] for r in reps]))
    arrivals = float(np.mean([r["requests"] for r in reps]))
    served = float(np.mean([r["throughput_rps"] for r in reps]))
    return (
        f"requests in the system grew by {mean:,.0f} over the window "
        f"(served {served:,.1f}/s of {arrivals / duration:,.1f}/s sent): load exceeds capacity"
    )


def _warnings(workload: Workload, duration: float, warmup: float) -> list[str]:
    """Run lengths too short for the requests being simulated."""
    service = workload.cpu.mean + io_moments(workload)[0]
    out = []
    if warmup < 2 * service:
        out.append(
            f"warmup ({warmup:g} s) is under twice the mean request time ({service:.3g} s): "
            "the window opens before the system fills; raise --warmup"
        )
    if duration < 20 * service:
        out.append(
            f"duration ({duration:g} s) is under 20 mean request times ({service:.3g} s): "
            "edge effects weigh on throughput; raise --duration"
        )
    return out


def _requests_table(records: list[Record]) -> pd.DataFrame:
    frames = []
    for rec in records:
        c = rec.columns
        n = len(c["arrival"])
        t0, t1 = rec.window
        frame = pd.DataFrame(
            {
                "model": rec.model,
                "replication": rec.replication,
                "seed": rec.seed,
                "request": np.arange(n),
                "connection": c["connection"],
                "arrival": c["arrival"],
                "admit": c["admit"],
                "start": c["start"],
                "end": c["end"],
                "wait": c["end"] - c["arrival"] - c["service"],
                "service": c["service"],
                "cpu": c["cpu_time"],
                "worker": c["worker"],
                "process": c["process"],
                "outcome": pd.Categorical.from_codes(
                    c["outcome"].astype(np.int64), categories=pd.Index(OUTCOMES)
                ),
                "measured": (c["arrival"] >= t0) & (c["arrival"] < t1),
            }
        )
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _series_table(records: list[Record], levels: list[dict[str, Step]]) -> pd.DataFrame:
    frames = []
    for rec, lv in zip(records, levels, strict=True):
        s = series(rec, lv)
        frames.append(pd.DataFrame({"replication": rec.replication, **s}))
    return pd.concat(frames, ignore_index=True)
