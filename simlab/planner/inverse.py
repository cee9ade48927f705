"""The inverse questions: the most connections a memory budget holds, and the
highest arrival rate a configuration serves within the latency goal.

Both are answered by bisection over the same functions the forward plan
uses (``estimate.memory`` and ``estimate.estimate``), so that an inverse
answer fed back into the forward plan lands exactly on its boundary.
"""

from __future__ import annotations

import math

from simlab.models import get_model
from simlab.params import Architecture, Platform, Workload
from simlab.planner.estimate import Sampler, estimate, memory
from simlab.planner.search import Goals
from simlab.streams import Deal

__all__ = ["connections_limit", "rate_limit", "sized_memory"]

CONNECTION_CAP = 1_000_000_000


def sized_memory(
    model: str,
    workload: Workload,
    platform: Platform,
    *,
    workers: int,
    processes: int,
    goals: Goals,
    deal: Deal,
) -> tuple[int, float]:
    """(threads, memory on the goals' basis) of a configuration, grown where
    the model must be to hold every connection (a thread-pool that owns
    persistent connections needs a thread for each)."""
    cls = get_model(model)
    arch = Architecture(workers=workers if cls.pooled else 1, processes=processes)
    arch = cls.sized(workload, arch, deal)
    threads, resident, virtual = memory(model, workload, platform, arch)
    return threads, goals.memory_of(resident, virtual)


def connections_limit(
    model: str,
    workload: Workload,
    platform: Platform,
    *,
    workers: int,
    processes: int,
    goals: Goals,
    deal: Deal,
) -> int | None:
    """The most connections whose memory fits the budget (None without a budget).

    Memory grows with connections (their sockets, and the threads or
    processes that hold them), so the largest fitting count is found by
    bisection; 0 means not even one connection fits.
    """
    budget = goals.budget_mib()
    if budget is None:
        return None
    # An iterative server's threads never let go of a persistent connection:
    # it serves as many as it has processes, whatever the memory.
    cls = get_model(model)
    serving = Architecture(workers=workers if cls.pooled else 1, processes=processes)
    most = cls.serves_at_most(workload, serving)
    cap = CONNECTION_CAP if most is None else most

    def fits(n: int) -> bool:
        sized = workload.with_(connections=n)
        _, used = sized_memory(
            model, sized, platform, workers=workers, processes=processes, goals=goals, deal=deal
        )
        return used <= budget

    if not fits(1):
        return 0
    hi = 2
    while fits(hi):
        if hi >= cap:
            return cap
        hi = min(hi * 2, cap)
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def rate_limit(
    model: str,
    workload: Workload,
    platform: Platform,
    arch: Architecture,
    goals: Goals,
    *,
    deal: Deal,
    rel_tol: float = 1e-3,
) -> float:
    """The highest open arrival rate at which ``arch`` still meets the latency
    goals by the estimate (0.0 when even a trickle misses them).

    Latency grows with the rate, so this is a bisection to ``rel_tol``; the
    random draws are shared across rates, which keeps the boundary sharp.
    """
    sampler = Sampler(workload, platform)

    def ok(rate: float) -> bool:
        e = estimate(model, workload.with_(rate=rate), platform, arch, deal, sampler=sampler)
        return not e.saturated and goals.latency_ok(e.mean, e.p99)

    start = workload.rate if workload.rate is not None else 1.0
    lo, hi = 0.0, start
    if ok(hi):
        lo = hi
        hi *= 2
        while ok(hi):
            lo, hi = hi, hi * 2
            if hi > 1e9:
                return math.inf
    else:
        tiny = start * 1e-6
        if not ok(tiny):
            return 0.0
        lo = tiny
    while hi - lo > rel_tol * lo:
        mid = (lo + hi) / 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo
