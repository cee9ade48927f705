"""Analytic estimates of one configuration: loads, latency tail, threads and memory.

The planner searches with these (they cost microseconds to milliseconds) and
then confirms its answer with the DES. Each model is decomposed into the
queues it reduces to (DESIGN.md's table):

- a *pool* queue (``reactor-pool`` workers, ``thread-pool`` threads with one
  request per connection, the holders of short connections): M/G/W per
  process, Erlang C for the probability of waiting and Allen-Cunneen for the
  mean wait, the wait given that it happens taken as exponential (exact for
  M/M/c, Kingman's heavy-traffic shape otherwise);
- a *loop* queue (``async``, the loop of ``reactor-pool``): M/G/1 per
  process, Pollaczek-Khinchine;
- the *CPU* (a process's GIL, or the cores): each CPU phase of a threaded
  request waits as in M/G/1 (GIL) or M/G/c (cores) at the offered CPU load.

The latency distribution is composed by Monte Carlo from these parts with a
fixed seed and common random numbers, so an estimate is deterministic and
never gets worse when workers are added. When the model itself reduces
exactly to M/M/c (``Model.analytic`` says so), its closed-form mean and p99
replace the composition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from simlab import theory
from simlab.models import get_model
from simlab.models.base import Analytic
from simlab.models.loads import process_shares
from simlab.params import Architecture, Platform, Workload

__all__ = ["DRAWS", "Estimate", "Sampler", "estimate", "memory"]

DRAWS = 20_000
_SEED = 20_011_127
KIB_PER_MIB = 1024.0
POOLED = ("thread-pool", "reactor-pool")
DEDICATED = ("thread-per-connection", "process-per-connection")


@dataclass(frozen=True)
class Estimate:
    """What the formulas say about one configuration (times in seconds)."""

    loads: dict[str, float]
    mean: float
    p50: float
    p99: float
    exact: bool
    method: str
    threads: int
    memory_mib: float
    virtual_mib: float
    cpu_utilization: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def saturated(self) -> dict[str, float]:
        return {k: v for k, v in self.loads.items() if v >= 1}


class Sampler:
    """Common random numbers for every estimate of one workload and platform.

    The per-request parts that do not depend on the configuration (CPU
    demand, backend time, client path) are drawn once; the waits are built
    from fixed uniforms and unit exponentials scaled per configuration.
    """

    def __init__(self, workload: Workload, platform: Platform, draws: int = DRAWS) -> None:
        rng = np.random.default_rng(_SEED)
        w, p = workload, platform
        self.cpu = w.cpu.sample(rng, draws)
        if w.calls:
            calls = w.io.sample(rng, (draws, w.calls)) + p.call_latency().sample(
                rng, (draws, w.calls)
            )
            self.io = calls.sum(axis=1) if w.fanout == "sequential" else calls.max(axis=1)
        else:
            self.io = np.zeros(draws)
        self.rtt = p.rtt().sample(rng, draws)
        # Waiting parts: a uniform decides whether a request waits, a unit
        # exponential how long (scaled by the conditional mean wait).
        self.u_pool, self.e_pool = rng.random(draws), rng.exponential(1.0, draws)
        self.u_loop, self.e_loop = rng.random(draws), rng.exponential(1.0, draws)
        self.u_client, self.e_client = rng.random(draws), rng.exponential(1.0, draws)
        phases = self.cpu_phases(workload)
        self.u_cpu = rng.random((draws, phases))
        self.e_cpu = rng.exponential(1.0, (draws, phases))

    @staticmethod
    def cpu_phases(workload: Workload) -> int:
        """CPU phases of a threaded request: its own work, then one after each
        backend answer it reads (under a GIL each is a separate hand-off)."""
        return 1 + (workload.calls if workload.fanout == "sequential" else min(workload.calls, 1))


def _mixture(u: np.ndarray, e: np.ndarray, p_wait: float, mean_wait: float) -> np.ndarray:
    """Waits that are 0 with probability 1 - p_wait and exponential with mean
    ``mean_wait / p_wait`` otherwise (so their mean is ``mean_wait``)."""
    if p_wait <= 0 or mean_wait <= 0:
        return np.zeros(u.shape)
    if not math.isfinite(mean_wait):
        return np.where(u < p_wait, math.inf, 0.0)
    return np.where(u < p_wait, e * (mean_wait / p_wait), 0.0)


def _mgc_wait(lam: float, mean: float, scv: float, servers: int) -> tuple[float, float]:
    """(P(wait), mean wait) of M/G/c: Erlang C and Allen-Cunneen (exact for M/M/c)."""
    if lam <= 0 or mean <= 0:
        return 0.0, 0.0
    a = lam * mean
    if a >= servers:
        return 1.0, math.inf
    if servers == 1:
        return a, theory.mg1_mean_wait(lam, mean, math.sqrt(scv))
    return theory.erlang_c(servers, a), theory.allen_cunneen_mean_wait(lam, mean, servers, cs2=scv)


def _scv(x: np.ndarray) -> float:
    m = float(x.mean())
    return float(x.var() / m**2) if m > 0 else 0.0


def busiest_share(workload: Workload, arch: Architecture) -> float:
    return max(process_shares(workload, arch))


def holders_needed(workload: Workload, processes: int) -> int:
    """Threads per process that a holder model needs so that no persistent
    connection starves, with a margin for how unevenly connections land on
    processes (the DES deals them afresh each replication).

    The busiest of P processes gets about N/P + z sqrt(N/P (1 - 1/P)) of N
    connections; z = 3.5 covers the maximum of a handful of processes over
    many replications.
    """
    n = workload.connections
    if processes == 1:
        return n
    mean = n / processes
    return min(n, math.ceil(mean + 3.5 * math.sqrt(mean * (1 - 1 / processes))) + 1)


def estimate(
    model: str,
    workload: Workload,
    platform: Platform,
    arch: Architecture,
    sampler: Sampler | None = None,
) -> Estimate:
    """Loads, latency (mean, p50, p99), threads and memory of one configuration.

    Only open arrivals (a rate) have a steady state to estimate.
    """
    if workload.rate is None:
        raise ValueError("estimates need open arrivals (a rate)")
    cls = get_model(model)
    loads = {k: float(v) for k, v in cls.offered_load(workload, platform, arch).items()}
    threads, resident, virtual = memory(model, workload, platform, arch)
    cpu_util = loads.get("cores")
    s = sampler if sampler is not None else Sampler(workload, platform)

    def saturated() -> Estimate:
        inf = math.inf
        return Estimate(
            loads, inf, inf, inf, False, "saturated", threads, resident, virtual, cpu_util
        )

    if any(v >= 1 for v in loads.values()):
        return saturated()
    analytic = cls.analytic(workload, platform, arch)
    served, method = _compose(model, workload, platform, arch, s)
    if not np.isfinite(served).all():
        # A queue the offered loads call stable saturates once the CPU waits
        # that its requests hold a thread through are counted.
        loads["pool with CPU waits"] = math.inf
        return saturated()
    latency = served + _client_wait(workload, served, s)
    p50, p99 = (float(q) for q in np.percentile(latency, [50, 99]))
    mean = float(latency.mean())
    exact = False
    if isinstance(analytic, Analytic) and analytic.exact:
        values = analytic.values
        if "latency_p99_ms" in values:
            mean, p99 = values["latency_mean_ms"] / 1e3, values["latency_p99_ms"] / 1e3
            exact, method = True, f"{analytic.queue}, exact ({analytic.note})"
    return Estimate(loads, mean, p50, p99, exact, method, threads, resident, virtual, cpu_util)


def _cpu_waits(
    model: str,
    workload: Workload,
    platform: Platform,
    arch: Architecture,
    s: Sampler,
    *,
    first: np.ndarray,
    later: float,
) -> np.ndarray:
    """Each request's total wait for the CPU over its phases.

    A threaded request runs ``first`` (its own CPU, parsing, a wake-up), then
    one short phase of ``later`` seconds after each backend answer. Under a
    GIL a process runs one phase at a time: M/G/1 per process at the GIL's
    offered load, with the phases' own second moment (Pollaczek-Khinchine:
    Wq = lam_phases E[S^2] / (2 (1 - rho))). The cores are M/G/c at their
    offered load (Allen-Cunneen). The worse of the two is charged to every
    phase, the wait given that it happens taken as exponential.
    """
    assert workload.rate is not None
    loads = get_model(model).offered_load(workload, platform, arch)
    phases = s.u_cpu.shape[1]
    lam = workload.rate * busiest_share(workload, arch) * phases
    mean = (float(first.mean()) + (phases - 1) * later) / phases
    second = (float(np.mean(first**2)) + (phases - 1) * later**2) / phases
    if mean <= 0:
        return np.zeros(len(s.cpu))
    scv = max(second / mean**2 - 1, 0.0)
    rho_gil, rho_cores = loads.get("gil", 0.0), loads.get("cores", 0.0)
    p_wait, mean_wait = 0.0, 0.0
    if rho_gil > 0:
        p_wait, mean_wait = rho_gil, lam * second / (2 * (1 - rho_gil))
    if rho_cores > 0 and platform.cores is not None:
        lam_all = rho_cores * platform.cores / mean
        pc, wc = _mgc_wait(lam_all, mean, scv, platform.cores)
        if wc > mean_wait:
            p_wait, mean_wait = pc, wc
    if mean_wait <= 0:
        return np.zeros(len(s.cpu))
    waits: np.ndarray = _mixture(s.u_cpu, s.e_cpu, min(p_wait, 1.0), mean_wait).sum(axis=1)
    return waits


def _client_wait(workload: Workload, served: np.ndarray, s: Sampler) -> np.ndarray:
    """The wait at the client: a client sends one request at a time, so a
    request that finds its client's previous one unanswered waits for it.
    Each client is M/G/1 with rate lam/N and service the server's latency
    (Pollaczek-Khinchine), which is what ``per_client_reference`` uses too."""
    assert workload.rate is not None
    lam = workload.rate / workload.connections
    mean = float(served.mean())
    rho = lam * mean
    if rho >= 1:
        return np.full(len(served), math.inf)
    wait = lam * float(np.mean(served**2)) / (2 * (1 - rho))
    return _mixture(s.u_client, s.e_client, rho, wait)


def _compose(
    model: str, workload: Workload, platform: Platform, arch: Architecture, s: Sampler
) -> tuple[np.ndarray, str]:
    """Latency draws of one configuration, and the name of the method."""
    w, p, a = workload, platform, arch
    assert w.rate is not None
    lam = w.rate * busiest_share(w, a)
    us = 1e-6
    calls_cpu = w.calls * p.call_us * us
    switches = (1 + w.calls) * p.context_switch_us * us
    if model == "async":
        loop = s.cpu + (p.parse_us + p.task_us) * us + calls_cpu
        pw, mw = _mgc_wait(lam, float(loop.mean()), _scv(loop), 1)
        wait = _mixture(s.u_loop, s.e_loop, pw, mw)
        return wait + loop + s.io + s.rtt, "M/G/1 loop per process (Pollaczek-Khinchine)"
    parse = 0.0 if model == "reactor-pool" else p.parse_us * us
    thread_cpu = s.cpu + parse + calls_cpu + switches
    phases = s.u_cpu.shape[1]
    later = (calls_cpu + switches) / phases if phases > 1 else 0.0
    first = thread_cpu - (phases - 1) * later
    cpu_wait = _cpu_waits(model, w, p, a, s, first=first, later=later)
    held = thread_cpu + s.io + cpu_wait
    method = "M/G/1 CPU per process" if p.gil else "M/G/c CPU"
    if model == "reactor-pool":
        loop_cost = (p.parse_us + p.dispatch_us) * us
        pl, ml = _mgc_wait(lam, loop_cost, 0.0, 1)
        pw, mw = _mgc_wait(lam, float(held.mean()), _scv(held), a.workers)
        wait = _mixture(s.u_pool, s.e_pool, pw, mw) + _mixture(s.u_loop, s.e_loop, pl, ml)
        return (
            wait + loop_cost + held + s.rtt,
            f"M/G/{a.workers} workers per process (Erlang C, Allen-Cunneen) + {method}",
        )
    k = w.requests_per_connection
    if model in DEDICATED:
        accept = (p.fork_us if model == "process-per-connection" else p.spawn_us) * us
        extra = np.zeros(len(s.cpu))
        if k is not None and accept > 0:
            pa, ma = _mgc_wait(lam / k, accept, 0.0, 1)
            first = s.u_pool < 1 / k  # the first request on a connection waits for its thread
            extra = np.where(first, accept + _mixture(s.u_loop, s.e_loop, pa, ma), 0.0)
        return held + extra + s.rtt, f"one thread per connection + {method}"
    # Holder models (iterative, thread-pool).
    holders = a.workers if model == "thread-pool" else 1
    if k is None:
        return held + s.rtt, f"a thread per persistent connection + {method}"
    gap = w.connections / w.rate
    hold = k * float(held.mean()) + (k - 1) * gap
    pw, mw = _mgc_wait(lam / k, hold, _scv(held) if k == 1 else 1.0, holders)
    first = s.u_loop < 1 / k
    wait = np.where(first, _mixture(s.u_pool, s.e_pool, pw, mw), 0.0)
    return (
        wait + held + s.rtt,
        f"M/G/{holders} over connections per process (Erlang C, Allen-Cunneen) + {method}",
    )


def memory(
    model: str, workload: Workload, platform: Platform, arch: Architecture
) -> tuple[int, float, float]:
    """(threads, resident MiB, reserved virtual MiB) at the expected peak.

    The same parts as ``metrics.replication_levels``, in arithmetic: a base of
    processes, threads and open connections, each thread's backend connection
    once it has made a call, each forked child's copy-on-write growth, and
    the requests in flight (their tasks, and for short connections their
    threads, forks and sockets) at the 99.9th percentile of a Poisson number
    around Little's L.
    """
    w, p, a = workload, platform, arch
    n = w.connections
    persistent = w.persistent
    copies = a.processes if a.processes > 1 else 0
    master = 1 if a.processes > 1 else 0
    per_process = {"iterative": 1, "thread-pool": a.workers + 1, "reactor-pool": a.workers + 1}
    threads = a.processes * per_process.get(model, 1) + master
    forks = copies
    conns = n if persistent else 0
    callers = 0  # threads holding their own backend connection
    if model in DEDICATED and persistent:
        threads += n
        callers = n
        if model == "process-per-connection":
            forks += n
    elif model == "iterative":
        callers = a.processes
        if persistent:
            conns = min(n, a.processes)
    elif model == "thread-pool":
        callers = a.workers * a.processes
        if persistent:
            conns = min(n, a.workers * a.processes) if a.backlog == 0 else n
    elif model == "reactor-pool":
        callers = a.workers * a.processes
    else:
        callers = a.processes
    latency = _rough_latency(w, p)
    assert w.rate is not None
    in_flight = _poisson_peak(w.rate * latency)
    dynamic_threads = dynamic_forks = 0
    if not persistent:
        conns += in_flight
        if model in DEDICATED:
            dynamic_threads = in_flight
            callers += in_flight
            if model == "process-per-connection":
                dynamic_forks = in_flight
    user_fork = p.fork_kib - p.thread_kib
    kernel_fork = p.fork_kernel_kib - p.thread_kernel_kib
    all_threads = threads + dynamic_threads
    all_forks = forks + dynamic_forks
    touched = copies + (all_forks - copies if model == "process-per-connection" else 0)
    user = (
        p.process_kib
        + touched * p.fork_touched_kib
        + all_forks * user_fork
        + all_threads * p.thread_kib
        + conns * p.connection_kib
        + in_flight * p.task_kib
    )
    kernel = (
        all_forks * kernel_fork
        + all_threads * p.thread_kernel_kib
        + conns * (p.connection_kernel_kib)
    )
    if w.calls:
        user += callers * p.backend_conn_kib
        kernel += callers * p.connection_kernel_kib
    virtual = all_threads * p.stack_kib
    return all_threads, (user + kernel) / KIB_PER_MIB, virtual / KIB_PER_MIB


def _rough_latency(workload: Workload, platform: Platform) -> float:
    w, p = workload, platform
    io = w.calls * w.io.mean if w.fanout == "sequential" else (w.io.mean if w.calls else 0.0)
    return w.cpu.mean + io + p.rtt_us * 1e-6


def _poisson_peak(mean: float) -> int:
    if mean <= 0:
        return 0
    # The 99.9th percentile of Poisson(L) by the normal approximation, which
    # is close enough for a memory term and needs no scipy call per estimate.
    return math.ceil(mean + 3.1 * math.sqrt(mean))
