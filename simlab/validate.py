"""``simlab validate``: held-out real runs against the calibrated simulation, metric by metric.

Every configuration here differs from the calibration grid (``simlab.real.grids``).
Each is run for real ``repeats`` times (different seeds) and simulated with
the profile; each metric's error is |predicted - measured| / measured, with
measured the mean over the repeats.

Each run is predicted from its own arrivals where they can be replayed
(``predict_case``): an open-loop run's arrival times and connections are
drawn by the load generator from the run's seed before it starts, so the
model is given that very schedule (``measure.replayed``), an input and not
an outcome. Of what the run measured, only one input reaches its
prediction: where copies race for the connections (gthread), how many each
accepted, read during the warm-up; no outcome (latency, throughput, memory,
threads) does. The prediction is the mean of the per-run predictions. A
case whose arrivals depend on the run (a closed loop) is simulated with its
own seed, and the report says which way each case was predicted.

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
from simlab.models import get_model
from simlab.params import LAB_KEYS, Architecture, Platform, Workload
from simlab.paths import validation_dir
from simlab.platforms import load_platform, profile_path
from simlab.provenance import atomic_write, atomic_write_json, git_revision, machine, utc_stamp
from simlab.real.grids import (
    RUNTIMES,
    STRUCTURE_WORKERS,
    Case,
    held_out,
    measure_options,
    runtime_cases,
    structure_runs,
)
from simlab.real.measure import measure, replayed
from simlab.real.peers import PEERS, REGISTRY, RESEMBLES, as_designed, with_own_costs
from simlab.real.peers.build import READINESS_IN_FLIGHT
from simlab.results import MeasuredSummary, SimSummary
from simlab.sessions import add, between, load, report_lines, session_of
from simlab.sessions import write as write_history
from simlab.simulation import simulate
from simlab.stats import bootstrap_ci
from simlab.streams import Deal

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


def _simulate(
    case: Case,
    platform: Platform,
    seed: int,
    *,
    workload: Workload | None = None,
    replications: int = SIM_REPLICATIONS,
    shares: tuple[float, ...] | None = None,
    dealt: tuple[int, ...] | None = None,
) -> SimSummary:
    model = RESEMBLES.get(case.target, case.target)
    arch = as_designed(case.target, case.arch)
    if shares is not None:
        arch = replace(arch, accept_shares=shares, accept_map=dealt)
    return simulate(
        model,
        case.workload if workload is None else workload,
        platform,
        arch,
        duration=case.duration,
        warmup=case.warmup,
        seed=seed,
        replications=replications,
    ).summary


def run_seed(seed: int, k: int, r: int) -> int:
    """The seed of real run ``r`` of case ``k`` of a validation seeded ``seed``:
    the load generator draws that run's arrivals (and its queries) from it."""
    return seed * 1000 + k * 10 + r


def not_replayed(case: Case) -> str | None:
    """Why ``case``'s real runs' arrivals cannot be replayed into its
    prediction, or None when they can: only open-loop arrivals at a constant
    rate are drawn by the load generator from the run's seed before the run
    (``loadgen.open_arrivals``); a closed loop's next request waits for the
    last answer, so its arrival times are an outcome of the run."""
    w = case.workload
    if w.rate is None:
        return "closed loop: its arrival times depend on the server's answers (an outcome)"
    if w.schedule is not None:
        return "a rate schedule: its arrivals are not replayed"
    return None


def _arrivals(case: Case, seed: int) -> Workload:
    """The case's workload carrying, as a trace, the very arrivals its real run
    seeded ``seed`` sends (``measure.replayed``): drawn from the seed, not read
    from the run, so nothing the run measured enters the prediction."""
    return replayed(measure_options(case, seed))


@dataclass(frozen=True)
class CasePrediction:
    """A case's predictions and how they were made.

    ``how`` is "replayed" (each real run predicted from its own arrivals,
    ``runs`` holding those per-run predictions, the prediction their mean)
    or "seeded" (one simulation with its own seed; ``why`` says why the
    runs' arrivals could not be used). ``sims`` are the simulations made."""

    predicted: dict[str, Predicted]
    runs: dict[str, list[float | None]] | None
    rho: float
    sims: tuple[SimSummary, ...]
    how: str
    why: str | None
    seeds: tuple[int, ...]
    splits: tuple[tuple[int, ...] | None, ...] = ()
    maps: tuple[tuple[int, ...] | None, ...] = ()

    @property
    def dynamic_sim(self) -> SimSummary:
        """The simulation whose thread count moved most during its run
        (``_by_construction``: threads are dynamic if they moved in any)."""
        return max(self.sims, key=lambda s: s.threads.peak_exact - s.threads.mean)

    def row_keys(self, metric: str) -> dict[str, Any]:
        """What a report row says of how its prediction was made."""
        return {
            "prediction": self.how,
            "prediction_why": self.why,
            "predicted_runs": None if self.runs is None else self.runs[metric],
            "run_seeds": list(self.seeds),
            "accept_split_runs": [None if x is None else list(x) for x in self.splits],
            "accept_map_runs": [None if x is None else list(x) for x in self.maps],
        }


def replay_replications(runs: int, replications: int = SIM_REPLICATIONS) -> int:
    """Replications per replayed run: the seeded simulation's shared among the
    runs (about as many simulated seconds in all), at least 2 for an interval."""
    return max(2, math.ceil(replications / max(1, runs)))


