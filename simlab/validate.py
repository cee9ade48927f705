"""``simlab validate``: held-out real runs against the calibrated simulation, metric by metric.

Every configuration here differs from the calibration grid (``simlab.real.grids``).
Each is run for real ``repeats`` times (different seeds) and simulated with
the profile; each metric's error is |predicted - measured| / measured, with
measured the mean over the repeats.

Noise first. The repeats' spread is the measurement's noise: a 95%
bootstrap interval of their mean. The prediction has its own interval (the
simulation's replications). An error is *within noise* when the two
intervals overlap; its *net* error is what is left once both half-widths are
taken off.

Only metrics that can disagree count as evidence:
- throughput, where the configuration is at or beyond saturation (the
  busiest resource's offered load at least ``SATURATED``): below it, a
  stable server serves what it is sent, on both sides, by construction;
- latency p50 and p99, always;
- memory, user (the tree's PSS) and kernel (the server's own, from its
  memory cgroup) separately, defined the same way on both sides;
- threads, where they change during the run (threads made per connection,
  forks, gthread's lazy threads); a fixed pool's count is structural.
The others are reported, marked as equal by construction, and never
counted. Goals (median absolute error per metric, for every model) are in
``GOALS``; the report gives each model's median and worst error.

A peer is simulated as the model it resembles, with the costs its own code
sets where calibration fitted them (uvicorn's loop: ``case_platform``); the
threads and idle memory its own machinery adds (gunicorn's arbiter,
uvicorn's helpers), recorded at calibration, are added to the prediction.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from simlab.errors import UserError
from simlab.gate import Budget, Gate, journalled, spent
from simlab.gate import record as gate_record
from simlab.journal import Journal
from simlab.misses import SATURATED, assumptions_of, explain_all
from simlab.params import LAB_KEYS, Architecture, Platform
from simlab.paths import validation_dir
from simlab.platforms import load_platform, profile_path
from simlab.provenance import atomic_write, atomic_write_json, git_revision, machine, utc_stamp
from simlab.real.grids import (
    RUNTIMES,
    STRUCTURE_WORKERS,
    Case,
    held_out,
    runtime_cases,
    structure_runs,
)
from simlab.real.measure import MeasureOptions, measure
from simlab.real.peers import PEERS, REGISTRY, RESEMBLES, as_designed, with_own_costs
from simlab.real.peers.build import READINESS_CONNECTIONS
from simlab.results import MeasuredSummary, SimSummary
from simlab.sessions import add, between, load, report_lines, session_of
from simlab.sessions import write as write_history
from simlab.simulation import simulate
from simlab.stats import bootstrap_ci

__all__ = ["GOALS", "METRICS", "REPEATS", "case_platform", "validate"]

# The simulation runs as long as the real run, warm-up included, so that
# transients and overload build up over the same time; more replications
# make up the precision.
SIM_REPLICATIONS = 8
REPEATS = 3
# A configuration counts as saturated from this offered load of its busiest
# resource: there, what it serves is the model's prediction, not the input.
GOALS = {
    "throughput_rps": 0.05,
    "latency_p50": 0.15,
    "latency_p99": 0.25,
    "memory_user": 0.15,
    "memory_kernel": 0.15,
    "threads_peak": 0.05,
}
METRICS = tuple(GOALS)


@dataclass(frozen=True)
class Predicted:
    """A simulated value and its 95% interval over replications."""

    value: float | None
    ci: list[float] | None


def _measured(metric: str, s: MeasuredSummary) -> float | None:
    return {
        "throughput_rps": s.throughput_rps,
        "latency_p50": s.latency_ms.p50,
        "latency_p99": s.latency_ms.p99,
        "memory_user": s.memory_mib.user_peak,
        "memory_kernel": s.memory_mib.kernel_peak,
        "threads_peak": s.threads.peak,
    }[metric]


def _predicted(metric: str, s: SimSummary) -> Predicted:
    lat, mem = s.latency_ms, s.memory_mib
    return {
        "throughput_rps": Predicted(s.throughput_rps, s.throughput_ci95),
        "latency_p50": Predicted(lat.p50, lat.p50_ci95),
        "latency_p99": Predicted(lat.p99, lat.p99_ci95),
        "memory_user": Predicted(mem.user_peak, mem.user_peak_ci95),
        "memory_kernel": Predicted(mem.kernel_peak, None),
        "threads_peak": Predicted(s.threads.peak, s.threads.peak_ci95),
    }[metric]


def _by_construction(  # noqa: PLR0917 - the case's parts, as the loop has them
    metric: str,
    case: Case,
    sim: SimSummary,
    rho: float,
    extras: dict[str, Any] | None = None,
    runs: list[float | None] | None = None,
) -> str | None:
    """Why a metric of this case is equal by construction or not comparable
    (not evidence), or None. A thread count is dynamic where the simulation's
    changes during the run, where the peer starts threads lazily, or where the
    real runs' counts differ from one another (a fixed count would be the same
    in every run)."""
    if metric == "throughput_rps" and rho < SATURATED:
        return f"below saturation (rho {rho:.2f} < {SATURATED}): served = sent on both sides"
    peer = (extras or {}).get("peers", {}).get(case.target, {})
    if metric == "threads_peak" and peer.get("threads_note"):
        return f"not the same quantity: {peer['threads_note']}"
    if metric == "threads_peak":
        seen = {v for v in runs or [] if v is not None and math.isfinite(v)}
        dynamic = (
            sim.threads.peak_exact > sim.threads.mean
            or case.target in LAZY_THREADS
            or len(seen) > 1
        )
        if not dynamic:
            return "a fixed count of threads (structural)"
    return None


# Peers that start their worker threads only when a connection needs one.
LAZY_THREADS = ("gunicorn-gthread",)


def _profile_extras(platform_spec: str) -> dict[str, Any]:
    path = Path(platform_spec)
    if not path.suffix:
        path = profile_path(platform_spec)
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, json.JSONDecodeError):
        return {}


def _peer_threads(extras: dict[str, Any], target: str, processes: int) -> float:
    """A peer's idle threads at ``processes``, on the line through the counts
    calibration recorded at 1 and 2 processes."""
    peer = _peer_structure(extras, target)
    return _plane(peer, "threads", processes, None)


def _peer_structure(extras: dict[str, Any], target: str) -> dict[str, Any]:
    peer = extras.get("peers", {}).get(target)
    if not peer:
        raise UserError(f"platform: the profile has no idle structure for {target}; recalibrate")
    return dict(peer)


# A structure run holding at least this many connections measures the peer's
# own cost per connection (calibration's 1,000 idle connections).
MANY_CONNECTIONS = 100


def _plane(peer: dict[str, Any], key: str, processes: int, connections: int | None) -> float:
    """``peer[key]`` (one value per structure run) at
    ``processes`` and ``connections`` held: least squares on a plane in
    processes and connections through the structure runs, a line in
    processes when no run holds many connections (or ``connections`` is None),
    their mean when they were all at one process count."""
    p = np.asarray(peer["server_processes"], dtype=float)
    n = np.asarray(peer["connections"], dtype=float)
    y = np.asarray(peer[key], dtype=float)
    cols, at = [np.ones_like(p)], [1.0]
    if len(set(p.tolist())) >= 2:
        cols.append(p)
        at.append(float(processes))
    if connections is not None and n.max() >= MANY_CONNECTIONS and len(p) > len(cols):
        cols.append(n)
        at.append(float(connections))
    coef, *_ = np.linalg.lstsq(np.column_stack(cols), y, rcond=None)
    return float(np.dot(coef, at))


def _structure_model(
    target: str, processes: int, held: int, platform: Platform, seed: int
) -> tuple[float, float]:
    """The model of ``target`` simulated as its structure runs ran (their idle
    workload, pool and length), at ``processes`` and ``held`` connections:
    its user and kernel memory peaks (MiB)."""
    run = next(r for r in structure_runs() if r.target == target)
    if REGISTRY[target].keep_alive:
        w = run.workload.with_(connections=max(1, held))
    else:
        # It closes every connection after its answer: each request came on a
        # connection of its own (its structure runs had one client a process).
        w = run.workload.with_(connections=processes, requests_per_connection=1)
    s = simulate(
        RESEMBLES[target],
        w,
        platform,
        as_designed(target, replace(run.arch, processes=processes)),
        duration=run.duration,
        warmup=run.warmup,
        replications=1,
        seed=seed,
    ).summary
    return s.memory_mib.user_peak, s.memory_mib.kernel_peak


def lab_platform(platform: Platform, extras: dict[str, Any]) -> Platform:
    """The platform as the lab ran it: with the load generator's, the
    backend's and the probe's CPU on the same cores, as calibration measured them."""
    lab = extras.get("lab", {})
    changes = {
        key: float(lab[key]["value"])
        for key in LAB_KEYS
        if isinstance(lab.get(key), dict) and lab[key].get("value") is not None
    }
    return platform.with_(**changes)


def case_platform(case: Case, platform: Platform, extras: dict[str, Any]) -> Platform:
    """The platform ``case`` is simulated on: ``platform``, with a peer's own
    costs where calibration fitted them (``with_own_costs``: uvicorn's loop)."""
    return with_own_costs(case.target, platform, extras)


def _simulate(case: Case, platform: Platform, seed: int) -> SimSummary:
    model = RESEMBLES.get(case.target, case.target)
    return simulate(
        model,
        case.workload,
        platform,
        as_designed(case.target, case.arch),
        duration=case.duration,
        warmup=case.warmup,
        seed=seed,
        replications=SIM_REPLICATIONS,
    ).summary


def _peer_adjusted(
    case: Case, sim: SimSummary, platform: Platform, extras: dict[str, Any], seed: int
) -> dict[str, Predicted]:
    """The predictions, with a peer's own machinery added (threads, idle memory)."""
    out = {m: _predicted(m, sim) for m in METRICS}
    if case.target in REGISTRY and case.target not in PEERS:
        return _runtime_peer(case, out, extras)
    if case.target not in PEERS:
        return out
    # The peer's own machinery (its arbiter or supervisor, its workers'
    # interpreters, its objects per connection): what its structure runs held,
    # on a plane in processes and connections held through them, less what the
    # model of it holds run as they were, at the case's processes and
    # connections; added to the prediction.
    peer = _peer_structure(extras, case.target)
    held = case.workload.connections if case.workload.persistent else 0
    model_user, model_kernel = _structure_model(
        case.target, case.arch.processes, held, platform, seed
    )
    shifts = {"memory_user": _plane(peer, "memory_mib", case.arch.processes, held) - model_user}
    if "kernel_mib" in peer:  # profiles calibrated before it was kept have none
        shifts["memory_kernel"] = (
            _plane(peer, "kernel_mib", case.arch.processes, held) - model_kernel
        )
    for metric, shift in shifts.items():
        was = out[metric]
        out[metric] = Predicted(
            None if was.value is None else was.value + shift,
            None if was.ci is None else [was.ci[0] + shift, was.ci[1] + shift],
        )
    threads = _peer_threads(extras, case.target, case.arch.processes)
    if case.target in LAZY_THREADS:
        threads = _gthread_machinery(extras, case.target, case.arch.processes)
        arch = as_designed(case.target, case.arch)
        threads += lazy_pool(arch, case.workload.connections, sim.threads.busy_peak)
    out["threads_peak"] = Predicted(threads, None)
    return out


def lazy_pool(arch: Architecture, connections: int, busy_peak: float) -> int:
    """Threads a lazily started pool holds (gunicorn gthread's ThreadPoolExecutor).

    ``ThreadPoolExecutor._adjust_thread_count`` starts a thread at a submit
    only when no idle one is left (its idle semaphore, released once per
    finished task, is empty) and fewer than ``max_workers`` run; none ever
    exits. So each process holds min(W, the most tasks it ever had in
    flight), counted from its start. gthread submits a task per new
    connection (its first read, on a worker) and per ready kept-alive
    request; its tasks in flight at once are, at the most: the launcher's
    readiness connections (``READINESS_CONNECTIONS``), every persistent
    connection as it opens (all at the start: each first read holds its
    thread until the client speaks), and the requests in service at once.
    They are spread evenly over the processes.
    """
    first_reads = connections if arch.first_read == "worker" else 0
    peak = max(READINESS_CONNECTIONS, first_reads, busy_peak)
    return arch.processes * min(arch.workers, math.ceil(peak / arch.processes))


def _gthread_machinery(extras: dict[str, Any], target: str, processes: int) -> float:
    """gthread's threads beyond its pool at ``processes``: the structure runs'
    threads less the pool each held (``lazy_pool`` at their own load), on the
    line through them."""
    peer = extras.get("peers", {}).get(target)
    if not peer:
        raise UserError(f"platform: the profile has no idle structure for {target}; recalibrate")
    design = as_designed(target, Architecture(workers=STRUCTURE_WORKERS))
    xs, ys = [], []
    for p, n, t in zip(peer["server_processes"], peer["connections"], peer["threads"], strict=True):
        arch = replace(design, processes=int(p))
        xs.append(float(p))
        ys.append(float(t) - lazy_pool(arch, int(n), 0.0))
    if len(set(xs)) < 2:
        return float(np.mean(ys))
    slope, intercept = np.polyfit(np.asarray(xs), np.asarray(ys), 1)
    return float(intercept + slope * processes)


def _shifted(p: Predicted, shift: float) -> Predicted:
    return Predicted(
        None if p.value is None else p.value + shift,
        None if p.ci is None else [p.ci[0] + shift, p.ci[1] + shift],
    )


def _runtime_peer(
    case: Case, out: dict[str, Predicted], extras: dict[str, Any]
) -> dict[str, Predicted]:
    """A runtime's peer: its model on the runtime's profile, plus what its
    calibration recorded it holds beyond the model (the runtime's own
    threads; another peer's machinery beyond the reference one's memory)."""
    peer = extras.get("peers", {}).get(case.target)
    if not peer:
        return out
    offset = peer.get("threads_offset")
    if offset is not None:
        out["threads_peak"] = _shifted(out["threads_peak"], float(offset["value"]))
    for metric, key in (("memory_user", "user_offset_mib"), ("memory_kernel", "kernel_offset_mib")):
        if peer.get(key) is not None:
            out[metric] = _shifted(out[metric], float(peer[key]["value"]))
    return out


def _offered_rho(case: Case, sim: SimSummary) -> float:
    loads = {k: v for k, v in sim.stability.offered_load.items() if k != "client"}
    return max(loads.values(), default=0.0)


def _row(  # noqa: PLR0917 - one row's parts, positionally as the loop has them
    case: Case,
    metric: str,
    runs: list[float | None],
    predicted: Predicted,
    why_not: str | None,
    rho: float,
    speeds: list[dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """One metric of one case: its runs, prediction, error and noise; ``speeds``:
    the machine's speed reference beside each run (``simlab.real.speed``)."""
    values = [v for v in runs if v is not None and math.isfinite(v)]
    measured = float(np.mean(values)) if values else None
    m_ci = bootstrap_ci(values) if len(values) >= 2 else None
    p = predicted.value
    row: dict[str, Any] = {
        "model": case.target,
        "resembles": RESEMBLES.get(case.target, case.target),
        "config": case.config(),
        "metric": metric,
        "rho": rho,
        "predicted": p,
        "predicted_ci95": predicted.ci,
        "measured": measured,
        "measured_runs": values,
        "measured_ci95": m_ci,
        "rel_error": None,
        "noise": None,
        "within_noise": None,
        "net_error": None,
        "evidence": why_not is None and measured is not None,
        "by_construction": why_not,
        "goal": GOALS[metric],
        "speed_reference_runs": list(speeds or []),
    }
    if measured in (None, 0) or p is None:
        return row
    assert measured is not None
    err = abs(p - measured) / abs(measured)
    half_m = (m_ci[1] - m_ci[0]) / 2 if m_ci else 0.0
    half_p = (predicted.ci[1] - predicted.ci[0]) / 2 if predicted.ci else 0.0
    gap = abs(p - measured)
    row["rel_error"] = err
    row["noise"] = (half_m + half_p) / abs(measured)
    row["within_noise"] = gap <= half_m + half_p
    row["net_error"] = max(0.0, gap - half_m - half_p) / abs(measured)
    return row


def validation_plan(platform_name: str, quick: bool) -> list[Case]:
    """The held-out cases a platform is validated on."""
    if platform_name in RUNTIMES:
        # A runtime's profile is validated on its own peers' held-out cases.
        plan = runtime_cases(platform_name)
        return plan[::2] if quick else plan  # quick: every other case, every peer
    return held_out(quick)


def report_record(
    rows: list[dict[str, Any]],
    platform_name: str,
    *,
    quick: bool,
    repeats: int,
    seed: int,
    history: dict[str, Any] | None = None,
    gate: dict[str, Any] | None = None,
    assumptions: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A validation's report: its rows, their summary, how and where it was made,
    (with the ``history`` of sessions, ``simlab.sessions``) the sessions' spread,
    (``gate``: ``simlab.gate.record``) how the machine's speed gated its
    runs, and the profile's ``assumptions`` its misses were read against."""
    drift = between(history, rows, quick=quick) if history else None
    return {
        "rows": rows,
        "summary": summarize(rows, drift, assumptions),
        "assumptions": assumptions,
        "between_sessions": drift,
        "platform": platform_name,
        "quick": quick,
        "repeats": repeats,
        "sim_replications": SIM_REPLICATIONS,
        "saturated_from": SATURATED,
        "machine": machine(),
        "git_revision": git_revision(),
        "created": utc_stamp(),
        "seed": seed,
        "gate": gate,
    }


def validate(
    platform_spec: str = "cpython",
    *,
    quick: bool = False,
    repeats: int = REPEATS,
    out_dir: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    seed: int = 1,
    cases: list[Case] | None = None,
    gate: Gate | None = None,
) -> dict[str, Any]:
    """Run every held-out case ``repeats`` times for real and once simulated
    (with replications); write the report; return rows and summary. Each real
    run goes through ``gate`` (``simlab.gate``: the machine's speed;
    None: off)."""
    if not (isinstance(repeats, int) and repeats >= 1):
        raise UserError(f"repeats(={repeats!r}) must be an integer >= 1")
    extras = _profile_extras(platform_spec)
    platform = lab_platform(load_platform(platform_spec), extras)
    plan = cases if cases is not None else validation_plan(platform.name, quick)
    tick = progress or (lambda _l, _k, _n: None)
    rows: list[dict[str, Any]] = []
    steps = len(plan) * repeats
    # An interrupted validation resumes at its first unmeasured run.
    labels = [f"{c.target} {c.config()}" for c in plan]
    gate = gate or Gate.off("not asked for")
    plan_id = {"cases": labels, "repeats": repeats, "seed": seed, "gate": gate.to_dict()}
    journal = Journal(f"validate-{platform.name}", plan_id)
    budget = Budget(gate.budget_s, spent_s=spent(journal))
    # The repeats go round the whole grid (every case once, then again) rather
    # than one case three times in a row: the machine's state drifts over
    # minutes (other work, page cache, thermal), and runs of a case spread over
    # the session let the measured spread show that drift instead of hiding it.
    for r in range(repeats):
        for k, case in enumerate(plan):
            step = f"{labels[k]} (run {r + 1}/{repeats})"
            tick(step, r * len(plan) + k, steps)
            key = f"{k}/{r}: {labels[k]}"
            if key not in journal:
                run = _real(case, seed * 1000 + k * 10 + r)
                say = _saying(tick, step, r * len(plan) + k, steps)
                journal.put(key, journalled(gate, run, key, journal, budget, say=say))
    for k, case in enumerate(plan):
        real = [journal.get(f"{k}/{r}: {labels[k]}") for r in range(repeats)]
        on = case_platform(case, platform, extras)
        sim = _simulate(case, on, seed + k)
        rho = _offered_rho(case, sim)
        predicted = _peer_adjusted(case, sim, on, extras, seed + k)
        speeds = [v.get("speed_reference") for v in real]
        for metric in METRICS:
            runs = [v[metric] for v in real]
            why_not = _by_construction(metric, case, sim, rho, extras, runs)
            rows.append(_row(case, metric, runs, predicted[metric], why_not, rho, speeds))
    tick("report", steps, steps)
    out = out_dir or validation_dir() / platform.name
    # This session joins the history of the sessions before it (simlab.sessions).
    this = {"rows": rows, "created": utc_stamp(), "git_revision": git_revision(),
            "quick": quick, "repeats": repeats, "machine": machine()}  # fmt: skip
    history = add(load(out), session_of(this, source="simlab validate"))
    gate_runs = [(labels[k], r, journal.get(f"{k}/{r}: {labels[k]}")) for r in range(repeats)
                 for k in range(len(plan))]  # fmt: skip
    result = report_record(
        rows, platform.name, quick=quick, repeats=repeats, seed=seed, history=history,
        gate=gate_record(gate, gate_runs), assumptions=assumptions_of(extras),
    )  # fmt: skip
    write_history(out, history)
    _write(result, out)
    journal.done()
    return result


def _kept(s: MeasuredSummary) -> dict[str, Any]:
    """What a validation keeps of a run: its metrics and the machine's speed beside it."""
    speed = s.speed_reference.to_dict() if s.speed_reference is not None else None
    return {**{m: _measured(m, s) for m in METRICS}, "speed_reference": speed}


def _saying(
    tick: Callable[[str, int, int], None], step: str, k: int, n: int
) -> Callable[[str], None]:
    """The gate's messages (a wait for the machine's speed) on the progress line."""
    return lambda msg: tick(f"{step}: {msg}", k, n)


def _real(case: Case, seed: int) -> Callable[[], dict[str, Any]]:
    """One real run of ``case``, as the gate runs it (``simlab.gate``)."""
    return lambda: _kept(_measure(case, seed))


def _measure(case: Case, seed: int) -> MeasuredSummary:
    return measure(
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


def _stats(errors: list[float], goal: float) -> dict[str, Any]:
    if not errors:
        return {"median": None, "worst": None, "cases": 0, "goal": goal, "met": None}
    median = float(np.median(errors))
    return {
        "median": median,
        "worst": float(max(errors)),
        "cases": len(errors),
        "goal": goal,
        "met": median <= goal,
    }


def summarize(
    rows: list[dict[str, Any]],
    drift: dict[str, Any] | None = None,
    assumptions: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Per metric and per model: the median and worst error of the evidence rows,
    against the goal; the metrics equal by construction, reported apart; and
    the errors over twice their goal that noise does not cover, explained
    (``simlab.misses``, with the sessions' spread ``drift`` when there is one
    and the profile's ``assumptions``)."""
    evidence = [r for r in rows if r["evidence"] and r["rel_error"] is not None]
    metrics = {
        m: _stats([r["rel_error"] for r in evidence if r["metric"] == m], GOALS[m]) for m in METRICS
    }
    models: dict[str, dict[str, Any]] = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        models[model] = {
            m: _stats(
                [r["rel_error"] for r in evidence if r["model"] == model and r["metric"] == m],
                GOALS[m],
            )
            for m in METRICS
        }
    construction = {
        m: [
            r["rel_error"]
            for r in rows
            if r["metric"] == m and not r["evidence"] and r["rel_error"] is not None
        ]
        for m in METRICS
    }
    big = explain_all(
        [
            {k: r[k] for k in ("model", "config", "metric", "rel_error", "net_error", "noise")}
            for r in evidence
            if r["rel_error"] > 2 * r["goal"] and not r["within_noise"]
        ],
        rows,
        drift["cases"] if drift else None,
        assumptions,
    )
    return {
        "metrics": metrics,
        "models": models,
        "by_construction": {
            m: {"median": float(np.median(v)) if v else None, "cases": len(v)}
            for m, v in construction.items()
        },
        "big_misses": big,
        "unexplained": sum(1 for b in big if b["why"]["kind"] == "unexplained"),
        "noise_median": {
            m: (
                float(np.median([r["noise"] for r in rows if r["metric"] == m and r["noise"]]))
                if any(r["metric"] == m and r["noise"] for r in rows)
                else None
            )
            for m in METRICS
        },
    }


def _write(result: dict[str, Any], out: Path) -> None:
    rows = result["rows"]
    flat = [{k: (json.dumps(v) if isinstance(v, list) else v) for k, v in r.items()} for r in rows]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(flat[0]) if flat else ["model"])
    writer.writeheader()
    writer.writerows(flat)
    atomic_write(out / "validation.csv", buf.getvalue().encode())
    atomic_write_json(out / "validation.json", result)
    atomic_write(out / "report.md", report(result).encode())
    _plots(rows, out)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def report(result: dict[str, Any]) -> str:
    """The validation report in markdown, every number from ``result``."""
    s = result["summary"]
    cases = len({(r["model"], r["config"]) for r in result["rows"]})
    lines = [
        f"# Validation of `{result['platform']}`",
        "",
        f"{cases} held-out configurations ({'quick' if result['quick'] else 'full'} grid), "
        f"each run for real {result['repeats']} times and simulated with "
        f"{result['sim_replications']} replications; git {result['git_revision'][:12]}, "
        f"{result['created']}.",
        "",
    ]
    for again in result.get("remeasured", []):
        lines += [
            f"{again['case']}: measured again {again['measured']} (git "
            f"{again['git_revision'][:12]}): {again['why']}.",
            "",
        ]
    lines += [
        "Errors are |predicted - measured| / measured, measured the mean of the real runs. "
        "*Noise* is the half-widths of the measured runs' bootstrap interval and of the "
        "simulation's interval, relative to the measured mean; an error inside it is "
        "*within noise*, and *net* is what is left outside it. Only metrics that can "
        f"disagree count: throughput where the offered load reaches {SATURATED} or more, "
        "latency always, memory (user PSS and the server's own kernel memory, "
        "separately), threads where they change during the run.",
        "",
        "## Goals: median absolute error over the evidence",
        "",
        "| metric | median | worst | cases | goal | met | median noise |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, v in s["metrics"].items():
        met = "-" if v["met"] is None else ("yes" if v["met"] else "**no**")
        lines.append(
            f"| {m} | {_pct(v['median'])} | {_pct(v['worst'])} | {v['cases']} | "
            f"{v['goal']:.0%} | {met} | {_pct(s['noise_median'][m])} |"
        )
    lines += ["", "## Per model (median / worst, evidence only)", ""]
    header = "| model | " + " | ".join(METRICS) + " |"
    lines += [header, "|---" * (len(METRICS) + 1) + "|"]
    for model, per in s["models"].items():
        cells = []
        for m in METRICS:
            v = per[m]
            if v["median"] is None:
                cells.append("-")
                continue
            flag = "" if v["met"] else " (over goal)"
            cells.append(f"{_pct(v['median'])} / {_pct(v['worst'])}{flag}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += ["", "## Errors over twice their goal, outside noise", ""]
    if not s["big_misses"]:
        lines.append("None.")
    else:
        lines += [
            "Each with what the rows show of its cause, or a hypothesis and the run that would "
            "test it, chosen by a rule over the rows (`simlab.misses`); "
            f"{s.get('unexplained', 0)} left unexplained.",
            "",
        ]
    for b in s["big_misses"]:
        why = b.get("why")
        tail = f" *{why['kind']}*: {why['text']}." if why else ""
        lines.append(
            f"- {b['model']} ({b['config']}), {b['metric']}: error {_pct(b['rel_error'])}, "
            f"net of noise {_pct(b['net_error'])}.{tail}"
        )
    if result.get("between_sessions"):
        lines += ["", *report_lines(result["between_sessions"])]
    lines += gate_lines(result.get("gate"))
    lines += [
        "",
        "## Equal by construction (reported, not counted)",
        "",
        "| metric | median error | cases |",
        "|---|---|---|",
    ]
    for m, v in s["by_construction"].items():
        lines.append(f"| {m} | {_pct(v['median'])} | {v['cases']} |")
    lines += [
        "",
        "## Every row",
        "",
        "| model | config | metric | rho | predicted | measured (runs) | error | noise | "
        "net | counts |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        runs = ", ".join(_num(x) for x in r["measured_runs"])
        counts = "yes" if r["evidence"] else f"no: {r['by_construction'] or 'not measured'}"
        lines.append(
            f"| {r['model']} | {r['config']} | {r['metric']} | {r['rho']:.2f} | "
            f"{_num(r['predicted'])} | {_num(r['measured'])} ({runs}) | {_pct(r['rel_error'])} | "
            f"{_pct(r['noise'])} | {_pct(r['net_error'])} | {counts} |"
        )
    return "\n".join(lines) + "\n"


def gate_lines(gate: dict[str, Any] | None) -> list[str]:
    """The report's section on the speed gate (``simlab.gate``): its
    options, and every run it held back, marked slow or repeated, with the
    repeated runs' values."""
    lines = ["", "## Runs gated on the machine's speed", ""]
    if not gate:
        return [*lines, "Not recorded (the runs were measured before the gate)."]
    o = gate["options"]
    if not o["on"]:
        return [*lines, f"The gate was off ({o['source']}): every run was kept as it ran."]
    lines += [
        f"Before each run the speed reference (`simlab.real.speed`) had to reach "
        f"{o['floor_ops_s']:,.0f} ops/s ({o['reference_ops_s']:,.0f}, {o['source']}, less a "
        f"margin of {o['margin']:.0%}), waiting up to {o['wait_s']:g} s; a run whose "
        f"reference fell under it at either end was repeated, at most {o['retries']} time(s); "
        f"the gate's extra time was bounded by {o['budget_s']:g} s. Of {gate['runs']} runs, "
        f"{gate['waited']} waited ({gate['waited_s']:,.0f} s in all), {gate['repeated']} were "
        f"repeated, and {gate['slow_machine']} ran on a slow machine all the same.",
        "",
    ]
    if not gate["held"]:
        return lines
    lines += [
        "| case | run | checks before (ops/s) | waited | kept run's slower end | "
        "slow machine | repeated (values, why) |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in gate["held"]:
        checks = ", ".join(f"{x:,.0f}" for x in g["check"]["ops_s"])
        repeated = (
            "; ".join(
                ", ".join(f"{m} {_num(a['values'].get(m))}" for m in METRICS if m in a["values"])
                + f" ({a['why']})"
                for a in g["repeated"]
            )
            or "-"
        )
        end = "-" if g["slowest_ops_s"] is None else f"{g['slowest_ops_s']:,.0f}"
        lines.append(
            f"| {g['case']} | {g['run']} | {checks} | {g['check']['waited_s']:.0f} s | {end} | "
            f"{'yes' if g['slow_machine'] else 'no'} | {repeated} |"
        )
    return lines


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:,.3g}" if abs(x) < 100 else f"{x:,.0f}"


def _plots(rows: list[dict[str, Any]], out: Path) -> None:
    # matplotlib is heavy and only needed here, so it loads on first plot.
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    for metric in METRICS:
        pts = [
            (r["measured"], r["predicted"], r["model"], r["evidence"])
            for r in rows
            if r["metric"] == metric and r["measured"] and r["predicted"]
        ]
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(5, 5))
        for model in sorted({p[2] for p in pts}):
            for evidence, marker in ((True, "o"), (False, "x")):
                xs = [p[0] for p in pts if p[2] == model and p[3] == evidence]
                ys = [p[1] for p in pts if p[2] == model and p[3] == evidence]
                if xs:
                    label = model if evidence else f"{model} (by construction)"
                    ax.scatter(xs, ys, label=label, s=24, marker=marker)
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
