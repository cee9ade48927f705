"""Theory tier: the models on the ideal platform against closed-form queueing results.

How the tolerances are set. Each check runs R independent replications
(seeds from SeedSequence) and compares the theory value with the t interval
of the replication means, mean +- t(1 - alpha/2, R-1) s / sqrt(R). alpha is
1% divided by the number of statistical checks in this module (Bonferroni),
so the chance that a correct model fails any of them is below 1%. The
interval is not tuned to a seed: another seed passes with the same
probability. Warm-up is 20 relaxation times of each queue (about
1 / (c mu (1 - sqrt(rho))^2)), so the initial-transient bias is small next to
the interval. The price of a 1% family-wise error is width: for the mean wait
of the largest pools the interval is tens of percent of the value, while
P(wait) and the mean sojourn are pinned far more tightly.

Clients are 10^12 connections, so that a request almost never finds its
client's previous request still in flight (which the formulas ignore).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import simlab
from simlab import Architecture, Workload, theory
from simlab.distributions import Exponential, Fixed, LogNormal
from simlab.models import get_model
from simlab.streams import Deal

pytestmark = pytest.mark.theory

IDEAL = simlab.load_platform("ideal")
MANY = 10**12


def check(values: list[float], target: float, what: str) -> None:
    x = np.asarray(values)
    half = stats.t.ppf(1 - ALPHA / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    assert abs(x.mean() - target) <= half, (
        f"{what}: simulated {x.mean():.6g} +- {half:.3g}, theory {target:.6g}"
    )


def per_replication(result: simlab.Result) -> dict[str, list[float]]:
    df = result.requests
    done = df[df["measured"] & (df["outcome"] == "completed")]
    assert len(done) == df["measured"].sum(), "every measured request must complete"
    groups = done.groupby("replication")
    latency = done["end"] - done["arrival"]
    return {
        "wait": groups["wait"].mean().tolist(),
        "waited": groups["wait"].apply(lambda w: float((w > 1e-9).mean())).tolist(),
        "latency": latency.groupby(done["replication"]).mean().tolist(),
    }


def run(model, workload, arch, *, requests_per_rep, warmup, replications=10):
    duration = requests_per_rep / workload.rate
    return simlab.simulate(
        model,
        workload,
        IDEAL,
        arch,
        duration=duration,
        warmup=warmup,
        replications=replications,
        seed=2026,
    )


# (lam, mu, c): rho from 0.3 to 0.95, small and large pools, several time scales.
ERLANG_GRID = [
    (0.3, 1.0, 1),
    (5.0, 10.0, 1),
    (1.2, 1.0, 2),
    (8.0, 5.0, 2),
    (1.2, 1.0, 3),
    (2.0, 1.0, 4),
    (7.0, 2.0, 5),
    (6.8, 1.0, 8),
    (26.0, 2.0, 16),
    (15.0, 1.0, 20),
    (115.2, 4.0, 32),
    (90.0, 10.0, 10),
    (47.5, 1.0, 50),
    (95.0, 1.0, 100),
]


def _mm(lam: float, mu: float, k: int | None) -> Workload:
    """Poisson arrivals at ``lam``, each request one exponential call of rate ``mu``."""
    return Workload(
        connections=MANY,
        rate=lam,
        cpu=Fixed(0.0),
        io=Exponential(1 / mu),
        calls=1,
        requests_per_connection=k,
    )


@pytest.mark.parametrize("model", ["reactor-pool", "thread-pool"])
@pytest.mark.parametrize(("lam", "mu", "c"), ERLANG_GRID)
def test_pools_match_erlang_c(model, lam, mu, c):
    rho = lam / (mu * c)
    assert 0.3 <= rho <= 0.95
    # thread-pool is M/M/c over requests when each connection carries one.
    workload = _mm(lam, mu, 1 if model == "thread-pool" else None)
    relax = 1 / (c * mu * (1 - math.sqrt(rho)) ** 2)
    result = run(
        model,
        workload,
        Architecture(workers=c),
        requests_per_rep=12_000,
        warmup=max(20 * relax, 5 / mu),
    )
    reps = per_replication(result)
    check(reps["wait"], theory.mmc_mean_wait(lam, mu, c), "mean wait")
    check(reps["waited"], theory.erlang_c(c, lam / mu), "P(wait > 0)")
    check(reps["latency"], theory.mmc_mean_wait(lam, mu, c) + 1 / mu, "mean sojourn")


PK_CASES = [
    (Fixed(0.01), 0.5),  # M/D/1
    (Fixed(0.01), 0.8),
    (Exponential(0.01), 0.7),  # M/M/1
    (LogNormal(0.01, cv=1.5), 0.5),  # heavy-ish tail
]


@pytest.mark.parametrize(("service", "rho"), PK_CASES)
def test_async_loop_matches_pollaczek_khinchine(service, rho):
    # CPU queues for the one loop; the 200 ms backend call holds nothing, so
    # it adds to latency but never to the wait.
    lam = rho / service.mean
    workload = Workload(connections=MANY, rate=lam, cpu=service, io=Fixed(0.2), calls=1)
    relax = 1 / (lam / rho * (1 - math.sqrt(rho)) ** 2)
    result = run("async", workload, Architecture(), requests_per_rep=20_000, warmup=20 * relax)
    reps = per_replication(result)
    wq = theory.mg1_mean_wait(lam, service.mean, service.cv)
    check(reps["wait"], wq, "mean wait")
    check(reps["latency"], wq + service.mean + 0.2, "mean latency")
    check(reps["waited"], rho, "P(wait > 0) = rho for M/G/1")


@pytest.mark.parametrize("model", ["thread-per-connection", "process-per-connection"])
def test_thread_per_connection_is_mg_infinity(model):
    # A thread per connection, ample cores: nobody waits, and the number busy
    # has mean lam E[S] whatever the service distribution (insensitivity).
    lam = 200.0
    svc = LogNormal(0.05, cv=2.0)
    workload = Workload(
        connections=MANY, rate=lam, cpu=Fixed(0.0), io=svc, calls=1, requests_per_connection=1
    )
    result = run(model, workload, Architecture(), requests_per_rep=10_000, warmup=2.0)
    df = result.requests
    assert df.loc[df["measured"], "wait"].abs().max() < 1e-9
    busy = result.replications["threads_busy_mean"].tolist()
    check(busy, theory.mginf_mean_busy(lam, svc.mean), "mean threads busy")


# (lam, mu, P, T): the back pool of P processes x T threads is M/M/(P T) when
# the front is free (no front CPU, no hop) and CPU phases never queue.
TWO_TIER_GRID = [
    (1.2, 1.0, 3, 1),
    (6.8, 1.0, 8, 1),
    (26.0, 2.0, 4, 4),
]


@pytest.mark.parametrize(("lam", "mu", "p", "t"), TWO_TIER_GRID)
def test_two_tier_back_is_mmc_when_the_front_is_free(lam, mu, p, t):
    c = p * t
    rho = lam / (mu * c)
    assert 0.3 <= rho <= 0.95
    workload = Workload(connections=MANY, rate=lam, cpu=Fixed(0.0), io=Exponential(1 / mu), calls=1)
    relax = 1 / (c * mu * (1 - math.sqrt(rho)) ** 2)
    result = run(
        "two-tier",
        workload,
        Architecture(workers=t, processes=p),
        requests_per_rep=12_000,
        warmup=max(20 * relax, 5 / mu),
    )
    # The ideal platform's front is free: the analytic side says so too.
    analytic = get_model("two-tier").analytic(
        workload, IDEAL, Architecture(workers=t, processes=p), Deal.of_run(2026, 10)
    )
    assert not isinstance(analytic, str), analytic
    reps = per_replication(result)
    check(reps["wait"], theory.mmc_mean_wait(lam, mu, c), "mean wait")
    check(reps["waited"], theory.erlang_c(c, lam / mu), "P(wait > 0)")
    check(reps["latency"], theory.mmc_mean_wait(lam, mu, c) + 1 / mu, "mean sojourn")


# (lam, mu, P): P iterative copies that accept a short connection only while
# free share one listen queue, so with a connection per request they are
# M/M/P (dealt to copies in turn they would be P M/M/1 queues, with longer waits).
ITERATIVE_GRID = [(2.4, 1.0, 3)]


@pytest.mark.parametrize(("lam", "mu", "p"), ITERATIVE_GRID)
def test_iterative_copies_are_mmc_over_connections(lam, mu, p):
    rho = lam / (mu * p)
    workload = _mm(lam, mu, 1)
    relax = 1 / (p * mu * (1 - math.sqrt(rho)) ** 2)
    arch = Architecture(processes=p)
    result = run(
        "iterative", workload, arch, requests_per_rep=6_000, warmup=max(20 * relax, 5 / mu)
    )
    analytic = get_model("iterative").analytic(workload, IDEAL, arch, Deal.of_run(2026, 10))
    assert not isinstance(analytic, str), analytic
    wq = theory.mmc_mean_wait(lam, mu, p)
    assert analytic.values["queue_delay_mean_ms"] == pytest.approx(wq * 1e3)
    reps = per_replication(result)
    check(reps["wait"], theory.mmc_mean_wait(lam, mu, p), "mean wait")
    check(reps["waited"], theory.erlang_c(p, lam / mu), "P(wait > 0)")


LITTLE_CASES = [
    ("iterative", 1),
    ("process-per-connection", None),
    ("thread-per-connection", None),
    ("thread-pool", 1),
    ("reactor-pool", None),
    ("async", None),
    ("two-tier", None),
]


# Statistical checks in this module: Erlang C (3 per point and pool model),
# two-tier's M/M/c (3 per point), iterative copies' M/M/c (2 per point),
# Pollaczek-Khinchine (3 per case), M/G/inf (1 per model), Little (1 per model).
N_CHECKS = (
    len(ERLANG_GRID) * 2 * 3
    + len(TWO_TIER_GRID) * 3
    + len(ITERATIVE_GRID) * 2
    + len(PK_CASES) * 3
    + 2
    + len(LITTLE_CASES)
)
ALPHA = 0.01 / N_CHECKS


@pytest.mark.parametrize(("model", "k"), LITTLE_CASES)
def test_littles_law_on_every_model(model, k):
    # On the cpython platform (GIL, 2 cores, overheads), L = lam W must still
    # hold. Little's law is a sample-path identity, so what this checks is the
    # bookkeeping: the in-flight level rebuilt from intervals (metrics.py)
    # against the per-request times, window clipping and drops included.
    # Per replication, L is the exact time-average of requests in the
    # system over the window and lam W is (arrivals in the window / T) x their
    # mean time in system. They differ by a boundary term, the time that
    # requests straddling the window's edges spend outside it, at most about
    # 2 L W / T; we allow 3 L W / T on top of the replications' interval.
    workload = Workload(
        connections=1000,
        rate=12.0,
        cpu=Exponential(0.004),
        io=Fixed(0.05),
        calls=1,
        requests_per_connection=k,
    )
    duration = 200.0
    result = simlab.simulate(
        model,
        workload,
        simlab.load_platform("cpython-preset"),
        Architecture(workers=4),
        duration=duration,
        warmup=5.0,
        replications=8,
        seed=7,
    )
    assert result.summary.stable, result.summary.stability
    df = result.requests
    measured = df[df["measured"]]
    sojourn = (measured["end"] - measured["arrival"]).groupby(measured["replication"])
    lam_w = (sojourn.sum() / duration).to_numpy()
    big_l = result.replications["in_flight_mean"].to_numpy()
    w = float(sojourn.mean().mean())
    edge = 3 * big_l.mean() * w / duration
    diff = big_l - lam_w
    half = stats.t.ppf(1 - ALPHA / 2, len(diff) - 1) * diff.std(ddof=1) / math.sqrt(len(diff))
    assert abs(diff.mean()) <= half + edge, (big_l.mean(), lam_w.mean(), half, edge)