def _pooled(values: list[Predicted]) -> Predicted:
    """The mean of independent per-run predictions, with an interval whose
    half-widths on each side are the runs' combined in quadrature (the
    variance of a mean of independent estimates), over the number of runs."""
    vals = [v.value for v in values]
    if any(v is None for v in vals):
        return Predicted(None, None)
    xs = [float(v) for v in vals if v is not None]
    mean = float(np.mean(xs))
    cis = [v.ci for v in values]
    if any(ci is None for ci in cis):
        return Predicted(mean, None)
    n = len(xs)
    below = math.sqrt(sum((x - ci[0]) ** 2 for x, ci in zip(xs, cis, strict=True) if ci)) / n
    above = math.sqrt(sum((ci[1] - x) ** 2 for x, ci in zip(xs, cis, strict=True) if ci)) / n
    return Predicted(mean, [mean - below, mean + above])


def _shares(case: Case, split: list[int] | tuple[int, ...] | None) -> tuple[float, ...] | None:
    """A run's measured split of the connections between racing copies
    (``connections.per_process``) as the model's ``accept_shares``; None
    where the case's copies do not race or the split was not measured."""
    arch = as_designed(case.target, case.arch)
    if split is None or arch.accept != "race" or len(split) != arch.processes:
        return None
    total = sum(split)
    if total <= 0:
        return None
    shares = [c / total for c in split]
    shares[-1] = 1.0 - sum(shares[:-1])  # exactly 1 in floating point
    return tuple(shares)


def _per_run(values: list[list[int] | None] | None, runs: int) -> list[list[int] | None]:
    """One entry per run, None where the record has none: a record with more
    (a changed repeat count) keeps its first ``runs``."""
    out = list(values or [])[:runs]
    return out + [None] * (runs - len(out))


def _dealt(
    case: Case, shares: tuple[float, ...] | None, dealt: list[int] | tuple[int, ...] | None
) -> tuple[int, ...] | None:
    """A run's measured deal of its connections to racing copies
    (``connections.per_connection``: the copy, by its place in the split, of
    each connection) for the model's ``accept_map``; None where the split is
    not used or the deal was not measured for every connection."""
    arch = as_designed(case.target, case.arch)
    if shares is None or dealt is None or len(dealt) != case.workload.connections:
        return None
    if not all(0 <= int(k) < arch.processes for k in dealt):
        return None
    return tuple(int(k) for k in dealt)


def predict_case(  # noqa: PLR0917 - the case and what its runs give it
    case: Case,
    platform: Platform,
    extras: dict[str, Any],
    seed: int,
    run_seeds: list[int],
    splits: list[list[int] | None] | None = None,
    maps: list[list[int] | None] | None = None,
) -> CasePrediction:
    """The prediction of ``case``, as ``simlab validate`` makes it.

    Where its arrivals can be replayed (``not_replayed``), each real run,
    seeded ``run_seeds[r]``, is predicted from that run's own arrivals,
    simulated with ceil(``SIM_REPLICATIONS`` / runs) replications (at least
    2) and the run's seed for the model's own draws; the prediction is the
    mean of the per-run predictions, as the measured value is the mean of
    the runs. Where copies race for the connections (gthread) and a run
    measured how they split them (``splits[r]``, counts per copy), that run
    is simulated with that split instead of a drawn one: like the arrivals,
    how the kernel dealt the connections is an input to the server, not its
    answer; and where it also measured which copy took each connection
    (``maps[r]``), that deal instead of a hashed one. Otherwise (or with no
    runs) one simulation seeded ``seed`` with ``SIM_REPLICATIONS``. A peer's
    own machinery is added either way."""
    why = not_replayed(case)
    if why is not None or not run_seeds:
        sim = _simulate(case, platform, seed)
        return CasePrediction(
            _peer_adjusted(case, sim, platform, extras, seed),
            None,
            _offered_rho(case, sim),
            (sim,),
            "seeded",
            why or "no real runs to replay",
            (seed,),
        )
    reps = replay_replications(len(run_seeds))
    measured = _per_run(splits, len(run_seeds))
    shares = [_shares(case, x) for x in measured]
    deals = [
        _dealt(case, sh, x) for sh, x in zip(shares, _per_run(maps, len(run_seeds)), strict=True)
    ]
    sims = tuple(
        _simulate(
            case, platform, s, workload=_arrivals(case, s), replications=reps, shares=sh, dealt=d
        )
        for s, sh, d in zip(run_seeds, shares, deals, strict=True)
    )
    per_run = [{m: _predicted(m, sim) for m in METRICS} for sim in sims]
    out = {m: _pooled([p[m] for p in per_run]) for m in METRICS}
    busy = [sim.threads.busy_peak for sim in sims]
    adjusted, per_sim_threads = _adjusted(case, out, busy, platform, extras, seed)
    runs: dict[str, list[float | None]] = {}
    for m in METRICS:
        # The peer's machinery is one shift for every run.
        was, now = out[m].value, adjusted[m].value
        shift = 0.0 if was is None or now is None else now - was
        runs[m] = [v if v is None else v + shift for v in (p[m].value for p in per_run)]
    if per_sim_threads is not None:  # a lazy pool's threads, counted per run
        runs["threads_peak"] = list(per_sim_threads)
    elif case.target in PEERS:  # a peer's threads are its structure runs' count
        runs["threads_peak"] = [adjusted["threads_peak"].value] * len(sims)
    rho = _nominal_rho(case, platform, seed)
    kept = tuple(
        None if sh is None else tuple(x or ()) for sh, x in zip(shares, measured, strict=True)
    )
    return CasePrediction(
        adjusted, runs, rho, sims, "replayed", None, tuple(run_seeds), kept, tuple(deals)
    )


