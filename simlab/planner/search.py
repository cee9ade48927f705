"""``plan``: the smallest configuration of every model that meets the goals.

For each model the search runs in two stages:

1. *Analytic.* Processes are tried from one upward; for each, the fewest
   workers (thread-pool and reactor-pool) whose estimated latency meets the
   goals are found by exponential then binary search over ``estimate``,
   which never gets worse as workers are added (common random numbers). The
   first process count that meets the latency and memory goals wins: a
   process costs an interpreter, a worker only a thread.
2. *DES.* The chosen point and its smaller neighbour are simulated, each for
   ``RUN_RELAXATIONS`` relaxation times of its bottleneck after
   ``WARMUP_RELAXATIONS`` of warm-up (``simlab.simulation``; at most
   ``FAST_CAP`` or ``DES_CAP`` requests per replication, and a note says when
   the cap cut a run short). When the model reduces exactly to M/M/c the
   closed form is the answer: a simulation is a noisier estimate of the same
   number, so it never lowers it, and raises it only when its whole 95%
   interval lies above the goal (a contradiction to report). Otherwise the
   DES decides: the point is raised while its simulated p99 (or mean) misses
   the goal, and lowered while the neighbour meets it with its whole 95%
   confidence interval from a run of full length (a short run's p99 is
   biased low, so it may raise but never lower). The answer is therefore
   never a point the DES saw fail.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from simlab.errors import UserError
from simlab.models import Model, get_model
from simlab.params import Architecture, Platform, Workload
from simlab.planner.estimate import Estimate, Sampler, estimate
from simlab.simulation import (
    RUN_RELAXATIONS,
    auto_warmup,
    choose_engine,
    simulate,
)
from simlab.streams import Deal

__all__ = ["Check", "Goals", "ModelSearch", "Plan", "Search", "des_check", "search_model"]

Basis = Literal["resident", "reserved"]
WORKER_CAP = 1_000_000
# The DES may raise an analytic answer this many times before giving up:
# each raise is a whole simulation, and a plan that misses after four is
# infeasible for a reason the analytic search does not see.
DES_STEPS = 4
GIB_MIB = 1024.0
# Workers are raised by this fraction (at least one) while the DES misses,
# for as long as each raise cuts the p99 by at least WORKERS_HELP.
WORKER_STEP = 0.05
WORKERS_HELP = 0.95
# An owner-per-connection pool whose DES run starves is raised by this fraction.
OWNER_STEP = 0.01
# With this many times the offered load in workers (plus a margin), nobody
# waits for a worker; if that misses the goal, no pool size meets it.
PLENTY_FACTOR, PLENTY_MARGIN = 4, 100
# A check's run is capped at this many requests per replication: about 1 s
# of CPU on the fast engine (a microsecond a request) and 5 s on the DES
# (tens of microseconds). M/M/c at rho = 0.98 needs about 970,000 for
# RUN_RELAXATIONS relaxation times, at 0.95 about 150,000.
FAST_CAP = 1_000_000
DES_CAP = 200_000


@dataclass(frozen=True)
class Goals:
    """What a plan must meet: a p99 latency, optionally a mean latency and a
    memory budget, counted on resident memory or on reserved virtual memory."""

    p99_ms: float
    mean_ms: float | None = None
    memory_gib: float | None = None
    basis: Basis = "resident"

    def __post_init__(self) -> None:
        for name in ("p99_ms", "mean_ms", "memory_gib"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise UserError(f"{name}(={value!r}) must be a number > 0")
        if self.basis not in ("resident", "reserved"):
            raise UserError(f"basis(={self.basis!r}) must be 'resident' or 'reserved'")

    def latency_ok(self, mean_s: float, p99_s: float) -> bool:
        if not p99_s * 1e3 <= self.p99_ms:
            return False
        return self.mean_ms is None or mean_s * 1e3 <= self.mean_ms

    def budget_mib(self) -> float | None:
        return None if self.memory_gib is None else self.memory_gib * GIB_MIB

    def memory_of(self, resident_mib: float, virtual_mib: float) -> float:
        return resident_mib if self.basis == "resident" else virtual_mib


@dataclass(frozen=True)
class Check:
    """One DES run of a configuration, and what it says about the goals."""

    workers: int
    processes: int
    stable: bool
    latency_ms: dict[str, Any]
    memory_mib: float
    virtual_mib: float
    threads: float
    cpu_utilization: float | None
    verdict: Literal["meets", "misses", "fails"]
    replications: int
    duration_s: float
    warmup_s: float
    # The run was cut under RUN_RELAXATIONS relaxation times of the bottleneck
    # (by the cap): its p99 is likely low, so it may raise a plan, never lower it.
    short: bool = False
    # Which engine ran it: ``fast`` where it reproduces the DES request for
    # request (``simlab.fast.reason_not_fast``), else ``des``.
    ran: str = "des"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ran": self.ran,
            "workers": self.workers,
            "processes": self.processes,
            "stable": self.stable,
            "latency_ms": self.latency_ms,
            "memory_mib": self.memory_mib,
            "virtual_mib": self.virtual_mib,
            "threads": self.threads,
            "cpu_utilization": self.cpu_utilization,
            "verdict": self.verdict,
            "replications": self.replications,
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
        }


@dataclass(frozen=True)
class Plan:
    """One model's answer. ``workers`` is None where the model has no pool."""

    model: str
    feasible: bool
    workers: int | None
    processes: int | None
    threads: int | None
    memory_mib: float | None
    virtual_mib: float | None
    latency_ms: dict[str, Any]
    cpu_utilization: float | None
    max_connections: int | None
    reason: str
    method: str = ""
    engine: str = "analytic"
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "feasible": self.feasible,
            "workers": self.workers,
            "processes": self.processes,
            "threads": self.threads,
            "memory_mib": self.memory_mib,
            "virtual_mib": self.virtual_mib,
            "latency_ms": self.latency_ms,
            "cpu_utilization": self.cpu_utilization,
            "max_connections": self.max_connections,
            "reason": self.reason,
            "method": self.method,
            "engine": self.engine,
            "checks": [c.to_dict() for c in self.checks],
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Search:
    """How a plan is searched and checked."""

    max_processes: int
    check: Literal["des", "analytic"] = "des"
    seed: int = 1
    replications: int = 5
    requests: int = 4000
    backlog: int | None = None

    def deal(self) -> Deal:
        """The deals of the replications the DES checks run (their seeds)."""
        return Deal.of_run(self.seed, self.replications)


