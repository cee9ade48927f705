"""Property tier for the overload options (hypothesis): laws that hold on every sample path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import simlab
from simlab.scenario import build
from simlab.simulation import Result

pytestmark = pytest.mark.property

FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODELS = ("thread-pool", "reactor-pool", "async", "thread-per-connection", "iterative")
COLUMNS = ["arrival", "connection", "start", "end", "service", "worker", "outcome"]


def run(options: dict[str, object], model: str) -> Result:
    s = build({"platform": "cpython", "replications": 1, **options})
    return simlab.simulate(model, s.workload, s.platform, s.architecture, **s.run.kwargs())


def same_requests(a: Result, b: Result) -> None:
    left, right = a.requests[COLUMNS], b.requests[COLUMNS]
    assert len(left) == len(right)
    for name in COLUMNS:
        x, y = left[name].to_numpy(), right[name].to_numpy()
        if x.dtype.kind == "f":
            assert np.array_equal(x, y, equal_nan=True), name
        else:
            assert (x == y).all(), name


@FAST
@given(
    model=st.sampled_from(MODELS),
    rate=st.floats(20.0, 150.0),
    spike=st.floats(1.0, 50.0),
    before=st.integers(2, 6),
    after=st.integers(2, 6),
    seed=st.integers(0, 2**31 - 1),
    short=st.booleans(),
)
def test_a_zero_length_spike_is_the_steady_run(model, rate, spike, before, after, seed, short):
    # A spike of no length vanishes when the schedule is normalised, and a
    # schedule of one rate draws exactly the arrivals of that constant rate.
    common = {
        "seed": seed,
        "warmup": 1.0,
        "connections": 200,
        "cpu_ms": 2.0,
        "cpu_dist": "exp",
        "io_ms": 10.0,
        "io_dist": "exp",
        "workers": 4,
        "requests_per_connection": 1 if short else None,
    }
    text = f"{rate}/s for {before}s, {spike * rate}/s for 0s, {rate}/s for {after}s"
    scheduled = run({**common, "rate": text}, model)
    steady = run({**common, "rate": rate, "duration": before + after - 1.0}, model)
    same_requests(scheduled, steady)
    a, b = scheduled.summary, steady.summary
    assert (a.throughput_rps, a.latency_ms, a.completed) == (
        b.throughput_rps,
        b.latency_ms,
        b.completed,
    )


@FAST
@given(
    model=st.sampled_from(MODELS),
    rate=st.floats(20.0, 300.0),
    retries=st.integers(0, 3),
    seed=st.integers(0, 2**31 - 1),
    short=st.booleans(),
)
def test_a_timeout_longer_than_every_latency_changes_nothing(model, rate, retries, seed, short):
    common = {
        "seed": seed,
        "rate": rate,
        "duration": 4.0,
        "warmup": 1.0,
        "connections": 100,
        "cpu_ms": 2.0,
        "cpu_dist": "exp",
        "io_ms": 20.0,
        "io_dist": "lognormal:1",
        "workers": 4,
        "requests_per_connection": 1 if short else None,
    }
    base = run(common, model)
    df = base.requests
    done = df["outcome"] == "completed"
    # Longer than any request took from its intended send to its answer, and
    # than any still unanswered when the run ended.
    # (None at all: an iterative server held by one persistent connection.)
    longest = float((df.loc[done, "end"] - df.loc[done, "arrival"]).max()) if done.any() else 0.0
    horizon = 5.0 + max(4.0, 20 * 0.022)
    timeout_ms = 1e3 * max(longest, horizon) + 1.0
    timed = run({**common, "timeout_ms": timeout_ms, "retries": retries}, model)
    same_requests(timed, base)
    a, b = timed.summary, base.summary
    assert (a.throughput_rps, a.latency_ms, a.completed) == (
        b.throughput_rps,
        b.latency_ms,
        b.completed,
    )
    assert a.overload is not None and a.overload.timeouts == 0 and a.overload.retries == 0


@FAST
@given(
    model=st.sampled_from(MODELS),
    spike=st.floats(1.0, 4.0),
    timeout_ms=st.floats(50.0, 2000.0),
    retries=st.integers(0, 3),
    budget=st.one_of(st.none(), st.floats(1.0, 20.0)),
    limit=st.one_of(st.none(), st.integers(1, 40)),
    seed=st.integers(0, 2**31 - 1),
)
def test_the_books_balance(model, spike, timeout_ms, retries, budget, limit, seed):
    # Whatever the options: every measured attempt is answered in time,
    # dropped or not (timed out or unanswered); goodput never exceeds the
    # server's answers; at most `retries` retries per request.
    options = {
        "seed": seed,
        "rate": f"60/s for 2s, {60 * spike}/s for 2s, 60/s for 3s",
        "warmup": 1.0,
        "connections": 10_000,
        "requests_per_connection": 1,
        "io_ms": 40.0,
        "workers": 4,
        "timeout_ms": timeout_ms,
        "retries": retries,
        "retry_budget": budget,
        "max_inflight": limit,
    }
    s = run(options, model).summary
    o = s.overload
    assert o is not None
    assert s.requests == s.completed + s.dropped + s.incomplete
    assert o.attempts == s.requests and o.retries <= retries * max(o.users, 1) + retries * 50
    assert o.goodput_rps <= s.throughput_rps + 1e-9
    assert o.timeouts <= s.incomplete
    if retries == 0:
        assert o.retries == 0 and o.users == o.attempts