def _nominal_rho(case: Case, platform: Platform, seed: int) -> float:
    """The offered load of the case's busiest resource at its nominal rate, with
    the deal a seeded simulation (``seed``, ``SIM_REPLICATIONS``) makes: what
    decides whether its throughput is evidence, the same with or without
    replay (a trace's model states no offered rate)."""
    model = get_model(RESEMBLES.get(case.target, case.target))
    deal = Deal.of_run(seed, SIM_REPLICATIONS)
    loads = model.offered_load(case.workload, platform, as_designed(case.target, case.arch), deal)
    return max((float(v) for k, v in loads.items() if k != "client"), default=0.0)


def _peer_adjusted(
    case: Case, sim: SimSummary, platform: Platform, extras: dict[str, Any], seed: int
) -> dict[str, Predicted]:
    """The predictions, with a peer's own machinery added (threads, idle memory)."""
    out = {m: _predicted(m, sim) for m in METRICS}
    return _adjusted(case, out, [sim.threads.busy_peak], platform, extras, seed)[0]


def _adjusted(  # noqa: PLR0917 - the case's parts, as predict_case has them
    case: Case,
    out: dict[str, Predicted],
    busy_peaks: list[float],
    platform: Platform,
    extras: dict[str, Any],
    seed: int,
) -> tuple[dict[str, Predicted], list[float] | None]:
    """``out`` with a peer's own machinery added (threads, idle memory), and a
    lazily threaded peer's thread count per simulation (from each one's
    busiest moment, ``busy_peaks``; None for the others)."""
    out = dict(out)
    if case.target in REGISTRY and case.target not in PEERS:
        return _runtime_peer(case, out, extras), None
    if case.target not in PEERS:
        return out, None
    # The peer's own machinery (its arbiter or supervisor, its workers'
    # interpreters, its objects per connection): what its structure runs held,
    # on a plane in processes and connections held through them, less what the
    # model of it holds run as they were, at the case's processes and
    # connections; added to the prediction.
    peer = _peer_structure(extras, case.target)
    if case.target in LAZY_THREADS:
        peer = _with_full_pools(peer, case.target, platform)
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
    per_sim: list[float] | None = None
    if case.target in LAZY_THREADS:
        machinery = _gthread_machinery(extras, case.target, case.arch.processes)
        arch = as_designed(case.target, case.arch)
        per_sim = [machinery + lazy_pool(arch, case.workload.connections, b) for b in busy_peaks]
        threads = float(np.mean(per_sim))
    out["threads_peak"] = Predicted(threads, None)
    return out, per_sim


def lazy_pool(arch: Architecture, connections: int, busy_peak: float) -> int:
    """Threads a lazily started pool holds (gunicorn gthread's ThreadPoolExecutor).

    ``ThreadPoolExecutor._adjust_thread_count`` starts a thread at a submit
    only when no idle one is left (its idle semaphore, released once per
    finished task, is empty) and fewer than ``max_workers`` run; none ever
    exits. So each process holds min(W, the most tasks it ever had in
    flight), counted from its start. gthread submits a task per new
    connection (its first read, on a worker) and per ready kept-alive
    request; its tasks in flight at once are, at the most: the launcher's
    readiness connections, opened one after the other
    (``READINESS_IN_FLIGHT``), every persistent
    connection as it opens (all at the start: each first read holds its
    thread until the client speaks), and the requests in service at once.
    They are spread evenly over the processes.
    """
    first_reads = connections if arch.first_read == "worker" else 0
    peak = max(READINESS_IN_FLIGHT, first_reads, busy_peak)
    return arch.processes * min(arch.workers, math.ceil(peak / arch.processes))


def _with_full_pools(peer: dict[str, Any], target: str, platform: Platform) -> dict[str, Any]:
    """A lazily threaded peer's structure runs as if each had started its whole
    pool, as the model's pool always has: the memory of the pool threads a run
    had not started (``lazy_pool`` at its own load) added, user
    (``thread_kib``) and kernel (``thread_kernel_kib``). Otherwise the
    shift to the peer's machinery counts the model's idle pool threads as
    memory the peer lacks, although the peer under load starts them too."""
    design = as_designed(target, Architecture(workers=STRUCTURE_WORKERS))
    missing = []
    for p, n in zip(peer["server_processes"], peer["connections"], strict=True):
        arch = replace(design, processes=int(p))
        missing.append(int(p) * STRUCTURE_WORKERS - lazy_pool(arch, int(n), 0.0))
    out = dict(peer)
    per_thread = {"memory_mib": platform.thread_kib, "kernel_mib": platform.thread_kernel_kib}
    for key, kib in per_thread.items():
        if key in peer:
            out[key] = [float(v) + m * kib / 1024 for v, m in zip(peer[key], missing, strict=True)]
    return out


