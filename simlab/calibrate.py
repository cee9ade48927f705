"""``simlab calibrate``: fit the platform's parameters to real runs on this machine.

It runs ``measure memory`` and a small grid of real runs of every server,
then fits, each by linear least squares with standard errors from the
residual variance (``scipy.optimize.least_squares``; cov = s^2 (J^T J)^-1):

- **CPU per request** beyond the requested burn, from the probe's CPU time
  divided by the requests served. Each server pays a known mix of costs:
  async = parse + task + calls x call; reactor-pool = parse + dispatch +
  calls x call + (1 + calls) x switch; the blocking servers = parse +
  calls x call + (1 + calls) x switch. Servers with and without thread
  hand-offs, and runs with 0, 1 and 4 calls, make the five costs separable.
- **Wall-clock overheads**: the server-measured service time minus the burn
  and the requested delays gives the latency added per backend call
  (loopback round trip, backend timer slack); latency minus service minus the
  fitted CPU overhead gives the client and loopback path (``rtt_us``).
- **Memory**: PSS of the server tree = process + threads x thread +
  connections x connection + forks x (fork - thread), over runs with few and
  many connections; kernel shares, stacks, tasks, spawn and fork times come
  from ``measure memory``.
- **Peers' structure**: gunicorn and uvicorn run threads and processes of
  their own (an arbiter, helpers); their idle counts and memory at 1 and 2
  processes are recorded so that validation can add them to the model they
  resemble.

Nothing is written until the fit is done, and then atomically: an
interrupted calibration leaves the previous profile as it was.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize, stats

from simlab.distributions import Fixed
from simlab.errors import UserError
from simlab.models import get_model
from simlab.params import Architecture, Workload
from simlab.platforms import profile_path
from simlab.provenance import atomic_write_json, git_revision, json_safe, machine, utc_stamp
from simlab.real.grids import Run, grid
from simlab.real.measure import MeasureOptions, measure
from simlab.real.memory import measure_memory
from simlab.real.peers import PEERS

__all__ = ["CPU_COSTS", "Fit", "calibrate", "cpu_row", "fit_linear"]

CPU_COSTS = ("parse_us", "task_us", "dispatch_us", "call_us", "context_switch_us", "wake_us")
MEMORY_TERMS = (
    "process_kib",
    "thread_kib",
    "connection_kib",
    "fork_extra_kib",
    "backend_conn_kib",
    "fork_touched_kib",
)


@dataclass(frozen=True)
class Fit:
    """A linear least-squares fit: values, standard errors and residuals."""

    names: tuple[str, ...]
    values: tuple[float, ...]
    stderr: tuple[float, ...]
    residuals: tuple[float, ...]
    dof: int

    def value(self, name: str) -> float:
        return self.values[self.names.index(name)]

    def as_parameters(self, scale: float = 1.0) -> dict[str, dict[str, Any]]:
        t = stats.t.ppf(0.975, max(self.dof, 1))
        return {
            n: {
                "value": v * scale,
                "stderr": s * scale,
                "ci95": [(v - t * s) * scale, (v + t * s) * scale],
            }
            for n, v, s in zip(self.names, self.values, self.stderr, strict=True)
        }


def fit_linear(
    x: np.ndarray, y: np.ndarray, names: tuple[str, ...], *, nonnegative: bool = True
) -> Fit:
    """Least squares for y ~ x @ theta (theta >= 0 when ``nonnegative``), with
    standard errors sqrt(diag(s^2 (J^T J)^-1)), s^2 = RSS / (rows - params)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape[0] < x.shape[1]:
        raise ValueError(f"{x.shape[0]} rows cannot fit {x.shape[1]} parameters")
    lower = 0.0 if nonnegative else -np.inf
    start = np.clip(np.linalg.lstsq(x, y, rcond=None)[0], 0.0 if nonnegative else -np.inf, np.inf)
    result = optimize.least_squares(
        lambda th: x @ th - y, start, bounds=(lower, np.inf), method="trf"
    )
    residuals = result.fun
    dof = x.shape[0] - x.shape[1]
    s2 = float(residuals @ residuals) / dof if dof > 0 else math.nan
    jtj = result.jac.T @ result.jac
    try:
        cov = s2 * np.linalg.inv(jtj)
        stderr = np.sqrt(np.clip(np.diag(cov), 0.0, np.inf))
    except np.linalg.LinAlgError:
        stderr = np.full(x.shape[1], math.nan)
    return Fit(
        names,
        tuple(float(v) for v in result.x),
        tuple(float(s) for s in stderr),
        tuple(float(r) for r in residuals),
        dof,
    )


