"""Capacity planning: the smallest configuration of each model that meets a
latency goal and a memory budget, and the inverse questions.

    >>> import simlab
    >>> from simlab.planner import Goals
    >>> report = simlab.plan(simlab.c10k_workload(), simlab.load_platform("cpython"),
    ...                      Goals(p99_ms=100, memory_gib=4))  # doctest: +SKIP
    >>> report.recommended  # doctest: +SKIP
    'async'

The search is analytic first (Erlang C and its sojourn tail, Allen-Cunneen,
Pollaczek-Khinchine, Little's law; ``planner.estimate``), then the DES checks
the chosen point and its neighbour (``planner.search``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from simlab.errors import UserError
from simlab.models import MODELS, get_model
from simlab.params import Architecture, Platform, Workload
from simlab.planner.estimate import estimate
from simlab.planner.inverse import connections_limit, rate_limit
from simlab.planner.search import Check, Goals, ModelSearch, Plan, Search, des_check, search_model
from simlab.provenance import json_safe
from simlab.streams import Deal

# The highest rate is confirmed by the DES: while it misses, the rate is
# lowered by RATE_STEP, at most RATE_RETRIES times. The analytic bisection is
# within 0.1%, so a miss means the estimate is optimistic by a few percent,
# which five 2% steps cover; beyond that the DES's own noise is the answer.
RATE_STEP = 0.98
RATE_RETRIES = 5
# What gives way "just above" the limit is read at 1% over it.
ABOVE_LIMIT = 1.01

__all__ = [
    "Check",
    "Goals",
    "Plan",
    "PlanReport",
    "RateLimit",
    "max_connections",
    "max_rate",
    "plan",
]


@dataclass(frozen=True)
class PlanReport:
    """Every model's plan, ranked, and the one recommended."""

    plans: list[Plan]
    recommended: str | None
    explanation: str
    goals: Goals
    workload: Workload
    platform: Platform
    search: Search

    def to_dict(self) -> dict[str, Any]:
        out = {
            "plans": [p.to_dict() for p in self.plans],
            "recommended": self.recommended,
            "explanation": self.explanation,
            "goals": {
                "p99_ms": self.goals.p99_ms,
                "mean_ms": self.goals.mean_ms,
                "memory_gib": self.goals.memory_gib,
                "memory_basis": self.goals.basis,
            },
            "search": {
                "check": self.search.check,
                "max_processes": self.search.max_processes,
                "seed": self.search.seed,
                "replications": self.search.replications,
                "requests_per_replication": self.search.requests,
            },
            "workload": self.workload.describe(),
            "platform": self.platform.describe(),
        }
        return dict(json_safe(out))


def _default_processes(platform: Platform) -> int:
    return 4 * platform.cores if platform.cores is not None else 16