def _arch(cls: type[Model], workers: int, processes: int, backlog: int | None) -> Architecture:
    return Architecture(workers=workers if cls.pooled else 1, processes=processes, backlog=backlog)


def _gib(mib: float) -> str:
    return f"{mib / GIB_MIB:,.1f} GiB" if mib >= GIB_MIB else f"{mib:,.0f} MiB"


def _saturation_reason(
    cls: type[Model], resource: str, rho: float, workload: Workload, p: int, *, deal: Deal
) -> str:
    loops = "a single loop" if p == 1 else f"each of {p} loops"
    texts = {
        "cores": f"the cores are CPU-saturated at rho = {rho:.2f}",
        "gil": f"{'one process' if p == 1 else f'each of {p} processes'}'s GIL is "
        f"saturated at rho = {rho:.2f}",
        "loop": f"{loops} is CPU-saturated at rho = {rho:.2f}",
        "client": f"one client's own requests saturate its connection (rho = {rho:.2f}): "
        "use more connections",
        "acceptor": f"the accepting thread is saturated creating a "
        f"{'process' if cls.own_process else 'thread'} per connection "
        f"(rho = {rho:.2f})",
        "workers": f"the workers are saturated (rho = {rho:.2f})",
        "pool with CPU waits": "the pool saturates once the CPU waits its threads hold "
        "through are counted",
    }
    if resource == "holders" and workload.persistent:
        return cls.explain_overload(resource, rho, workload, Architecture(processes=p), deal)
    if resource == "holders":
        return (
            f"a thread is held for each connection's whole life: rho = {rho:,.3g} >= 1 "
            f"for the threads of {p} process{'es' if p > 1 else ''}"
        )
    return texts.get(resource, f"{resource} rho = {rho:.2f} >= 1")


def _memory_reason(
    cls: type[Model], goals: Goals, threads: int, resident: float, virtual: float
) -> str | None:
    budget = goals.budget_mib()
    if budget is None:
        return None
    used = goals.memory_of(resident, virtual)
    if used <= budget:
        return None
    # A forked child is a process with one thread: name what the memory goes to.
    noun = "processes" if cls.own_process else "threads"
    return f"needs {threads:,} {noun} = {_gib(used)} {goals.basis} > budget {_gib(budget)}"