# A gthread worker process runs its selector on its main thread: beyond its
# pool it holds that one thread (gunicorn's gthread worker; read on a run of
# N=60 P=2 W=6 on 2 December: the master 2 threads, each worker 7).
GTHREAD_WORKER_OWN_THREADS = 1


def _gthread_machinery(extras: dict[str, Any], target: str, processes: int) -> float:
    """gthread's threads beyond its pool at ``processes``: the structure runs'
    threads less the pool each held (``lazy_pool`` at their own load).

    The runs at one process give the master's threads and one worker's, and
    each further worker adds ``GTHREAD_WORKER_OWN_THREADS``. The runs at more
    processes are not used for the line: their few connections (the
    launcher's two readiness connections and one per process) were dealt by
    the copies' race, which was not recorded there and which ``lazy_pool``
    takes as even, so their pool is not known to a thread (the 2-process run
    held 7 threads, which the even guess read as a 5-thread machinery, a
    thread a process too many: every N=60 P=2 run measured 16 against 17)."""
    peer = extras.get("peers", {}).get(target)
    if not peer:
        raise UserError(f"platform: the profile has no idle structure for {target}; recalibrate")
    design = as_designed(target, Architecture(workers=STRUCTURE_WORKERS))
    one = [
        float(t) - lazy_pool(replace(design, processes=1), int(n), 0.0)
        for p, n, t in zip(
            peer["server_processes"], peer["connections"], peer["threads"], strict=True
        )
        if int(p) == 1
    ]
    if not one:
        raise UserError(
            f"platform: the profile has no 1-process structure for {target}; recalibrate"
        )
    return float(np.mean(one)) + GTHREAD_WORKER_OWN_THREADS * (processes - 1)


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
    """Run every held-out case ``repeats`` times for real and simulate each run
    on its own arrivals (``predict_case``); write the report; return rows and
    summary. Each real run goes through ``gate`` (``simlab.gate``: the
    machine's speed; None: off)."""
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
                run = _real(case, run_seed(seed, k, r))
                say = _saying(tick, step, r * len(plan) + k, steps)
                journal.put(key, journalled(gate, run, key, journal, budget, say=say))
    for k, case in enumerate(plan):
        real = [journal.get(f"{k}/{r}: {labels[k]}") for r in range(repeats)]
        on = case_platform(case, platform, extras)
        # Each run's seed as it was measured (a kept run may record its own).
        seeds = [int(v.get("seed", run_seed(seed, k, r))) for r, v in enumerate(real)]
        splits = [v.get("accept_split") for v in real]
        maps = [v.get("accept_map") for v in real]
        pred = predict_case(case, on, extras, seed + k, seeds, splits, maps)
        speeds = [v.get("speed_reference") for v in real]
        lags = [v.get("load_generator") for v in real]
        unsteady = [v.get("unsteady") for v in real]
        waits = [v.get("run_queue") for v in real]
        cpu = cpu_keys(pred, [v.get("cpu_ms_per_request") for v in real])
        for metric in METRICS:
            runs = [v[metric] for v in real]
            why_not = _by_construction(metric, case, pred.dynamic_sim, pred.rho, extras, runs)
            row = _row(case, metric, runs, pred.predicted[metric], why_not, pred.rho, speeds)
            rows.append({**row, **pred.row_keys(metric), "load_generator_runs": lags, **cpu,
                         "unsteady_runs": unsteady, "run_queue_runs": waits})  # fmt: skip
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
    """What a validation keeps of a run: its metrics, the machine's speed
    beside it, and the load generator's own lag and CPU (the latency is
    charged from each request's intended send time, so a late send is in it)."""
    speed = s.speed_reference.to_dict() if s.speed_reference is not None else None
    split, dealt = s.connections.per_process, s.connections.per_connection
    return {
        **{m: _measured(m, s) for m in METRICS},
        "cpu_ms_per_request": cpu_ms(s.cpu_busy_cores, s.throughput_rps),
        "speed_reference": speed,
        "accept_split": None if split is None else list(split),
        "accept_map": None if dealt is None else list(dealt),
        "load_generator": load_generator(s),
        # Why the run's window was not steady (``measure``'s stability reasons:
        # a window opened while the server still made its threads, requests
        # unanswered, a load not kept up with); empty when it was.
        "unsteady": list(s.stability.reasons),
        # What the server's threads waited for a core, against one shared
        # queue of the cores (``measured.RunQueue``); None where not read.
        "run_queue": None if s.run_queue is None else s.run_queue.to_dict(),
    }


def cpu_ms(busy_cores: float, served_rps: float) -> float | None:
    """CPU a served request, ms: the server's busy cores over its served rate
    in the window (``cpu_busy_cores`` and ``throughput_rps``, the same keys in
    ``simulate`` and ``measure``); None where either is not a number or
    nothing was served."""
    if not (math.isfinite(busy_cores) and math.isfinite(served_rps) and served_rps > 0):
        return None
    return 1e3 * busy_cores / served_rps


def cpu_keys(pred: CasePrediction, measured: list[float | None] | None) -> dict[str, Any]:
    """A row's CPU a request, measured (``cpu_ms_runs``, one per run) and
    predicted (``cpu_ms_predicted``, the mean over the case's simulations,
    a peer's own costs included: ``case_platform``): the server's load, read
    apart from its latency (``simlab.misses``). No prediction where a
    simulation served nothing."""
    per_sim = [cpu_ms(sim.cpu_busy_cores, sim.throughput_rps) for sim in pred.sims]
    predicted = None
    if per_sim and all(x is not None for x in per_sim):
        predicted = float(np.mean([x for x in per_sim if x is not None]))
    return {"cpu_ms_runs": measured, "cpu_ms_predicted": predicted}