def plan(
    workload: Workload,
    platform: Platform,
    goals: Goals,
    *,
    models: Sequence[str] | None = None,
    max_processes: int | None = None,
    check: Literal["des", "analytic"] = "des",
    seed: int = 1,
    replications: int = 5,
    requests: int = 4000,
    backlog: int | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> PlanReport:
    """Size every model (or ``models``) for ``workload`` within ``goals``.

    ``max_processes`` bounds the pre-forked copies tried (default 4 per core);
    ``check="des"`` confirms each answer by simulation with ``replications``
    replications of about ``requests`` measured requests each. Needs open
    arrivals (``workload.rate``).

    >>> from simlab.params import Workload
    >>> from simlab.platforms import load_platform
    >>> r = plan(Workload(connections=1000, rate=200.0), load_platform("ideal"),
    ...          Goals(p99_ms=80), check="analytic")
    >>> r.recommended
    'async'
    """
    if workload.rate is None:
        raise UserError("plan needs open arrivals: give a rate (--rate), not a think time")
    names = list(models) if models is not None else list(MODELS)
    for name in names:
        get_model(name)  # a UserError naming the choices
    top = max_processes if max_processes is not None else _default_processes(platform)
    if not (isinstance(top, int) and top >= 1):
        raise UserError(f"max_processes(={top!r}) must be an integer >= 1")
    search = Search(
        max_processes=top,
        check=check,
        seed=seed,
        replications=replications,
        requests=requests,
        backlog=backlog,
    )

    def limit(model: str, workers: int, processes: int) -> int | None:
        return connections_limit(
            model,
            workload,
            platform,
            workers=workers,
            processes=processes,
            goals=goals,
            deal=search.deal(),
        )

    plans = []
    for k, name in enumerate(names):
        if progress is not None:
            progress(name, k / len(names))
        plans.append(
            search_model(name, workload, platform, goals, search=search, max_connections=limit)
        )
    if progress is not None:
        progress("done", 1.0)
    ranked = sorted(plans, key=lambda p: _rank(p, goals))
    recommended = ranked[0].model if ranked and ranked[0].feasible else None
    return PlanReport(
        plans=ranked,
        recommended=recommended,
        explanation=_explain(
            ranked, recommended, workload=workload, platform=platform, goals=goals, search=search
        ),
        goals=goals,
        workload=workload,
        platform=platform,
        search=search,
    )


def _rank(p: Plan, goals: Goals) -> tuple[Any, ...]:
    """Feasible plans first, by memory on the budget's basis, then threads, then p99."""
    if not p.feasible:
        return (1, 0.0, 0, 0.0, p.model)
    mem = goals.memory_of(p.memory_mib or 0.0, p.virtual_mib or 0.0)
    return (0, mem, p.threads or 0, p.latency_ms.get("p99") or 0.0, p.model)


def _explain(
    ranked: list[Plan],
    recommended: str | None,
    *,
    workload: Workload,
    platform: Platform,
    goals: Goals,
    search: Search,
) -> str:
    """One paragraph, every number from the plans."""
    w = workload
    goal = f"p99 <= {goals.p99_ms:g} ms" + (
        f" and mean <= {goals.mean_ms:g} ms" if goals.mean_ms is not None else ""
    )
    budget = (
        f" within {goals.memory_gib:g} GiB {goals.basis}" if goals.memory_gib is not None else ""
    )
    if recommended is None:
        reasons = "; ".join(f"{p.model}: {p.reason}" for p in ranked)
        return f"No model meets {goal}{budget} on {platform.name}. {reasons}."
    best = ranked[0]
    feasible = [p for p in ranked if p.feasible]
    text = [
        f"{best.model} is recommended: it meets {goal}{budget} with "
        f"{best.threads:,} thread{'s' if best.threads != 1 else ''} and "
        f"{best.memory_mib:,.0f} MiB resident ({best.virtual_mib:,.0f} MiB reserved), "
        f"the least {goals.basis} memory of the {len(feasible)} feasible plan"
        f"{'s' if len(feasible) != 1 else ''}"
        + (" (confirmed by simulation)." if best.engine == "des" else " (analytic estimate).")
    ]
    # A pool whose workers hold the request through its backend waits.
    pools = [p for p in feasible if _held_pool(p.model) and p.workers is not None]
    if pools and w.rate is not None:
        pool = pools[0]
        held = _held_seconds(pool)
        text.append(
            f"{pool.model} needs {pool.workers:,} workers per process because each holds a "
            f"thread for the whole request, backend waits included: by Little's law about "
            f"{w.rate:,.0f}/s x {held:.3g} s = {w.rate * held:,.0f} threads busy on average."
        )
    owners = [p for p in feasible if _owner_pool(p.model)]
    if owners and w.persistent:
        text.append(
            f"{owners[0].model} needs a thread for each of the {w.connections:,} persistent "
            "connections, because a worker owns its connection while it is open, idle or not."
        )
    heavy = [p for p in feasible if p.threads and best.threads and p.threads > 10 * best.threads]
    if heavy and get_model(best.model).busy_on_cpu:
        text.append(
            f"{best.model} holds a backend wait as a pending coroutine instead of a blocked "
            "thread, so its threads do not grow with the I/O time."
        )
    if w.calls > 1 and w.fanout == "sequential":
        par = w.with_(fanout="parallel")
        text.append(_fanout_hint(par, platform, goals, search))
    infeasible = [p for p in ranked if not p.feasible]
    if infeasible:
        text.append(
            "Not feasible: " + "; ".join(f"{p.model} ({p.reason})" for p in infeasible) + "."
        )
    return " ".join(t for t in text if t)


def _no_limit(model: str, workers: int, processes: int) -> int | None:
    return None


def _held_pool(model: str) -> bool:
    """A pool of workers that each hold a request, backend waits included."""
    cls = get_model(model)
    return cls.pooled and not cls.holds_connection


def _owner_pool(model: str) -> bool:
    """A pool of workers that each own a connection while it is open."""
    cls = get_model(model)
    return cls.pooled and cls.holds_connection


def _held_seconds(p: Plan) -> float:
    mean = p.latency_ms.get("mean") or p.latency_ms.get("analytic_mean") or 0.0
    return float(mean) / 1e3


def _fanout_hint(parallel: Workload, platform: Platform, goals: Goals, search: Search) -> str:
    """What a parallel fan-out would change, by the analytic search alone."""
    quick = Search(max_processes=search.max_processes, check="analytic", backlog=search.backlog)
    pool = next((name for name in MODELS if _held_pool(name)), None)
    if pool is None:
        return ""
    p = search_model(pool, parallel, platform, goals, search=quick, max_connections=_no_limit)
    if not p.feasible or p.workers is None:
        return ""
    return (
        f"Fanning the {parallel.calls} calls out in parallel would cut {pool} to about "
        f"{p.workers:,} workers per process (analytic)."
    )


def max_connections(
    workload: Workload,
    platform: Platform,
    goals: Goals,
    *,
    models: Sequence[str] | None = None,
    architecture: Architecture | None = None,
) -> dict[str, int | None]:
    """For each model, the most connections its memory budget holds.

    With ``architecture`` the pool and process counts are the given ones;
    otherwise one process and the smallest pool the analytic plan finds.
    Thread-pool's workers always grow with persistent connections.
    """
    out: dict[str, int | None] = {}
    deal = Search(max_processes=1).deal()
    for name in list(models) if models is not None else list(MODELS):
        workers, processes = _shape(name, workload, platform, goals, architecture)
        out[name] = connections_limit(
            name,
            workload,
            platform,
            workers=workers,
            processes=processes,
            goals=goals,
            deal=deal,
        )
    return out


@dataclass(frozen=True)
class RateLimit:
    """The highest rate one configuration serves within the latency goal."""

    model: str
    workers: int | None
    processes: int
    max_rate_rps: float
    limit: str
    confirmed: Check | None

    def to_dict(self) -> dict[str, Any]:
        return dict(
            json_safe(
                {
                    "model": self.model,
                    "workers": self.workers,
                    "processes": self.processes,
                    "max_rate_rps": self.max_rate_rps,
                    "limit": self.limit,
                    "des": self.confirmed.to_dict() if self.confirmed is not None else None,
                }
            )
        )


def _shape(
    model: str,
    workload: Workload,
    platform: Platform,
    goals: Goals,
    architecture: Architecture | None,
) -> tuple[int, int]:
    if architecture is not None:
        return architecture.workers, architecture.processes
    quick = Search(max_processes=_default_processes(platform), check="analytic")
    p = search_model(model, workload, platform, goals, search=quick, max_connections=_no_limit)
    if p.feasible and p.processes is not None:
        return p.workers or 1, p.processes
    return 1, 1


def max_rate(
    workload: Workload,
    platform: Platform,
    goals: Goals,
    *,
    models: Sequence[str] | None = None,
    architecture: Architecture | None = None,
    check: Literal["des", "analytic"] = "des",
    seed: int = 1,
    replications: int = 5,
    requests: int = 4000,
) -> list[RateLimit]:
    """For each model, the highest rate that meets the latency goal with a
    fixed configuration: ``architecture``, or the plan for ``workload``'s rate.

    The estimate is bisected to 0.1%; with ``check="des"`` the DES runs at
    that rate and the rate is lowered in 2% steps while the DES misses.
    """
    if workload.rate is None:
        raise UserError("max-rate starts from open arrivals: give a rate (--rate)")
    out = []
    for name in list(models) if models is not None else list(MODELS):
        pooled = get_model(name).pooled
        workers, processes = _shape(name, workload, platform, goals, architecture)
        loops = architecture.loops if architecture is not None else 1
        arch = Architecture(workers=workers if pooled else 1, processes=processes, loops=loops)
        search = Search(
            max_processes=processes, seed=seed, replications=replications, requests=requests
        )
        deal = search.deal()
        rate = rate_limit(name, workload, platform, arch, goals, deal=deal)
        limit = _rate_limit_reason(
            name, workload=workload, platform=platform, arch=arch, goals=goals, rate=rate, deal=deal
        )
        confirmed = None
        if check == "des" and 0 < rate < math.inf:
            for _ in range(RATE_RETRIES):
                m = ModelSearch(name, workload.with_(rate=rate), platform, goals, search)
                confirmed = des_check(m, workers, processes)
                if confirmed.verdict == "meets":
                    break
                rate *= RATE_STEP
        out.append(
            RateLimit(
                model=name,
                workers=workers if pooled else None,
                processes=processes,
                max_rate_rps=rate,
                limit=limit,
                confirmed=confirmed,
            )
        )
    return out


def _rate_limit_reason(
    model: str,
    *,
    workload: Workload,
    platform: Platform,
    arch: Architecture,
    goals: Goals,
    rate: float,
    deal: Deal,
) -> str:
    """What gives way just above the limit."""
    if rate in (0.0, math.inf):
        return "no rate meets the goal" if rate == 0.0 else "no limit found below 1e9/s"
    e = estimate(model, workload.with_(rate=rate * ABOVE_LIMIT), platform, arch, deal)
    if e.saturated:
        resource, rho = max(e.saturated.items(), key=lambda kv: kv[1])
        return f"{resource} saturates (rho = {rho:.2f})"
    return f"p99 reaches {e.p99 * 1e3:,.1f} ms (goal {goals.p99_ms:g} ms)"