class ModelSearch:
    """The analytic search for one model."""

    def __init__(
        self, model: str, workload: Workload, platform: Platform, goals: Goals, search: Search
    ) -> None:
        self.model, self.w, self.p, self.goals, self.search = (
            model,
            workload,
            platform,
            goals,
            search,
        )
        self.cls = get_model(model)
        # The checks simulate the steady state the plan is for, not a cold start.
        self.p_check = self.cls.steady_platform(workload, platform)
        self.deal = search.deal()
        self.sampler = Sampler(workload, platform)
        self._cache: dict[tuple[int, int], Estimate] = {}
        self.checked: dict[tuple[int, int], Check] = {}

    def est(self, workers: int, processes: int) -> Estimate:
        key = (workers if self.cls.pooled else 1, processes)
        if key not in self._cache:
            arch = _arch(self.cls, key[0], processes, self.search.backlog)
            self._cache[key] = estimate(
                self.model, self.w, self.p, arch, self.deal, sampler=self.sampler
            )
        return self._cache[key]

    def meets(self, e: Estimate) -> bool:
        return not e.saturated and self.goals.latency_ok(e.mean, e.p99)

    def min_workers(self, processes: int) -> tuple[int | None, str]:
        """Fewest workers per process meeting the latency goal, or why none does."""
        if not self.cls.pooled:
            e = self.est(1, processes)
            return (1, "") if self.meets(e) else (None, self.why(e, processes))
        need = self.dictated_workers(processes)
        if need is not None:
            e = self.est(need, processes)
            return (need, "") if self.meets(e) else (None, self.why(e, processes))
        e1 = self.est(1, processes)
        offered = e1.loads.get("workers", 0.0) or e1.loads.get("holders", 0.0)
        plenty = min(WORKER_CAP, math.ceil(PLENTY_FACTOR * offered) + PLENTY_MARGIN)
        big = self.est(plenty, processes)
        if not self.meets(big):
            return None, self.why(big, processes, unlimited=not big.saturated)
        hi = 1
        while not self.meets(self.est(hi, processes)):
            hi = min(hi * 2, plenty)
        lo = hi // 2  # fails (or 0)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.meets(self.est(mid, processes)):
                hi = mid
            else:
                lo = mid
        return hi, ""

    def dictated_workers(self, processes: int) -> int | None:
        """The pool size the workload dictates (a thread-pool that owns persistent
        connections needs one worker per connection on the busiest process), or
        None when the pool size is the search's to choose."""
        one = Architecture(workers=1, processes=processes)
        need = self.cls.sized(self.w, one, self.deal).workers
        return need if need != 1 else None

    def why(self, e: Estimate, processes: int, *, unlimited: bool = False) -> str:
        saturated = e.saturated
        if saturated:
            # The cores first: no pool or process count can fix them.
            resource = (
                "cores" if "cores" in saturated else max(saturated, key=saturated.__getitem__)
            )
            return _saturation_reason(
                self.cls, resource, saturated[resource], self.w, processes, deal=self.deal
            )
        g = self.goals
        pool = " even with unlimited workers" if unlimited else ""
        if e.p99 * 1e3 > g.p99_ms:
            return f"p99 = {e.p99 * 1e3:,.1f} ms > goal {g.p99_ms:g} ms{pool}"
        return f"mean = {e.mean * 1e3:,.1f} ms > goal {g.mean_ms:g} ms{pool}"

    def analytic(self) -> tuple[tuple[int, int] | None, str]:
        """The analytic answer (workers, processes), or the reason there is none."""
        reasons: list[str] = []
        for processes in range(1, self.search.max_processes + 1):
            workers, reason = self.min_workers(processes)
            if workers is None:
                reasons.append(reason)
                continue
            e = self.est(workers, processes)
            too_big = _memory_reason(self.cls, self.goals, e.threads, e.memory_mib, e.virtual_mib)
            if too_big is None:
                return (workers, processes), ""
            reasons.append(too_big)
        # The first process count's reason is the plainest; say if more did not help.
        first = reasons[0]
        if len(set(reasons)) > 1 and self.search.max_processes > 1:
            return None, (
                f"{first}; with up to {self.search.max_processes} processes: {reasons[-1]}"
            )
        return None, first