def cpu_row(target: str, calls: int, busy: float = 0.0) -> dict[str, float]:
    """How much of each cost one request of ``target`` pays (the design matrix):
    its model's ``request_cost`` at ``busy`` cores of load (``RequestCost.terms``)."""
    cost = get_model(target).request_cost(Workload(connections=1, rate=1.0, calls=calls))
    return cost.terms(busy)


def _per_request_cpu(s: dict[str, Any], run: Run) -> float | None:
    """CPU microseconds per request beyond the requested burn."""
    busy = s.get("cpu_busy_cores")
    served = s.get("throughput_rps")
    if not busy or not served:
        return None
    return float((busy / served - run.workload.cpu.mean) * 1e6)


def fit_cpu(results: list[tuple[Run, dict[str, Any]]]) -> Fit:
    rows, ys = [], []
    for run, s in results:
        y = _per_request_cpu(s, run)
        if run.role == "cpu" and y is not None:
            busy = float(s["cpu_busy_cores"] or 0.0)
            rows.append([cpu_row(run.target, run.workload.calls, busy)[k] for k in CPU_COSTS])
            ys.append(y)
    return fit_linear(np.array(rows), np.array(ys), CPU_COSTS)


# Wall-clock overheads are read from lightly loaded runs only: under load the
# server's service time also holds GIL and core waits, which are queueing.
LIGHT_LOAD = 0.3


def _light(run: Run, s: dict[str, Any]) -> bool:
    return (
        run.role == "cpu"
        and (s.get("cpu_busy_cores") or 0.0) < LIGHT_LOAD
        and s["service_ms"]["mean"] is not None
    )


def fit_wall(results: list[tuple[Run, dict[str, Any]]], cpu: Fit) -> Fit:
    """call_latency_us from the server's own service times; rtt_us from what is left."""
    rows, ys = [], []
    rtts = []
    for run, s in results:
        if not _light(run, s):
            continue
        w = run.workload
        extra = (s["service_ms"]["mean"] - (w.cpu.mean + w.calls * w.io.mean) * 1e3) * 1e3
        rows.append([1.0, float(w.calls)])
        ys.append(extra)
        row = cpu_row(run.target, w.calls, float(s["cpu_busy_cores"] or 0.0))
        overhead = sum(row[k] * cpu.value(k) for k in CPU_COSTS)
        gap_us = (s["latency_ms"]["mean"] - s["service_ms"]["mean"]) * 1e3
        # At these loads queueing is small but not nil; the p50 of the queueing
        # delay is the better estimate of the fixed part.
        gap_us = min(gap_us, (s["queue_delay_ms"]["p50"] or gap_us / 1e3) * 1e3)
        rtts.append(gap_us - overhead)
    service = fit_linear(np.array(rows), np.array(ys), ("burn_overshoot_us", "call_latency_us"))
    r = np.asarray(rtts)
    rtt = max(0.0, float(np.median(r)))
    # The median's standard error: 1.2533 s / sqrt(n) for a normal sample.
    rtt_se = 1.2533 * float(r.std(ddof=1)) / math.sqrt(len(r)) if len(r) > 1 else math.nan
    return Fit(
        names=(*service.names, "rtt_us"),
        values=(*service.values, rtt),
        stderr=(*service.stderr, rtt_se),
        residuals=(*service.residuals, *(float(x - rtt) for x in r)),
        dof=service.dof,
    )


