"""``simlab validate``: held-out real runs against the calibrated simulation, metric by metric.

Every configuration here differs from the calibration grid (other rates,
connection counts, latencies, fan-outs, worker and process counts). Each is
run for real and simulated with the profile; the table has, per
configuration and metric, the predicted and measured values and the relative
error |predicted - measured| / measured. The summary is each metric's median
absolute relative error. Nothing is tuned to this grid: the profile comes
from ``simlab calibrate``.

Compared like with like:
- throughput: answers per second in the window (both);
- latency p50 and p99: from the intended send time, the model adding the
  fitted client path (``rtt_us``);
- memory: the model's user-space resident peak against the server tree's
  PSS peak (neither includes kernel memory);
- threads: peak threads of the server's process tree.
A peer is simulated as the model it resembles; the threads, processes and
idle memory its own machinery adds (gunicorn's arbiter, uvicorn's helpers),
recorded at calibration, are added to the prediction.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from simlab.errors import UserError
from simlab.params import Platform
from simlab.paths import validation_dir
from simlab.platforms import load_platform, profile_path
from simlab.provenance import (
    atomic_write,
    atomic_write_json,
    git_revision,
    machine,
    utc_stamp,
)
from simlab.real.grids import Case, held_out
from simlab.real.measure import MeasureOptions, measure
from simlab.real.peers import PEERS, RESEMBLES
from simlab.simulation import simulate

__all__ = ["GOALS", "METRICS", "validate"]

METRICS = ("throughput_rps", "latency_p50", "latency_p99", "memory_peak", "threads_peak")
# The simulation runs as long as the real run, warm-up included, so that
# transients and overload build up over the same time; more replications
# make up the precision.
SIM_REPLICATIONS = 8


def _profile_extras(platform_spec: str) -> dict[str, Any]:
    path = Path(platform_spec)
    if not path.suffix:
        path = profile_path(platform_spec)
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, json.JSONDecodeError):
        return {}


def _peer_idle(extras: dict[str, Any], target: str, processes: int) -> tuple[float, float]:
    """A peer's idle threads and PSS (MiB) at ``processes``, on the line through
    the counts calibration recorded at 1 and 2 processes."""
    peer = extras.get("peers", {}).get(target)
    if not peer:
        raise UserError(f"platform: the profile has no idle structure for {target}; recalibrate")
    xs = np.asarray(peer["server_processes"], dtype=float)

    def line(ys: list[float]) -> float:
        if len(set(xs)) < 2:
            return float(np.mean(ys))
        slope, intercept = np.polyfit(xs, np.asarray(ys, dtype=float), 1)
        return float(intercept + slope * processes)

    return line(peer["threads"]), line(peer["memory_mib"])


def _simulated(case: Case, platform: Platform, extras: dict[str, Any], seed: int) -> dict[str, Any]:
    model = RESEMBLES.get(case.target, case.target)
    arch, workload = case.arch, case.workload
    s = simulate(
        model,
        workload,
        platform,
        arch,
        duration=case.duration,
        warmup=case.warmup,
        seed=seed,
        replications=SIM_REPLICATIONS,
    ).summary
    # The share of the offered load served, which the real run's own offered
    # rate turns into a throughput: the Poisson noise in how many requests one
    # short run happened to offer is not a modelling error.
    offered = s.requests / s.replications / case.duration
    out: dict[str, Any] = {
        "throughput_share": s.throughput_rps / offered if offered else 0.0,
        "latency_p50": s.latency_ms.p50,
        "latency_p99": s.latency_ms.p99,
        "memory_peak": s.memory_mib.user_peak,
        "threads_peak": s.threads.peak,
    }
    if case.target in PEERS:
        # The peer's own machinery (gunicorn's arbiter, uvicorn's helpers) as
        # recorded idle at calibration, plus what load adds in the model.
        idle = simulate(
            model,
            workload.with_(rate=1e-3),
            platform,
            arch,
            duration=1.0,
            warmup=0.0,
            replications=1,
            seed=seed,
        ).summary
        threads, mib = _peer_idle(extras, case.target, arch.processes)
        out["memory_peak"] += mib - idle.memory_mib.user_peak
        out["threads_peak"] = threads
        if case.target == "gunicorn-gthread":
            # gthread starts worker threads only when a connection needs one:
            # each process grows to the most requests it ever ran at once.
            per_process = math.ceil(s.threads.busy_peak / arch.processes)
            out["threads_peak"] += arch.processes * max(0, min(arch.workers, per_process) - 1)
    return out


def _measured(case: Case, seed: int) -> dict[str, Any]:
    s = measure(
        MeasureOptions(
            case.target,
            case.workload,
            case.arch,
            duration=case.duration,
            warmup=case.warmup,
            seed=seed,
            save=False,
        )
    ).summary
    return {
        "throughput_rps": s.throughput_rps,
        "latency_p50": s.latency_ms.p50,
        "latency_p99": s.latency_ms.p99,
        "memory_peak": s.memory_mib.user_peak,
        "threads_peak": s.threads.peak,
        "_stable": s.stable,
        "_offered": s.offered_rps,
    }


def validate(
    platform_spec: str = "cpython-calibrated",
    *,
    quick: bool = False,
    out_dir: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    seed: int = 1,
) -> dict[str, Any]:
    platform = load_platform(platform_spec)
    extras = _profile_extras(platform_spec)
    cases = held_out(quick)
    tick = progress or (lambda _l, _k, _n: None)
    rows: list[dict[str, Any]] = []
    for k, case in enumerate(cases, 1):
        tick(f"{case.target} {case.config()}", k, len(cases))
        real = _measured(case, seed + k)
        predicted = _simulated(case, platform, extras, seed + k)
        predicted["throughput_rps"] = predicted.pop("throughput_share") * real["_offered"]
        for metric in METRICS:
            m, p = real[metric], predicted[metric]
            err = abs(p - m) / abs(m) if m not in (None, 0) and p is not None else None
            rows.append(
                {
                    "model": case.target,
                    "config": case.config(),
                    "metric": metric,
                    "predicted": p,
                    "measured": m,
                    "rel_error": err,
                    "measured_stable": real["_stable"],
                }
            )
    summary = {}
    for metric in METRICS:
        errs = [
            r["rel_error"] for r in rows if r["metric"] == metric and r["rel_error"] is not None
        ]
        summary[metric] = float(np.median(errs)) if errs else None
    result = {
        "rows": rows,
        "summary": summary,
        "platform": platform.name,
        "quick": quick,
        "machine": machine(),
        "git_revision": git_revision(),
        "created": utc_stamp(),
        "seed": seed,
    }
    _write(result, out_dir or validation_dir() / platform.name)
    return result


def _write(result: dict[str, Any], out: Path) -> None:
    rows = result["rows"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["model"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out / "validation.csv", buf.getvalue().encode())
    atomic_write_json(out / "validation.json", result)
    atomic_write(out / "report.md", _report(result).encode())
    _plots(rows, out)


GOALS = {
    "throughput_rps": 0.05,
    "latency_p50": 0.15,
    "latency_p99": 0.25,
    "memory_peak": 0.15,
    "threads_peak": 0.05,
}


def _report(result: dict[str, Any]) -> str:
    lines = [
        f"# Validation of `{result['platform']}`",
        "",
        f"{len({r['config'] + r['model'] for r in result['rows']})} held-out configurations, "
        f"run for real and simulated ({'quick' if result['quick'] else 'full'} grid), "
        f"git {result['git_revision'][:12]}, {result['created']}.",
        "",
        "| metric | median abs relative error | goal |",
        "|---|---|---|",
    ]
    for metric, value in result["summary"].items():
        shown = "-" if value is None else f"{value:.1%}"
        lines.append(f"| {metric} | {shown} | {GOALS[metric]:.0%} |")
    lines += [
        "",
        "| model | config | metric | predicted | measured | error |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        err = "-" if r["rel_error"] is None else f"{r['rel_error']:.1%}"
        lines.append(
            f"| {r['model']} | {r['config']} | {r['metric']} | {_num(r['predicted'])} | "
            f"{_num(r['measured'])} | {err} |"
        )
    return "\n".join(lines) + "\n"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:,.3g}" if abs(x) < 100 else f"{x:,.0f}"


def _plots(rows: list[dict[str, Any]], out: Path) -> None:
    # matplotlib is heavy and only needed here, so it loads on first plot.
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    for metric in METRICS:
        pts = [
            (r["measured"], r["predicted"], r["model"])
            for r in rows
            if r["metric"] == metric and r["measured"] and r["predicted"]
        ]
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(5, 5))
        for model in sorted({p[2] for p in pts}):
            xs = [p[0] for p in pts if p[2] == model]
            ys = [p[1] for p in pts if p[2] == model]
            ax.scatter(xs, ys, label=model, s=24)
        lo = min(min(p[0], p[1]) for p in pts) * 0.8
        hi = max(max(p[0], p[1]) for p in pts) * 1.2
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1, label="y = x")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"measured {metric}")
        ax.set_ylabel(f"predicted {metric}")
        ax.legend(fontsize=6)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        atomic_write(out / f"scatter_{metric}.png", buf.getvalue())