def search_model(
    model: str,
    workload: Workload,
    platform: Platform,
    goals: Goals,
    *,
    search: Search,
    max_connections: Callable[[str, int, int], int | None],
) -> Plan:
    """One model's plan: the analytic search, then the DES check."""
    m = ModelSearch(model, workload, platform, goals, search)
    found, reason = m.analytic()
    if found is None:
        e = m.est(1, 1)
        return Plan(
            model=model,
            feasible=False,
            workers=None,
            processes=None,
            threads=None,
            memory_mib=None,
            virtual_mib=None,
            latency_ms={},
            cpu_utilization=e.cpu_utilization,
            max_connections=max_connections(model, 1, 1),
            reason=reason,
            method=e.method,
        )
    workers, processes = found
    e = m.est(workers, processes)
    notes: list[str] = []
    checks: list[Check] = []
    engine = "analytic"
    if search.check == "des":
        engine = "des"
        (workers, processes), checks, notes = _confirm(m, workers, processes, e.exact)
        if any(c.short for c in checks):
            notes.append(
                f"some DES runs were capped under {RUN_RELAXATIONS} relaxation times of the "
                "bottleneck: their p99 is likely low, so they could raise the plan but not lower it"
            )
        e = m.est(workers, processes)
    final = next(
        (c for c in reversed(checks) if (c.workers, c.processes) == (workers, processes)), None
    )
    latency: dict[str, Any] = {
        "analytic_mean": e.mean * 1e3,
        "analytic_p50": e.p50 * 1e3,
        "analytic_p99": e.p99 * 1e3,
    }
    feasible, why = True, ""
    threads, resident, virtual, cpu = e.threads, e.memory_mib, e.virtual_mib, e.cpu_utilization
    if final is not None:
        latency.update(final.latency_ms)
        threads = math.ceil(final.threads)
        resident, virtual, cpu = final.memory_mib, final.virtual_mib, final.cpu_utilization
        if final.verdict != "meets" and not e.exact:
            feasible = False
            why = (
                f"the DES misses the goal at {_knobs(m.cls, workers, processes)}: p99 = "
                f"{final.latency_ms.get('p99') or math.nan:,.1f} ms"
                + ("" if final.stable else " and the run is unstable")
            )
        too_big = _memory_reason(m.cls, goals, threads, resident, virtual)
        if too_big is not None:
            feasible, why = False, f"{too_big} (simulated peak)"
    else:
        latency.update(mean=e.mean * 1e3, p50=e.p50 * 1e3, p99=e.p99 * 1e3)
    return Plan(
        model=model,
        feasible=feasible,
        workers=workers if m.cls.pooled else None,
        processes=processes,
        threads=threads,
        memory_mib=resident,
        virtual_mib=virtual,
        latency_ms=latency,
        cpu_utilization=cpu,
        max_connections=max_connections(model, workers, processes),
        reason=why,
        method=e.method,
        engine=engine,
        checks=checks,
        notes=notes,
    )


def _knobs(cls: type[Model], workers: int, processes: int) -> str:
    parts = [f"{workers:,} workers"] if cls.pooled else []
    parts.append(f"{processes} process{'es' if processes > 1 else ''}")
    return ", ".join(parts)


def des_check(m: ModelSearch, workers: int, processes: int) -> Check:
    """Simulate a configuration for ``search.requests`` measured requests per
    replication or ``RUN_RELAXATIONS`` relaxation times of its bottleneck,
    whichever is longer (up to the cap), after a warm-up of twice the
    estimated latency or ``WARMUP_RELAXATIONS`` relaxation times (once per
    configuration: the search may come back to a point)."""
    key = (workers if m.cls.pooled else 1, processes)
    if key not in m.checked:
        m.checked[key] = _simulate_check(m, *key)
    return m.checked[key]