def served_connections(run: Run) -> float:
    """Expected distinct connections that sent at least one request during the run:
    with R requests spread uniformly over N connections, N (1 - exp(-R / N))."""
    w = run.workload
    assert w.rate is not None
    sent = w.rate * (run.warmup + run.duration)
    return w.connections * (1 - math.exp(-sent / w.connections))


def memory_row(run: Run, threads: float, connections: float, processes: float) -> list[float]:
    """Features of one run: how many of each memory unit its server held at its peak.

    Threads, connections and processes are the probe's counts. Backend
    connections are one per thread that made a call: one per served
    connection where a thread or child owns a connection, one per loop for
    async, and few (they are reused) for reactor-pool's workers.
    """
    cls = get_model(run.target)
    served = served_connections(run) if cls.holds_connection else 1.0
    backend = served if run.workload.calls > 0 else 0.0
    forks = max(0.0, processes - 1)
    touched = served if cls.own_process else 0.0
    return [1.0, threads, connections, forks, backend, touched]


def _lognormal_cv(p50: float, p99: float) -> float | None:
    """The cv of a lognormal with this median and 99th percentile:
    sigma = ln(p99 / p50) / z(0.99), cv = sqrt(exp(sigma^2) - 1)."""
    if p50 <= 0 or p99 <= p50:
        return None
    sigma = math.log(p99 / p50) / float(stats.norm.ppf(0.99))
    return math.sqrt(math.expm1(sigma**2))


def fit_spread(results: list[tuple[Run, dict[str, Any]]], cpu: Fit) -> dict[str, float]:
    """The cvs of the per-call latency (from the service times of one-call
    runs) and of the client path (from latency minus service of no-call runs),
    each the median over the runs of a lognormal fitted to p50 and p99."""
    call_cvs, rtt_cvs = [], []
    for run, s in results:
        if not _light(run, s) or s["service_ms"]["p50"] is None:
            continue
        w = run.workload
        own_ms = (w.cpu.mean + w.calls * w.io.mean) * 1e3
        if w.calls == 1:
            cv = _lognormal_cv(s["service_ms"]["p50"] - own_ms, s["service_ms"]["p99"] - own_ms)
            if cv is not None:
                call_cvs.append(cv)
        elif w.calls == 0 and s["queue_delay_ms"]["p50"] is not None:
            row = cpu_row(run.target, 0, float(s["cpu_busy_cores"] or 0.0))
            overhead_ms = sum(row[k] * cpu.value(k) for k in CPU_COSTS) / 1e3
            cv = _lognormal_cv(
                s["queue_delay_ms"]["p50"] - overhead_ms, s["queue_delay_ms"]["p99"] - overhead_ms
            )
            if cv is not None:
                rtt_cvs.append(cv)
    return {
        "call_latency_cv": float(np.median(call_cvs)) if call_cvs else 0.0,
        "rtt_cv": float(np.median(rtt_cvs)) if rtt_cvs else 0.0,
    }


def fit_memory(results: list[tuple[Run, dict[str, Any]]]) -> Fit:
    """Weighted by 1 / measured, so that the fit minimises relative error: a
    forking server's hundreds of MiB must not drown a 20 MiB loop's few."""
    rows, ys = [], []
    for run, s in results:
        if run.role not in ("cpu", "memory") or run.target in PEERS:
            continue
        mem, threads = s["memory_mib"]["peak"], s["threads"]["peak"]
        if mem is None or threads is None:
            continue
        processes = s["processes"]["peak"] or 1
        rows.append(memory_row(run, threads, s["connections"]["opened"], processes))
        ys.append(mem * 1024)
    y = np.array(ys)
    return fit_linear(np.array(rows) / y[:, None], np.ones_like(y), MEMORY_TERMS)


