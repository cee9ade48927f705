"""The capacity planner: exact M/M/c sizing, DES-checked answers, reasons, inverse questions."""

from __future__ import annotations

import math

import pytest

from simlab import Architecture, Workload, load_platform, simulate
from simlab.distributions import Exponential, Fixed, LogNormal
from simlab.params import ad_service_workload, c10k_workload
from simlab.planner import Goals, max_connections, max_rate, plan
from simlab.planner.estimate import Sampler, estimate
from simlab.planner.inverse import sized_memory
from simlab.planner.search import Search
from simlab.theory import mmc_sojourn_quantile

IDEAL = load_platform("ideal")
CPYTHON = load_platform("cpython")
# So many clients that one rarely has a request in flight when it sends the
# next (client collisions would add a wait that M/M/c does not have).
MANY = 10_000_000


def exact_mmc_minimum(lam: float, s: float, goal_s: float) -> int:
    """Smallest c with the M/M/c sojourn p99 within the goal, by brute force."""
    c = math.floor(lam * s) + 1
    while mmc_sojourn_quantile(0.99, lam, 1 / s, c) > goal_s:
        c += 1
    return c


def mmc_workload(lam: float, s: float, *, model: str) -> Workload:
    # Service is the CPU demand on the ideal platform: unlimited cores, no
    # overheads, so each request holds a worker for exactly Exp(s).
    return Workload(
        connections=MANY,
        rate=lam,
        cpu=Exponential(s),
        calls=0,
        requests_per_connection=1 if model == "thread-pool" else None,
    )


@pytest.mark.theory
@pytest.mark.parametrize(
    ("model", "lam", "s", "goal_ms"),
    [
        ("reactor-pool", 90.0, 1.0, 5_000.0),
        ("reactor-pool", 40.0, 0.1, 600.0),
        ("reactor-pool", 2.0, 0.5, 3_000.0),
        ("thread-pool", 150.0, 0.02, 120.0),
    ],
)
def test_planner_equals_exact_mmc_staffing(model, lam, s, goal_ms):
    w = mmc_workload(lam, s, model=model)
    report = plan(w, IDEAL, Goals(p99_ms=goal_ms), models=[model], replications=4, requests=3000)
    (p,) = report.plans
    assert p.feasible, p.reason
    assert p.workers == exact_mmc_minimum(lam, s, goal_ms / 1e3)
    assert "exact" in p.method
    # The DES ran at the answer and at its neighbour, and did not contradict it.
    assert [c.workers for c in p.checks] == [p.workers, p.workers - 1]
    assert p.checks[0].verdict != "fails"


def _des_p99(model, w, platform, p, seed):
    arch = Architecture(workers=p.workers or 1, processes=p.processes)
    mean = p.latency_ms["mean"] / 1e3
    return simulate(
        model,
        w,
        platform,
        arch,
        duration=max(6000 / w.rate, 2 * mean),
        warmup=max(2 * mean, 0.5),
        seed=seed,
        replications=6,
    ).summary


@pytest.mark.theory
@pytest.mark.parametrize(
    ("name", "workload", "goal_ms"),
    [
        ("c10k", c10k_workload(), 70.0),
        (
            "lognormal io, short connections",
            Workload(
                connections=200_000,
                rate=300.0,
                cpu=LogNormal(0.002, cv=1.0),
                io=LogNormal(0.030, cv=1.5),
                calls=2,
                requests_per_connection=1,
            ),
            400.0,
        ),
        (
            "CPU-heavy",
            Workload(connections=5_000, rate=250.0, cpu=Exponential(0.003), io=Fixed(0.02)),
            120.0,
        ),
    ],
)
def test_planned_configurations_pass_an_independent_des(name, workload, goal_ms):
    """A fresh DES (other seed, more replications) never finds a returned plan
    significantly worse than its goal: the lower end of its p99's 95% CI stays
    within the goal, or within the upper end of the planner's own check's
    interval at that point. The planner takes a point whose simulated p99
    meets the goal, so the truth can exceed the goal by that check's noise:
    reactor-pool at 13 workers for c10k at 70 ms (calibrated profile) has a
    true p99 of about 70.15 ms (two runs of 8 x 300 s: 70.23 and 70.13), the
    planner's check said 69.8 [69.4, 70.4] and this DES 70.8 [70.2, 71.5]."""
    report = plan(workload, CPYTHON, Goals(p99_ms=goal_ms), replications=4, requests=3000)
    feasible = [p for p in report.plans if p.feasible]
    assert feasible, report.explanation
    for p in feasible:
        s = _des_p99(p.model, workload, CPYTHON, p, seed=777)
        assert s.stable, (name, p.model, s.stability)
        lo = s.latency_ms.p99_ci95[0]
        own = p.latency_ms.get("p99_ci95") or [goal_ms, goal_ms]
        assert lo <= max(goal_ms, own[1]), (name, p.model, p.workers, p.processes, s.latency_ms)