def _simulate_check(m: ModelSearch, workers: int, processes: int) -> Check:
    s, w = m.search, m.w
    assert w.rate is not None
    e = m.est(workers, processes)
    typical = e.mean if math.isfinite(e.mean) else 1.0
    arch = _arch(m.cls, workers, processes, s.backlog)
    duration, warmup, short = _run_length(m, arch, typical)
    r = simulate(
        m.model,
        w,
        m.p_check,
        arch,
        duration=duration,
        warmup=warmup,
        seed=s.seed,
        replications=s.replications,
        # The fast engine reproduces the DES request for request where it applies.
        engine="auto",
        tables=False,
    ).summary
    lat = r.latency_ms
    p99, mean = lat.p99, lat.mean
    p99_ci, mean_ci = lat.p99_ci95, lat.mean_ci95
    g = m.goals
    stable = r.stable
    verdict: Literal["meets", "misses", "fails"]
    if not stable or p99 is None:
        verdict = "fails"
    elif _above(p99_ci, g.p99_ms) or (g.mean_ms is not None and _above(mean_ci, g.mean_ms)):
        verdict = "fails"  # significantly worse than the goal
    elif p99 > g.p99_ms or (g.mean_ms is not None and mean is not None and mean > g.mean_ms):
        verdict = "misses"  # worse than the goal, within the noise
    else:
        verdict = "meets"
    return Check(
        workers=workers,
        processes=processes,
        stable=stable,
        latency_ms={k: getattr(lat, k) for k in CHECK_LATENCY},
        memory_mib=float(r.memory_mib.peak_exact),
        virtual_mib=float(r.memory_mib.virtual_peak),
        # Sizing wants the exact peak, not the one a 0.1 s sampler would see.
        threads=float(r.threads.peak_exact),
        cpu_utilization=r.cpu_utilization,
        verdict=verdict,
        replications=s.replications,
        duration_s=duration,
        warmup_s=warmup,
        short=short,
        ran=r.engine,
    )


def _run_length(m: ModelSearch, arch: Architecture, typical: float) -> tuple[float, float, bool]:
    """(duration, warm-up, cut short) of a check's replications.

    A near-saturated queue's p99 needs RUN_RELAXATIONS relaxation times of
    its bottleneck to be unbiased and its interval to cover (tests/test_tails.py):
    a fixed number of requests is far too few at rho = 0.98. The cap keeps
    a check bounded; a capped run is flagged.
    """
    s, w = m.search, m.w
    assert w.rate is not None
    b = m.cls.bottleneck(w, m.p_check, arch, m.deal)
    tau = b.relaxation_s if b is not None else 0.0
    floor = max(s.requests / w.rate, 2 * typical)
    engine = choose_engine("auto", m.model, w, m.p_check, arch)
    cap = max((FAST_CAP if engine == "fast" else DES_CAP) / w.rate, floor)
    duration = min(max(floor, RUN_RELAXATIONS * tau), cap)
    warmup = max(2 * typical, 20 / w.rate, 0.2)
    if b is not None:
        warmup = max(warmup, min(auto_warmup(m.model, w, m.p_check, arch, m.deal), duration))
    return duration, warmup, duration < RUN_RELAXATIONS * tau


# What a check keeps of the simulated latency (ms).
CHECK_LATENCY = ("mean", "p50", "p95", "p99", "mean_ci95", "p99_ci95")


def _above(ci: list[float] | None, goal: float) -> bool:
    return ci is not None and ci[0] > goal


def _clearly_meets(c: Check, goals: Goals) -> bool:
    """The whole 95% interval of the p99 (and mean) is within the goal, from a
    run long enough to hold it."""
    if c.verdict != "meets" or c.short:
        return False
    p99_ci, mean_ci = c.latency_ms.get("p99_ci95"), c.latency_ms.get("mean_ci95")
    if p99_ci is None or p99_ci[1] > goals.p99_ms:
        return False
    return goals.mean_ms is None or (mean_ci is not None and mean_ci[1] <= goals.mean_ms)


def _up(
    m: ModelSearch, point: tuple[int, int], last: Check, before: Check | None
) -> tuple[int, int] | None:
    """The next configuration to try after the DES missed the goal at ``point``.

    More workers help a pool that queues for them: raise them by 5% while
    that improves the p99 by 5% or more (a thread-pool that owns persistent
    connections only needs more when some starve). When workers stop
    helping, the bottleneck is a process's CPU (its GIL, its loop): add a
    process, with the analytic minimum of workers for it.
    """
    workers, processes = point
    if m.cls.pooled:
        owner = m.dictated_workers(processes) is not None
        p99, prev = last.latency_ms.get("p99"), before.latency_ms.get("p99") if before else None
        helped = prev is None or (p99 is not None and p99 < WORKERS_HELP * prev)
        if owner and not last.stable:
            # Some connections starve: a few more owners, a connection's worth at a time.
            return workers + max(1, math.ceil(OWNER_STEP * workers)), processes
        if not owner and helped:
            return workers + max(1, math.ceil(WORKER_STEP * workers)), processes
    if processes < m.search.max_processes:
        fewest, _ = m.min_workers(processes + 1)
        return (fewest or workers), processes + 1
    return None