def _structure(results: list[tuple[Run, dict[str, Any]]]) -> dict[str, dict[str, list[float]]]:
    """For each peer: idle threads, processes and PSS at 1 and 2 processes, and
    with 1,000 connections (its own cost per connection)."""
    out: dict[str, dict[str, list[float]]] = {}
    for run, s in results:
        if run.role != "structure":
            continue
        entry = out.setdefault(
            run.target,
            {
                "processes": [],
                "threads": [],
                "memory_mib": [],
                "server_processes": [],
                "connections": [],
            },
        )
        entry["server_processes"].append(run.arch.processes)
        entry["connections"].append(run.workload.connections)
        entry["threads"].append(s["threads"]["peak"])
        entry["processes"].append(s["processes"]["peak"])
        entry["memory_mib"].append(s["memory_mib"]["peak"])  # PSS (as kept: user)
    return out


# What calibration keeps of each run: enough to fit again without measuring.
KEPT = {
    "throughput_rps": ("throughput_rps",),
    "cpu_busy_cores": ("cpu_busy_cores",),
    "latency_mean_ms": ("latency_ms", "mean"),
    "service_mean_ms": ("service_ms", "mean"),
    "service_p50_ms": ("service_ms", "p50"),
    "service_p99_ms": ("service_ms", "p99"),
    "queue_p50_ms": ("queue_delay_ms", "p50"),
    "queue_p99_ms": ("queue_delay_ms", "p99"),
    "pss_peak_mib": ("memory_mib", "user_peak"),
    "threads_peak": ("threads", "peak"),
    "processes_peak": ("processes", "peak"),
    "connections_opened": ("connections", "opened"),
    "stable": ("stable",),
}