def load_generator(s: MeasuredSummary) -> dict[str, Any]:
    """The load generator's send delay (ms) and CPU a request (us) in a run,
    and how long it took to open its connections (s), before its first
    request: a server that makes an owner a connection has that long to make
    them unloaded (``Dedicated.forks_at_start`` starts them with the load)."""
    lag = s.send_delay_ms
    return {
        "send_delay_p50_ms": None if lag is None else lag.p50,
        "send_delay_p99_ms": None if lag is None else lag.p99,
        "client_us_per_request": s.lab_cpu.client_us_per_request,
        "open_seconds": s.connections.open_seconds,
    }


def _saying(
    tick: Callable[[str, int, int], None], step: str, k: int, n: int
) -> Callable[[str], None]:
    """The gate's messages (a wait for the machine's speed) on the progress line."""
    return lambda msg: tick(f"{step}: {msg}", k, n)


def _real(case: Case, seed: int) -> Callable[[], dict[str, Any]]:
    """One real run of ``case``, as the gate runs it (``simlab.gate``)."""
    return lambda: _kept(_measure(case, seed))


def _measure(case: Case, seed: int) -> MeasuredSummary:
    return measure(measure_options(case, seed)).summary


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


def _noise_verdict(
    rows: list[dict[str, Any]], metric: str, stats: dict[str, Any]
) -> dict[str, Any]:
    """A model's median error of ``metric`` against the runs' noise: its
    interval over the runs (``median_error_interval`` over the model's own
    rows) and, where the median misses its goal, whether it misses beyond
    that noise (the interval's low end over the goal: other runs of the same
    cases would miss too) or the runs cannot tell (``beyond_noise`` False: a
    model of few cases whose runs spread wider than the goal). None for
    both where the metric has no evidence; ``beyond_noise`` None where the
    goal is met."""
    interval = median_error_interval(rows, metric) if stats["median"] is not None else None
    if interval is None:
        return {"median_ci95": None, "beyond_noise": None}
    low = interval[1]
    return {
        "median_ci95": [low, interval[2]],
        "beyond_noise": None if stats["met"] else bool(low > stats["goal"]),
    }


