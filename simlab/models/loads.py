"""Shared maths for the models' offered loads and textbook reductions.

The models call these to say, before simulating, how loaded each resource
will be (``rho``), and which textbook queue they reduce to. Everything here
is plain arithmetic on the parameters plus ``simlab.theory``.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from simlab import theory
from simlab.distributions import Distribution, Exponential
from simlab.models.base import Analytic
from simlab.params import Architecture, Platform, Workload

__all__ = [
    "Service",
    "cpu_loads",
    "mgc_reference",
    "per_client_reference",
    "process_shares",
    "service",
    "uncontended",
]

# A reduction is called exact only when clients collide this rarely: a
# collision (a request finding its client's previous one still in flight)
# makes it wait at the client, which no textbook queue here includes.
COLLISION_LIMIT = 1e-3


class Service:
    """Mean and squared cv of S = cpu + fixed + backend time, whether S is
    exponential, and whether its moments are estimates (Monte Carlo)."""

    def __init__(self, mean: float, scv: float, exponential: bool, estimated: bool) -> None:
        self.mean = mean
        self.scv = scv
        self.exponential = exponential
        self.estimated = estimated


@functools.lru_cache(maxsize=256)
def _max_moments(dist: Distribution, calls: int) -> tuple[float, float]:
    # The maximum of random calls has no closed form for most shapes; 40,000
    # draws with a fixed seed put its mean within about 0.5% (1/sqrt(n) x cv).
    draws = dist.sample(np.random.default_rng(12345), (40_000, calls)).max(axis=1)
    return float(draws.mean()), float(draws.var())


def io_estimated(workload: Workload) -> bool:
    """True when io_moments had to estimate: the maximum of several random calls."""
    w = workload
    return w.fanout == "parallel" and w.calls > 1 and w.io.cv > 0


def io_moments(workload: Workload, call_latency: float = 0.0) -> tuple[float, float]:
    """Mean and variance of the time a request spends in backend calls, each
    call taking ``call_latency`` seconds on top of its delay."""
    w = workload
    if w.calls == 0:
        return 0.0, 0.0
    var_one = (w.io.cv * w.io.mean) ** 2
    if w.fanout == "sequential":
        return w.calls * (w.io.mean + call_latency), w.calls * var_one
    if w.calls == 1 or var_one == 0:
        return w.io.mean + call_latency, var_one
    mean, var = _max_moments(w.io, w.calls)
    return mean + call_latency, var


def service(
    workload: Workload, fixed: float, *, with_io: bool = True, call_latency: float = 0.0
) -> Service:
    io_mean, io_var = io_moments(workload, call_latency) if with_io else (0.0, 0.0)
    cpu = workload.cpu
    mean = cpu.mean + fixed + io_mean
    var = (cpu.cv * cpu.mean) ** 2 + io_var
    parts = [x for x in (cpu.mean, fixed, io_mean) if x > 0]
    exponential = len(parts) == 1 and (
        (cpu.mean > 0 and isinstance(cpu, Exponential))
        or (io_mean > 0 and workload.calls == 1 and isinstance(workload.io, Exponential))
    )
    estimated = with_io and io_estimated(workload)
    return Service(mean, var / mean**2 if mean > 0 else 0.0, exponential, estimated)


def reduction_blocker(
    workload: Workload, platform: Platform, arch: Architecture, *, queue: str
) -> str | None:
    """Why a threaded model has no textbook reduction here, or None.

    The reductions need Poisson arrivals, CPU phases that never queue (no
    GIL, unlimited cores) and no bounded ``queue`` dropping requests.
    """
    if workload.rate is None:
        return "closed or replayed arrivals have no textbook reduction here"
    if not uncontended(platform):
        return "CPU phases contend for cores or a GIL (use the ideal platform)"
    if arch.backlog is not None:
        return f"a bounded {queue} drops requests, which these formulas do not model"
    return None


def uncontended(platform: Platform) -> bool:
    """CPU phases never queue: no GIL and unlimited cores (the ideal platform)."""
    return platform.cores is None and not platform.gil


EXACT_SHARES_UP_TO = 1_000_000


def process_shares(workload: Workload, arch: Architecture) -> list[float]:
    """Fraction of the connections (so of the load) each process gets, as
    ``process_of`` deals them; 1/P each beyond a million connections."""
    n, p = workload.connections, arch.processes
    if p == 1:
        return [1.0]
    if n > EXACT_SHARES_UP_TO:
        return [1.0 / p] * p
    counts = np.bincount(_hash_processes(np.arange(n, dtype=np.uint64), p), minlength=p)
    return [float(c) / n for c in counts]


def _hash_processes(conns: np.ndarray, processes: int) -> np.ndarray:
    """Vectorised ``process_of`` (the same splitmix64 hash)."""
    with np.errstate(over="ignore"):
        z = conns + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(processes)).astype(np.int64)


def cpu_loads(
    workload: Workload,
    platform: Platform,
    arch: Architecture,
    *,
    total: float,
    per_process_gil: float | None,
) -> dict[str, float]:
    """rho of the cores (all CPU seconds per request, ``total``) and of the
    busiest process's GIL (``per_process_gil`` CPU seconds per request that
    need it; None when no phase needs a shared GIL)."""
    assert workload.rate is not None
    out: dict[str, float] = {}
    if platform.cores is not None:
        out["cores"] = workload.rate * total / platform.cores
    if platform.gil and per_process_gil is not None:
        out["gil"] = workload.rate * max(process_shares(workload, arch)) * per_process_gil
    return out


def per_client_reference(
    workload: Workload, svc: Service, *, what: str, rtt: float = 0.0, extra_note: str = ""
) -> Analytic | str:
    """Each client's connection is its own M/G/1 queue with rate lam/N (Pollaczek-Khinchine)."""
    assert workload.rate is not None
    lam = workload.rate / workload.connections
    if svc.mean == 0:
        return "requests take no time"
    rho = lam * svc.mean
    if rho >= 1:
        return f"one client's requests alone saturate its {what} (rho = {rho:.3g})"
    wq = theory.mg1_mean_wait(lam, svc.mean, math.sqrt(svc.scv))
    return Analytic(
        queue=f"{workload.connections} x M/G/1 (one per client, lam/N each; M/G/inf as N grows)",
        exact=not svc.estimated,
        values={
            "queue_delay_mean_ms": wq * 1e3,
            "latency_mean_ms": (wq + svc.mean + rtt) * 1e3,
            "threads_busy_mean": workload.rate * svc.mean,
        },
        note=extra_note,
    )