def _keep(s: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, path in KEPT.items():
        value: Any = s
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        out[key] = value
    return out


def _as_summary(kept: dict[str, Any]) -> dict[str, Any]:
    """The kept numbers back in the shape the fits read."""
    return {
        "throughput_rps": kept["throughput_rps"],
        "cpu_busy_cores": kept["cpu_busy_cores"],
        "latency_ms": {"mean": kept["latency_mean_ms"]},
        "service_ms": {
            "mean": kept["service_mean_ms"],
            "p50": kept["service_p50_ms"],
            "p99": kept["service_p99_ms"],
        },
        "queue_delay_ms": {"p50": kept["queue_p50_ms"], "p99": kept["queue_p99_ms"]},
        "memory_mib": {"peak": kept["pss_peak_mib"]},
        "threads": {"peak": kept["threads_peak"]},
        "processes": {"peak": kept["processes_peak"]},
        "connections": {"opened": kept["connections_opened"]},
        "stable": kept["stable"],
    }


def _run_record(run: Run, s: dict[str, Any]) -> dict[str, Any]:
    w, a = run.workload, run.arch
    return {
        "label": run.label(),
        "target": run.target,
        "role": run.role,
        "duration": run.duration,
        "warmup": run.warmup,
        "workload": {
            "connections": w.connections,
            "rate": w.rate,
            "cpu_s": w.cpu.mean,
            "io_s": w.io.mean,
            "calls": w.calls,
        },
        "architecture": a.describe(),
        "measured": _keep(s),
    }


def _from_record(r: dict[str, Any]) -> tuple[Run, dict[str, Any]]:
    w, a = r["workload"], r["architecture"]
    workload = Workload(
        connections=w["connections"],
        rate=w["rate"],
        cpu=Fixed(w["cpu_s"]),
        io=Fixed(w["io_s"]),
        calls=w["calls"],
    )
    run = Run(r["target"], workload, Architecture(**a), r["role"], r["duration"], r["warmup"])
    return run, _as_summary(r["measured"])


def calibrate(
    name: str,
    *,
    quick: bool = False,
    refit: bool = False,
    out_dir: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run the grid (or, with ``refit``, reuse the runs kept in the existing
    profile), fit, and write ``out_dir/name.json`` (default: the data root's
    profiles); returns the profile."""
    tick = progress or (lambda _label, _k, _n: None)
    path = out_dir / f"{name}.json" if out_dir is not None else profile_path(name)
    if refit:
        try:
            previous = json.loads(path.read_text())
            results = [_from_record(r) for r in previous["runs"]]
            memory = previous["memory_benchmark"]
            quick = bool(previous.get("quick", False))
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise UserError(f"--refit: cannot reuse the runs in {str(path)!r}: {exc}") from None
        tick("fitting", 1, 1)
    else:
        runs = grid(quick)
        total = len(runs) + 1
        tick("measure memory", 0, total)
        memory = measure_memory((100, 500) if quick else (300, 1500))
        results = []
        for k, run in enumerate(runs, 1):
            tick(run.label(), k, total)
            opts = MeasureOptions(
                run.target,
                run.workload,
                run.arch,
                duration=run.duration,
                warmup=run.warmup,
                save=False,
                seed=k,
            )
            results.append((run, _as_summary(_keep(measure(opts).summary.to_dict()))))
        tick("fitting", total, total)
    profile = _profile(name, quick, results, memory)
    atomic_write_json(path, profile)
    return profile


def _profile(
    name: str, quick: bool, results: list[tuple[Run, dict[str, Any]]], memory: dict[str, Any]
) -> dict[str, Any]:
    cpu = fit_cpu(results)
    wall = fit_wall(results, cpu)
    mem = fit_memory(results)
    units = memory["per_unit_kib"]
    params: dict[str, Any] = {}
    params.update(cpu.as_parameters())
    params.update({k: v for k, v in wall.as_parameters().items() if k != "burn_overshoot_us"})
    spread = fit_spread(results, cpu)
    note = "lognormal fitted to p50 and p99; the median over runs"
    params.update({k: {"value": v, "note": note} for k, v in spread.items()})
    mem_params = mem.as_parameters()
    for key in (
        "process_kib",
        "thread_kib",
        "connection_kib",
        "backend_conn_kib",
        "fork_touched_kib",
    ):
        params[key] = mem_params[key]
    fork = mem_params["fork_extra_kib"]
    params["fork_kib"] = {
        **fork,
        "value": fork["value"] + mem.value("thread_kib"),
        "ci95": [x + mem.value("thread_kib") for x in fork["ci95"]],
        "note": "fitted extra over a thread, plus thread_kib",
    }
    measured = "from simlab measure memory (slope between two sizes)"
    params["thread_kernel_kib"] = {"value": max(0.0, units["thread"]["kernel"]), "note": measured}
    params["connection_kernel_kib"] = {
        "value": max(0.0, units["connection"]["kernel"]),
        "note": measured + " (the server's end only: " + memory.get("kernel_method", "") + ")",
    }
    params["fork_kernel_kib"] = {
        "value": max(units["fork"]["kernel"], units["thread"]["kernel"]),
        "note": measured,
    }
    params["stack_kib"] = {"value": units["thread"]["vms"], "note": measured}
    params["task_kib"] = {"value": max(0.0, units["coroutine"]["uss"]), "note": measured}
    params["spawn_us"] = {
        "value": memory["timings"]["thread_create_start_join_us"],
        "note": "thread create+start+join",
    }
    params["fork_us"] = {"value": memory["timings"]["fork_exit_wait_us"], "note": "fork+exit+wait"}
    params["cores"] = os.cpu_count() or 1
    params["gil"] = True
    profile = {
        "name": name,
        "base": "cpython",
        "created": utc_stamp(),
        "git_revision": git_revision(),
        "machine": machine(),
        "quick": quick,
        "parameters": params,
        "not_fitted": {"switch_contention": "kept at the cpython preset's placeholder"},
        "fits": {
            "cpu": {"rows": len(cpu.residuals), "residuals_us": cpu.residuals},
            "wall": {"residuals_us": wall.residuals},
            "memory": {"rows": len(mem.residuals), "relative_residuals": mem.residuals},
        },
        "peers": _structure(results),
        "memory_benchmark": memory,
        "runs": [_run_record(run, s) for run, s in results],
    }
    cleaned: dict[str, Any] = json_safe(profile)
    return cleaned