def _evidence_of(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """The rows of ``metric`` that count as evidence and have an error."""
    return [
        r for r in rows if r["metric"] == metric and r["evidence"] and r["rel_error"] is not None
    ]


def median_error_interval(
    rows: list[dict[str, Any]], metric: str, draws: int = 2000, seed: int = 0
) -> tuple[float, float, float] | None:
    """The median error of ``metric`` over its evidence rows (the summary's,
    from each row's ``rel_error``), with a 95% percentile-bootstrap interval
    over the runs: each draw takes every case's runs again with replacement
    and takes the median over the cases of |predicted - mean measured| /
    mean measured. A case whose runs each have their own prediction (made
    from their arrivals, ``predicted_runs``) draws them in pairs; another
    draws its measured runs against its one prediction. None when no row of
    the metric is evidence.

    The cases are held fixed: the interval says how far the median moves
    with other runs of the same cases, not with other cases. With three runs
    a case it is rough (like ``stats.bootstrap_ci``: as wide as the runs'
    range allows, no guarantee of coverage)."""
    kept = _evidence_of(rows, metric)
    if not kept:
        return None
    point = float(np.median([r["rel_error"] for r in kept]))
    rng = np.random.default_rng(seed)
    errors = np.empty((len(kept), draws))
    for c, r in enumerate(kept):
        measured = np.asarray(r["measured_runs"], dtype=np.float64)
        paired = r.get("predicted_runs") or []
        pairs = len(paired) == len(measured) and None not in paired
        picks = rng.integers(0, len(measured), (draws, len(measured)))
        m = measured[picks].mean(axis=1)
        p = np.asarray(paired, dtype=np.float64)[picks].mean(axis=1) if pairs else r["predicted"]
        # A draw of runs that all measured 0 has no relative error (as ``_row``
        # gives none): the worst, so that it widens the interval upwards.
        with np.errstate(divide="ignore", invalid="ignore"):
            errors[c] = np.where(m != 0, np.abs(p - m) / np.abs(m), np.inf)
    # Quantiles of the draws themselves, not interpolated: a draw can be inf.
    medians = np.median(errors, axis=0)
    lo, hi = (float(x) for x in np.quantile(medians, [0.025, 0.975], method="inverted_cdf"))
    return point, lo, hi


def _model_flag(v: dict[str, Any]) -> str:
    """What the per-model table adds to a median over its goal (``_noise_verdict``)."""
    if v["met"] or v["met"] is None:
        return ""
    if v.get("beyond_noise") is False:
        return f" (over goal within the runs' noise: {interval_text(v.get('median_ci95'))})"
    return " (over goal beyond noise)" if v.get("beyond_noise") else " (over goal)"


def interval_text(ci: list[float] | None) -> str:
    """A median error's interval as the report and the CLI print it."""
    return "-" if ci is None else f"{ci[0]:.1%} to {ci[1]:.1%}"


# A sign test's level: a direction of the errors is a bias of the model only
# when chance alone would give so lopsided a count less often than this.
BIAS_LEVEL = 0.05


def direction(rows: list[dict[str, Any]], metric: str) -> dict[str, Any] | None:
    """Which way the model errs on ``metric`` over its evidence rows: how many
    predictions are under the measured mean and how many over (and of those,
    how many outside noise), the median signed error (predicted - measured,
    relative), and a two-sided sign test of under against over (exact
    binomial, ties left out): ``biased`` when its p-value is under
    ``BIAS_LEVEL``. None when no row of the metric is evidence."""
    kept = _evidence_of(rows, metric)
    if not kept:
        return None
    signed = [(r["predicted"] - r["measured"]) / abs(r["measured"]) for r in kept]
    under = sum(1 for x in signed if x < 0)
    over = sum(1 for x in signed if x > 0)
    outside = [not r["within_noise"] for r in kept]
    p_value = 1.0
    if under + over:
        from scipy.stats import binomtest  # noqa: PLC0415 - scipy only where it is used

        p_value = float(binomtest(under, under + over, 0.5).pvalue)
    return {
        "cases": len(kept),
        "under": under,
        "over": over,
        "equal": len(kept) - under - over,
        # The smallest two-sided p the unequal cases can give (all one way):
        # with 5 or fewer it is over BIAS_LEVEL, and no count can show a bias.
        "testable": under + over > 0 and 2 * 0.5 ** (under + over) < BIAS_LEVEL,
        "under_outside_noise": sum(1 for x, o in zip(signed, outside, strict=True) if x < 0 and o),
        "over_outside_noise": sum(1 for x, o in zip(signed, outside, strict=True) if x > 0 and o),
        "median_signed_error": float(np.median(signed)),
        "sign_test_p": p_value,
        "biased": p_value < BIAS_LEVEL,
    }


def _direction_lines(summary: dict[str, Any]) -> list[str]:
    """The report's section on which way the model errs (none without evidence)."""
    found = [(m, d) for m, d in summary.get("direction", {}).items() if d is not None]
    if not found:
        return []
    return [
        "",
        "## Which way the model errs",
        "",
        "Over the evidence, per metric: predictions under and over the measured mean, and a "
        f"two-sided sign test of the two counts (a bias where p < {BIAS_LEVEL:g}).",
        "",
        *(direction_sentence(m, d) for m, d in found),
    ]


def direction_sentence(metric: str, d: dict[str, Any]) -> str:
    """What ``direction`` found, as the report says it (every word from it)."""
    p = f"sign test p = {d['sign_test_p']:.2g}"
    if not d["testable"]:
        verdict = f"too few unequal cases ({d['under'] + d['over']}) for a sign test to show a bias"
    elif d["biased"]:
        verdict = f"a bias of the model beyond chance ({p})"
    else:
        verdict = f"not beyond chance at p < {BIAS_LEVEL:g} ({p})"
    way = "under" if d["under"] > d["over"] else "over"
    equal = f", equal in {d['equal']}" if d["equal"] else ""
    return (
        f"- {metric}: the model is under the measured mean in {d['under']} of "
        f"{d['cases']} cases ({d['under_outside_noise']} outside noise), over in "
        f"{d['over']} ({d['over_outside_noise']} outside noise){equal}; median signed error "
        f"{d['median_signed_error']:+.1%}: "
        + (f"{way} more often, {verdict}." if d["under"] != d["over"] else f"{verdict}.")
    )


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
    # How far the median itself could move with other runs of the same cases.
    for m, stats in metrics.items():
        interval = median_error_interval(evidence, m) if stats["median"] is not None else None
        stats["median_ci95"] = None if interval is None else [interval[1], interval[2]]
    models: dict[str, dict[str, Any]] = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        own = [r for r in evidence if r["model"] == model]
        models[model] = {
            m: _stats([r["rel_error"] for r in own if r["metric"] == m], GOALS[m]) for m in METRICS
        }
        for m, stats in models[model].items():
            stats.update(_noise_verdict(own, m, stats))
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
        "direction": {m: direction(evidence, m) for m in METRICS},
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
    # Every row's keys, in the order they first appear: a row may lack one that
    # its session did not record (a resimulated older session's load generator).
    names = list(dict.fromkeys(k for r in flat for k in r)) or ["model"]
    writer = csv.DictWriter(buf, fieldnames=names)
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
        f"each run for real {result['repeats']} times and simulated {_simulated_how(result)}; "
        f"git {result['git_revision'][:12]}, {result['created']}.",
        "",
    ]
    source = result.get("measured_runs_from")
    if source:
        lines += [
            f"The runs were measured {source['created']} (git {source['git_revision'][:12]})"
            f"{_on(source.get('machine'))}, and simulated again for this report"
            f"{_on(result.get('resimulated_on'))}.",
            "",
        ]
    for again in result.get("remeasured", []):
        lines += [
            f"{again['case']}: measured again {again['measured']} (git "
            f"{again['git_revision'][:12]}){_on(again.get('machine'))}"
            + (f", {again['runs']} runs" if again.get("runs") else "")
            + f": {again['why']}.",
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
        *_method_lines(result),
        "",
        "## Goals: median absolute error over the evidence",
        "",
        "*95% over the runs*: the median's bootstrap interval, every case's runs drawn "
        "again, each with the prediction from its own arrivals "
        "(`median_error_interval`); a goal is missed beyond the runs' noise only where "
        "its low end is over the goal.",
        "",
        "| metric | median | 95% over the runs | worst | cases | goal | met | median noise |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m, v in s["metrics"].items():
        met = "-" if v["met"] is None else ("yes" if v["met"] else "**no**")
        lines.append(
            f"| {m} | {_pct(v['median'])} | {interval_text(v.get('median_ci95'))} | "
            f"{_pct(v['worst'])} | {v['cases']} | "
            f"{v['goal']:.0%} | {met} | {_pct(s['noise_median'][m])} |"
        )
    lines += _direction_lines(s)
    lines += [
        "",
        "## Per model (median / worst, evidence only)",
        "",
        "A median over its goal is *over goal beyond noise* where the low end of its "
        "interval over the runs (as above, over the model's own cases) is over the goal too, "
        "and *over goal within the runs' noise* where it is not: other runs of the same "
        "cases could meet the goal, and these runs cannot tell the model's error from their "
        "own spread.",
        "",
    ]
    header = "| model | " + " | ".join(METRICS) + " |"
    lines += [header, "|---" * (len(METRICS) + 1) + "|"]
    for model, per in s["models"].items():
        cells = []
        for m in METRICS:
            v = per[m]
            if v["median"] is None:
                cells.append("-")
                continue
            cells.append(f"{_pct(v['median'])} / {_pct(v['worst'])}{_model_flag(v)}")
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
    lines += unsteady_lines(result["rows"])
    lines += core_wait_lines(result["rows"])
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


def unsteady_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The report's section on runs whose window was not steady (``measure``'s
    stability reasons, kept per run as ``unsteady_runs``), one line a run;
    nothing where no run recorded them (sessions before the key; a session
    resumed from runs journalled before it records None for those). A run
    saturated by design (the served rate under the offered) is listed too:
    the reason says which."""
    seen: dict[tuple[str, str], list[Any]] = {}
    for r in rows:
        if r.get("unsteady_runs") is not None:
            seen.setdefault((r["model"], r["config"]), r["unsteady_runs"])
    recorded = sum(isinstance(why, list) for runs in seen.values() for why in runs)
    if not recorded:
        return []
    listed = [
        f"- {model} ({config}), run {k + 1}: {'; '.join(why)}."
        for (model, config), runs in seen.items()
        for k, why in enumerate(runs)
        if isinstance(why, list) and why
    ]
    return [
        "",
        "## Runs whose window was not steady",
        "",
        "Each run's own reasons (`simlab measure`'s stability verdict), kept beside its "
        f"metrics; {len(listed)} of the {recorded} runs that recorded them"
        + (":" if listed else "."),
        *(["", *listed] if listed else []),
    ]


def core_wait_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The report's section on the server's waits for a core (``measure``'s
    ``run_queue``, kept per run as ``run_queue_runs``): a row a case whose
    every run read them and one queue's wait had a mean (the machine under
    its cores), with its measured and predicted p50; nothing where no case
    has them (sessions before the key)."""
    cases: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        if r["metric"] == "latency_p50":
            cases[r["model"], r["config"]] = r
    table = []
    for (model, config), r in cases.items():
        runs = r.get("run_queue_runs") or []
        if not runs or any(w is None or w.get("shared_queue_ms_per_request") is None for w in runs):
            continue
        waited = [float(w["wait_ms_per_request"]) for w in runs]
        excess = [
            x - float(w["shared_queue_ms_per_request"]) for x, w in zip(waited, runs, strict=True)
        ]
        shared = [float(w["shared_queue_ms_per_request"]) for w in runs]
        busy = [float(w["machine_busy_cores"]) for w in runs]
        p50 = r["measured"]
        if p50 is None or not p50 > 0:
            continue  # nothing to set the excess against
        share = float(np.median(excess)) / p50
        table.append((share, model, config, waited, shared, busy, r))
    if not table:
        return []
    shares = [t[0] for t in table if math.isfinite(t[0])]
    longer = sum(min(np.subtract(t[3], t[4])) > 0 for t in table)
    top = max(table, key=lambda t: t[0] if math.isfinite(t[0]) else -math.inf)
    lines = [
        "",
        "## Waiting for a core",
        "",
        "What the server's threads waited for a core a request served (`run_queue`: their "
        "`schedstat` over the window) against what one queue of the machine's cores would make "
        "them wait at its measured busy cores (Erlang C; the model's cores are one queue, "
        "Linux keeps one a core). Cases whose threads held still in every run, on a machine "
        "under its cores "
        f"({len(table)}): in {longer} every run waited longer than one queue would make it",
    ]
    if shares:
        lines[-1] += (
            f"; the excess is a median {float(np.median(shares)):.0%} of the measured p50, "
            f"the largest {top[0]:.0%} ({top[1]}, {top[2]})."
        )
    else:
        lines[-1] += "."
    lines += [
        "",
        "| model | config | p50 measured / model | waited a request (runs) | one queue's | "
        "busy cores | excess / p50 |",
        "|---|---|---|---|---|---|---|",
    ]
    for share, model, config, waited, shared, busy, r in sorted(table, key=lambda t: -t[0]):
        lines.append(
            f"| {model} | {config} | {_num(r['measured'])} / {_num(r['predicted'])} ms | "
            f"{_num(float(np.median(waited)))} ms ({', '.join(_num(x) for x in waited)}) | "
            f"{_num(float(np.median(shared)))} ms | {min(busy):.2f} to {max(busy):.2f} | "
            f"{share:.0%} |"
        )
    return lines