def _down(m: ModelSearch, workers: int, processes: int) -> tuple[int, int] | None:
    if m.cls.pooled and workers > 1:
        return workers - 1, processes
    if not m.cls.pooled and processes > 1:
        return workers, processes - 1
    return None


def _confirm(
    m: ModelSearch, workers: int, processes: int, exact: bool
) -> tuple[tuple[int, int], list[Check], list[str]]:
    """Check the analytic answer and its smaller neighbour with the DES.

    An exact answer is kept unless the DES's whole 95% interval lies above
    the goal there; then it is raised until the interval no longer does. A
    simulation is a noisier estimate of what the formula computes, so it never
    lowers an exact answer (its smaller neighbour is simulated and reported,
    never taken).
    """
    checks = [des_check(m, workers, processes)]
    notes: list[str] = []
    point = (workers, processes)
    if exact:
        if not _above_goal(checks[0], m.goals):
            if checks[0].verdict == "fails":
                notes.append(
                    "the DES run at the exact answer is unstable; the formula stands, "
                    "but report it as a bug"
                )
            below = _down(m, workers, processes)
            if below is not None:
                checks.append(des_check(m, *below))
            return point, checks, notes
        notes.append(
            "the DES's 95% interval lies wholly above the goal at the exact answer "
            f"({_knobs(m.cls, *point)}): raised; report it as a bug"
        )
        point, more = _raise(m, point, checks, lambda c: not _above_goal(c, m.goals))
        return point, checks, notes + more
    point, more = _raise(m, point, checks, lambda c: c.verdict == "meets")
    notes += more
    if checks[-1].verdict != "meets":
        return point, checks, notes
    lowered = _lower(m, point, checks)
    if lowered != point:
        notes.append(
            f"the DES met the goal with fewer: lowered from {_knobs(m.cls, *point)} "
            f"to {_knobs(m.cls, *lowered)}"
        )
    return lowered, checks, notes


def _above_goal(c: Check, goals: Goals) -> bool:
    """The DES's whole 95% interval of the p99 (or mean) lies above the goal."""
    p99_ci, mean_ci = c.latency_ms.get("p99_ci95"), c.latency_ms.get("mean_ci95")
    return _above(p99_ci, goals.p99_ms) or (
        goals.mean_ms is not None and _above(mean_ci, goals.mean_ms)
    )


def _raise(
    m: ModelSearch, point: tuple[int, int], checks: list[Check], good: Callable[[Check], bool]
) -> tuple[tuple[int, int], list[str]]:
    """Raise ``point`` (whose check is ``checks[-1]``) until a check is ``good``,
    at most DES_STEPS times; the checks made are appended to ``checks``."""
    notes: list[str] = []
    before: Check | None = None
    for _ in range(DES_STEPS):
        if good(checks[-1]):
            break
        nxt = _up(m, point, checks[-1], before)
        if nxt is None:
            break
        notes.append(f"the DES missed the goal at {_knobs(m.cls, *point)}: raised")
        # A step to another process count starts a new series of worker raises.
        before = checks[-1] if nxt[1] == point[1] else None
        point = nxt
        checks.append(des_check(m, *point))
    return point, notes


def _lower(m: ModelSearch, point: tuple[int, int], checks: list[Check]) -> tuple[int, int]:
    """The smallest configuration below ``point`` that the DES clearly passes.

    The smaller neighbour is simulated first; if its whole 95% interval meets
    the goal, a bisection by DES runs down to a point known to fail (workers
    below the offered load, or one process fewer). A thread-pool that owns
    persistent connections keeps its analytic count: it is set by how many
    connections land on a process, which a few replications cannot bound.
    """

    def passes(q: tuple[int, int]) -> bool:
        c = des_check(m, *q)
        if c not in checks:
            checks.append(c)
        return _clearly_meets(c, m.goals)

    workers, processes = point
    if m.dictated_workers(processes) is not None:
        below = (workers - 1, processes)
        passes(below)  # reported as the neighbour, never taken
        return point
    if m.cls.pooled:
        if workers <= 1 or not passes((workers - 1, processes)):
            return point
        e = m.est(1, processes)
        offered = e.loads.get("workers", 0.0) or e.loads.get("holders", 0.0)
        lo, hi = max(0, math.floor(offered)), workers - 1  # lo fails (or is 0), hi passes
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if passes((mid, processes)):
                hi = mid
            else:
                lo = mid
        return hi, processes
    while processes > 1 and passes((workers, processes - 1)):
        processes -= 1
    return workers, processes