def test_infeasible_plans_say_why():
    w = c10k_workload()
    # Persistent connections starve an iterative server; a tiny budget rules out
    # a thread per connection; the cores cannot carry 2.5 cores' worth of CPU.
    r = plan(w, CPYTHON, Goals(p99_ms=100, memory_gib=0.25), check="analytic")
    by = {p.model: p for p in r.plans}
    assert "never served" in by["iterative"].reason
    assert "budget" in by["thread-per-connection"].reason
    assert "resident" in by["thread-per-connection"].reason
    assert by["async"].feasible
    hot = w.with_(rate=5_000.0)  # 5 cores of CPU on 2 cores
    r = plan(hot, CPYTHON, Goals(p99_ms=100), check="analytic")
    for p in r.plans:
        assert not p.feasible and "cores are CPU-saturated" in p.reason, (p.model, p.reason)
    assert r.recommended is None
    # A goal below the backend's own latency cannot be met by any pool size.
    r = plan(w, CPYTHON, Goals(p99_ms=20), models=["reactor-pool"], check="analytic")
    assert "p99" in r.plans[0].reason and "goal 20 ms" in r.plans[0].reason


def test_reserved_budget_names_the_threads():
    """The issue's example: 10,000 threads of 1 MiB reserved stacks (jvm)
    exceed a 4 GiB budget counted on reserved memory."""
    r = plan(
        c10k_workload(),
        load_platform("jvm"),
        Goals(p99_ms=100, memory_gib=4, basis="reserved"),
        models=["thread-per-connection"],
        check="analytic",
    )
    (p,) = r.plans
    assert not p.feasible
    assert "10,001 threads = 9.8 GiB reserved > budget 4.0 GiB" in p.reason


@pytest.mark.parametrize("model", ["thread-per-connection", "thread-pool", "async", "reactor-pool"])
def test_max_connections_is_the_memory_boundary(model):
    goals = Goals(p99_ms=100, memory_gib=1.0)
    w = c10k_workload()
    n = max_connections(w, CPYTHON, goals, models=[model], architecture=Architecture(workers=8))[
        model
    ]
    assert n is not None and n > 0
    budget = goals.budget_mib()
    assert budget is not None
    deal = Search(max_processes=1).deal()
    at = sized_memory(
        model, w.with_(connections=n), CPYTHON, workers=8, processes=1, goals=goals, deal=deal
    )[1]
    over = sized_memory(
        model, w.with_(connections=n + 1), CPYTHON, workers=8, processes=1, goals=goals, deal=deal
    )[1]
    assert at <= budget < over
    # The forward plan agrees: at n connections the budget is not what stops it.
    r = plan(w.with_(connections=n), CPYTHON, goals, models=[model], check="analytic")
    assert "budget" not in r.plans[0].reason


@pytest.mark.parametrize("model", ["reactor-pool", "async", "thread-per-connection"])
def test_max_rate_is_the_latency_boundary(model):
    goals = Goals(p99_ms=80)
    w = c10k_workload()
    arch = Architecture(workers=12, processes=1)
    (limit,) = max_rate(w, CPYTHON, goals, models=[model], architecture=arch, check="analytic")
    rate = limit.max_rate_rps
    assert 0 < rate < math.inf
    sampler = Sampler(w, CPYTHON)
    deal = Search(max_processes=1).deal()
    at = estimate(model, w.with_(rate=rate), CPYTHON, arch, deal, sampler=sampler)
    above = estimate(model, w.with_(rate=rate * 1.01), CPYTHON, arch, deal, sampler=sampler)
    assert not at.saturated and goals.latency_ok(at.mean, at.p99)
    assert above.saturated or not goals.latency_ok(above.mean, above.p99)
    # The forward plan at that rate needs no more than the configuration held fixed.
    r = plan(w.with_(rate=rate), CPYTHON, goals, models=[model], check="analytic")
    (p,) = r.plans
    assert p.feasible
    assert (p.workers or 1) <= arch.workers and p.processes == 1


def test_ad_service_reproduces_the_notes_arithmetic():
    """1000 ad requests/s x 60 sequential 100 ms calls: about 6000 threads for
    reactor-pool, a handful for async, and async is recommended."""
    r = plan(
        ad_service_workload(),
        load_platform("jvm").with_(cores=8),
        Goals(p99_ms=7000),
        check="analytic",
    )
    by = {p.model: p for p in r.plans}
    assert 5_900 <= (by["reactor-pool"].workers or 0) <= 6_500
    assert (by["async"].threads or 0) <= 8
    assert r.recommended == "async"
    assert "parallel" in r.explanation


def test_plan_needs_open_arrivals():
    w = Workload(connections=10, think=Fixed(1.0))
    with pytest.raises(ValueError, match="rate"):
        plan(w, CPYTHON, Goals(p99_ms=100))


def test_goals_are_validated():
    with pytest.raises(ValueError, match="p99_ms"):
        Goals(p99_ms=-1)
    with pytest.raises(ValueError, match="basis"):
        Goals(p99_ms=1, basis="virtual")  # type: ignore[arg-type]