def _on(host: dict[str, Any] | None) -> str:
    """ " on <cpu>, <cores> cores", where the record names its machine."""
    if not host or not host.get("cpu"):
        return ""
    return f" on {host['cpu']}, {host.get('cores', '?')} cores"


def _simulated_how(result: dict[str, Any]) -> str:
    """How many simulations a case's prediction took, each way it was made."""
    hows = {r.get("prediction") for r in result["rows"]}
    runs = max((len(r.get("run_seeds") or []) for r in result["rows"]), default=0)
    parts = []
    if "replayed" in hows:
        each = replay_replications(runs, result["sim_replications"])
        parts.append(f"on each real run's own arrivals with {each} replications")
    if hows - {"replayed"}:
        parts.append(f"with its own seed and {result['sim_replications']} replications")
    return " or ".join(parts)


def _method_lines(result: dict[str, Any]) -> list[str]:
    """How the predictions were made, and which way for each case."""
    cases: dict[str, dict[str, Any]] = {}
    for r in result["rows"]:
        cases.setdefault(f"{r['model']} ({r['config']})", r)
    replayed_ = [c for c, r in cases.items() if r.get("prediction") == "replayed"]
    seeded = {c: r for c, r in cases.items() if r.get("prediction") != "replayed"}
    lines = [
        "## How each prediction was made",
        "",
        f"{len(replayed_)} of {len(cases)} cases are *replayed*: each real run is predicted "
        "from its own arrivals, the times and connections the load generator drew from that "
        "run's seed before the run started (`simlab.real.measure.replayed`), simulated with "
        "ceil(replications / runs) replications and the run's seed for the model's own draws "
        "(service times, the deal of connections to processes); the prediction is the mean "
        "of the per-run predictions, as the measured value is the mean of the runs, and its "
        "interval combines the per-run intervals. The arrival schedule is an input, drawn "
        "from the seed, not read from the run; no outcome of a run (its latencies, what it "
        "served, its memory or threads) enters its prediction, and the measured inputs "
        "that may (racing copies' split and deal, below: how the copies' race for the "
        "connections came out at the start, before any request was measured) are said "
        "where they do. The error "
        "compares the means, |mean predicted - mean measured| / mean "
        "measured, as for a seeded case; the per-run predictions are in `validation.json` "
        "(`predicted_runs`, beside `measured_runs` and `run_seeds`) for a paired reading.",
    ]
    split = [c for c, r in cases.items() if any(r.get("accept_split_runs") or [])]
    if split:
        lines += [
            "",
            f"{len(split)} cases' copies race for their connections (gthread): each run measured "
            "how many connections each copy accepted, read from the copies' own sockets during "
            "the warm-up (`connections.per_process`), and its prediction was given that split "
            "instead of a drawn one (`accept_split_runs`): like the arrivals, how the kernel "
            "dealt the connections is an input to the server, not its answer.",
        ]
    mapped = [c for c, r in cases.items() if any(r.get("accept_map_runs") or [])]
    if mapped:
        lines[-1] += (
            f" In {len(mapped)} of them the runs also measured which copy took each "
            "connection (matching the copies' sockets to the load generator's by their "
            "addresses, `connections.per_connection`), and were predicted with that deal "
            "(`accept_map_runs`) rather than a hashed one."
        )
    if seeded:
        lines += [
            "",
            "*Seeded* cases (one simulation with its own seed, "
            f"{result['sim_replications']} replications), and why their runs' arrivals "
            "are not replayed:",
            "",
        ]
        lines += [
            f"- {c}: {r.get('prediction_why') or 'predicted before replay'}"
            for c, r in seeded.items()
        ]
    return lines


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
        f"reference fell under it at either end, or in which the machine stalled, was "
        f"repeated, at most {o['retries']} time(s); "
        f"the gate's extra time was bounded by {o['budget_s']:g} s. Of {gate['runs']} runs, "
        f"{gate['waited']} waited ({gate['waited_s']:,.0f} s in all), {gate['repeated']} were "
        f"repeated, {gate['slow_machine']} ran on a slow machine all the same, and "
        f"{gate.get('stalled', 0)} kept a stall.",
        "",
        *_watch_lines(gate.get("watch")),
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


def _watch_lines(watch: dict[str, Any] | None) -> list[str]:
    """What the runs' speed watches saw (``simlab.real.speed.SpeedWatch``)."""
    if not watch:
        return []
    during = watch["during_ops_s_median"]
    steal = watch["steal_cores_max"]
    return [
        f"Inside the {watch['runs']} kept runs, the speed watch (one small batch of the "
        f"reference every 0.5 s, on the busy machine) read a median of "
        f"{'-' if during is None else f'{during:,.0f}'} ops/s; the hypervisor took at most "
        f"{'-' if steal is None else f'{steal:.3f}'} cores (steal time), and the longest "
        f"stall was {watch['stall_max_ms']:,.0f} ms.",
        "",
    ]


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