def mgc_reference(
    workload: Workload,
    arch: Architecture,
    svc: Service,
    *,
    servers: int,
    extra_latency: float = 0.0,
    extra_fixed: bool = True,
    split: bool = True,
    busy_mean: float | None = None,
) -> Analytic | str:
    """M/G/c per process (``split``: each process serves its own connections'
    share of lam) or one M/G/c shared by all (``split=False``). Erlang C when S is
    exponential, Pollaczek-Khinchine when c = 1, Allen-Cunneen otherwise.
    ``extra_latency`` is time after the queue (async's backend wait); the p99
    is given only when it is fixed, since a random one changes the tail."""
    assert workload.rate is not None
    shares = process_shares(workload, arch) if split else [1.0]
    waits: list[float] = []
    wait_probs: list[float] = []
    for share in shares:
        lam = workload.rate * share
        rho = theory.utilization(lam, svc.mean, servers)
        if rho >= 1:
            return f"offered load exceeds {servers} servers (rho = {rho:.3g})"
        if svc.exponential:
            waits.append(theory.mmc_mean_wait(lam, 1 / svc.mean, servers))
            wait_probs.append(theory.erlang_c(servers, lam * svc.mean))
        elif servers == 1:
            waits.append(theory.mg1_mean_wait(lam, svc.mean, math.sqrt(svc.scv)))
        else:
            waits.append(theory.allen_cunneen_mean_wait(lam, svc.mean, servers, cs2=svc.scv))
    wq = float(np.dot(shares, waits))
    values = {
        "queue_delay_mean_ms": wq * 1e3,
        "latency_mean_ms": (wq + svc.mean + extra_latency) * 1e3,
        "threads_busy_mean": workload.rate * (svc.mean if busy_mean is None else busy_mean),
    }
    if wait_probs:
        values["wait_probability"] = float(np.dot(shares, wait_probs))
    if svc.exponential and len(set(shares)) == 1 and extra_fixed:
        lam = workload.rate * shares[0]
        values["latency_p99_ms"] = (
            theory.mmc_sojourn_quantile(0.99, lam, 1 / svc.mean, servers) + extra_latency
        ) * 1e3
    in_flight = workload.rate * (wq + svc.mean + extra_latency)
    collisions = in_flight / workload.connections
    kind = "M/M" if svc.exponential else "M/G"
    name = f"{kind}/{servers}" + (f" per process (x{len(shares)})" if len(shares) > 1 else "")
    method = (
        "Erlang C"
        if svc.exponential
        else ("Pollaczek-Khinchine" if servers == 1 else "Allen-Cunneen")
    )
    exact = (svc.exponential or servers == 1) and collisions < COLLISION_LIMIT and not svc.estimated
    note = method
    if svc.estimated:
        note += "; the slowest of the parallel calls is estimated from 40,000 draws"
    if collisions >= COLLISION_LIMIT:
        note += f"; clients collide on {collisions:.2%} of requests, which the formula ignores"
    return Analytic(queue=name, exact=exact, values=values, note=note)
