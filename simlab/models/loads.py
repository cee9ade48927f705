"""Shared maths for the models' offered loads and textbook reductions.

The models call these to say, before simulating, how loaded each resource
will be (``rho``), and which textbook queue they reduce to. Everything here
is plain arithmetic on the parameters plus ``simlab.theory``. Where the load
of a process depends on how connections were dealt to processes, the
``Deal`` of the replications in question says (``simlab.streams``).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from simlab import theory
from simlab.distributions import Distribution, Exponential
from simlab.models.base import Analytic
from simlab.params import Architecture, Platform, Workload
from simlab.streams import Deal

__all__ = [
    "Service",
    "cpu_loads",
    "io_moments",
    "mgc_reference",
    "per_client_reference",
    "reduction_blocker",
    "service",
    "uncontended",
]

# A reduction is called exact only when clients collide this rarely: a
# collision (a request finding its client's previous one still in flight)
# makes it wait at the client, which no textbook queue here includes.
COLLISION_LIMIT = 1e-3
# Draws for the moments of the slowest of several random parallel calls,
# which have no closed form for most shapes: 40,000 put the mean within
# about 0.5% (1/sqrt(n) x cv).
MAX_DRAWS = 40_000
_MAX_SEED = 12345


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
    draws = dist.sample(np.random.default_rng(_MAX_SEED), (MAX_DRAWS, calls)).max(axis=1)
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


def cpu_loads(
    workload: Workload,
    platform: Platform,
    arch: Architecture,
    deal: Deal,
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
        busiest = deal.busiest(workload.connections, arch.processes)
        out["gil"] = workload.rate * busiest * per_process_gil
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


def _weighted_waits(
    workload: Workload, svc: Service, servers: int, shares: list[float]
) -> tuple[float, float | None] | str:
    """(mean wait over the load, P(wait) or None) of one deal's per-process queues."""
    assert workload.rate is not None
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
    return wq, (float(np.dot(shares, wait_probs)) if wait_probs else None)


def mgc_reference(
    workload: Workload,
    arch: Architecture,
    deal: Deal,
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
    With several processes the waits are averaged over the replications'
    deals. ``extra_latency`` is time after the queue (async's backend wait);
    the p99 is given only when it is fixed, since a random one changes the tail."""
    assert workload.rate is not None
    deals = deal.shares(workload.connections, arch.processes) if split else [[1.0]]
    # Replications that dealt alike (always, with one process) are computed once.
    distinct = sorted({tuple(s) for s in deals})
    results = []
    for shares in distinct:
        r = _weighted_waits(workload, svc, servers, list(shares))
        if isinstance(r, str):
            return r
        results.append((r, deals.count(list(shares))))
    if len(results) == 1:
        wq, p_wait = results[0][0]
    else:
        total = sum(n for _, n in results)
        wq = sum(r[0] * n for r, n in results) / total
        probs = [(r[1], n) for r, n in results if r[1] is not None]
        p_wait = sum(p * n for p, n in probs) / total if probs else None
    values = {
        "queue_delay_mean_ms": wq * 1e3,
        "latency_mean_ms": (wq + svc.mean + extra_latency) * 1e3,
        "threads_busy_mean": workload.rate * (svc.mean if busy_mean is None else busy_mean),
    }
    if p_wait is not None:
        values["wait_probability"] = p_wait
    first = distinct[0]
    if svc.exponential and len(distinct) == 1 and len(set(first)) == 1 and extra_fixed:
        lam = workload.rate * first[0]
        values["latency_p99_ms"] = (
            theory.mmc_sojourn_quantile(0.99, lam, 1 / svc.mean, servers) + extra_latency
        ) * 1e3
    in_flight = workload.rate * (wq + svc.mean + extra_latency)
    collisions = in_flight / workload.connections
    kind = "M/M" if svc.exponential else "M/G"
    name = f"{kind}/{servers}" + (f" per process (x{len(first)})" if len(first) > 1 else "")
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
