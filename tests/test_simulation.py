"""simulate(): reproducibility, bounded overload, warm-up, the tables, and idle connections."""

from __future__ import annotations

import numpy as np
import pytest
import simpy
from scipy import stats

import simlab
from simlab import Architecture, Workload
from simlab.distributions import Exponential, Fixed
from simlab.models import MODELS
from simlab.models.base import Model


def small(model: str, seed: int) -> simlab.Result:
    w = Workload(connections=300, rate=40.0, cpu=Exponential(0.002), io=Exponential(0.03))
    return simlab.simulate(
        model,
        w,
        simlab.load_platform("cpython-preset"),
        Architecture(workers=4),
        duration=10.0,
        warmup=1.0,
        replications=3,
        seed=seed,
    )


@pytest.mark.parametrize("model", list(MODELS))
def test_same_seed_same_bytes_other_seed_differs(model):
    a, b, c = small(model, 11), small(model, 11), small(model, 12)
    assert a.to_json() == b.to_json()
    assert a.requests.equals(b.requests)
    assert a.to_json() != c.to_json()


def test_json_contract_keys():
    s = small("reactor-pool", 1).summary.to_dict()
    for key in (
        "model",
        "throughput_rps",
        "latency_ms",
        "queue_delay_ms",
        "threads",
        "memory_mib",
        "cpu_utilization",
        "dropped",
        "completed",
        "stable",
    ):
        assert key in s
    assert set(s["latency_ms"]) >= {"mean", "p50", "p95", "p99", "mean_ci95"}
    assert set(s["queue_delay_ms"]) >= {"mean", "p50", "p99", "mean_ci95"}
    assert set(s["threads"]) >= {"peak", "mean", "busy_mean"}
    assert set(s["memory_mib"]) >= {"peak", "mean", "virtual_peak"}
    # The mean's interval is the t interval over the replications' own means,
    # recomputed here from the per-request table (the preset has no client path).
    r = small("reactor-pool", 1)
    done = r.requests[r.requests["measured"] & (r.requests["outcome"] == "completed")]
    means = [g["end"].sub(g["arrival"]).mean() * 1e3 for _, g in done.groupby("replication")]
    lo, hi = s["latency_ms"]["mean_ci95"]
    half = stats.t.ppf(0.975, len(means) - 1) * np.std(means, ddof=1) / np.sqrt(len(means))
    assert lo == pytest.approx(np.mean(means) - half, rel=1e-9)
    assert hi == pytest.approx(np.mean(means) + half, rel=1e-9)
    assert hi - lo > 0


def test_tables_are_tidy():
    r = small("async", 3)
    assert list(r.requests.columns) == [
        "model",
        "replication",
        "seed",
        "request",
        "connection",
        "arrival",
        "admit",
        "start",
        "end",
        "wait",
        "service",
        "cpu",
        "worker",
        "process",
        "outcome",
        "measured",
    ]
    assert set(r.requests["replication"]) == {0, 1, 2}
    assert {
        "time",
        "threads_alive",
        "threads_busy",
        "memory_mib",
        "virtual_mib",
        "queued",
        "in_flight",
        "connections",
        "cpu_busy",
    } <= set(r.series.columns)
    assert len(r.replications) == 3


def test_warmup_is_explicit():
    # Requests sent before the warm-up ends are in the table but not measured.
    r = small("async", 5)
    df = r.requests
    early = df.loc[~df["measured"], "arrival"]
    assert len(early) > 0 and (early < 1.0).all()  # nothing is sent after the window
    assert df.loc[df["measured"], "arrival"].min() >= 1.0
    assert r.summary.requests == int(df["measured"].sum())


def test_overload_finishes_bounded_and_says_unstable(monkeypatch):
    # 20,000 req/s of 1 ms CPU on one GIL: rho = 20+. The run must stop on its
    # own, and say why, rather than queue for ever.
    monkeypatch.setattr(Model, "max_in_system", 5_000)
    w = Workload(connections=10_000, rate=20_000.0, cpu=Fixed(0.001), io=Fixed(0.05))
    s = simlab.simulate(
        "thread-per-connection",
        w,
        simlab.load_platform("cpython-preset"),
        duration=30.0,
        warmup=1.0,
        replications=1,
    ).summary
    assert s.stable is False
    reasons = " ".join(s.stability.reasons)
    assert "gil rho" in reasons and "stopped sending early" in reasons


def test_overload_hidden_from_the_formulas_is_still_caught():
    # The GIL's offered load is 0.994 before switch contention, which the
    # formula leaves out; with it the process cannot keep up. The verdict must
    # see the backlog grow.
    w = Workload(connections=10_000, rate=940.0, cpu=Exponential(0.001), io=Fixed(0.05))
    s = simlab.simulate(
        "thread-per-connection",
        w,
        simlab.load_platform("cpython-preset"),
        duration=60.0,
        replications=3,
    ).summary
    assert max(s.stability.offered_load.values()) < 1
    assert s.stable is False
    assert "grew" in " ".join(s.stability.reasons)
    assert s.throughput_rps < 0.97 * 940


def test_a_stable_run_is_not_called_overloaded():
    w = Workload(connections=10_000, rate=500.0, cpu=Exponential(0.001), io=Fixed(0.05))
    s = simlab.simulate(
        "thread-per-connection",
        w,
        simlab.load_platform("cpython-preset"),
        duration=60.0,
        replications=3,
    ).summary
    assert s.stable, s.stability


def test_too_many_requests_is_refused_up_front():
    w = Workload(connections=10, rate=1e6, cpu=Fixed(0.0), io=Fixed(0.0))
    with pytest.raises(ValueError, match="over the limit"):
        simlab.simulate("async", w, duration=60.0)


class CountingEnvironment(simpy.Environment):
    def __init__(self) -> None:
        super().__init__()
        self.scheduled = 0

    def schedule(self, event, priority=1, delay=0):  # type: ignore[override]
        self.scheduled += 1
        super().schedule(event, priority, delay)


@pytest.mark.parametrize("model", list(MODELS))
def test_idle_connections_cost_no_events(model):
    # Same seed, same requests; 100,000 connections instead of 100. Only
    # requests make events, so the counts must match to within the few
    # requests that find their client's previous one in flight (about 0.2%
    # with 100 clients at 1 req/s each and 2 ms requests).
    def events(connections: int) -> int:
        env = CountingEnvironment()
        w = Workload(
            connections=connections,
            rate=100.0,
            cpu=Fixed(0.001),
            io=Fixed(0.001),
            requests_per_connection=1 if model in ("iterative", "thread-pool") else None,
        )
        cls = MODELS[model]
        # Its steady state: a thread-per-connection server under a GIL makes
        # each connection's thread as the run starts, idle or not, on the GIL
        # (events a connection: ``Dedicated.forks_at_start``).
        sim = cls(
            env,
            w,
            cls.steady_platform(w, simlab.load_platform("cpython-preset")),
            Architecture(workers=64),
            seed=np.random.SeedSequence(4),
            stop=30.0,
        )
        sim.start_arrivals()
        env.run(until=40.0)
        return env.scheduled

    few, many = events(100), events(100_000)
    assert many <= few * 1.01
    assert few > 3000  # about 3,000 requests, each several events


@pytest.mark.parametrize("engine", ["des", "fast"])
def test_a_run_without_tables_summarises_each_replication_as_it_ends(engine):
    """``tables=False`` summarises each replication when it ends and lets its
    arrays go: the summary is the one a run with tables makes, to the bit,
    and only the run with tables keeps the requests."""
    w = Workload(connections=10**9, rate=80.0, cpu=Fixed(0.0), io=Exponential(1.0))
    kw = {"duration": 150.0, "warmup": 5.0, "replications": 3, "seed": 4, "engine": engine}
    arch = Architecture(workers=100)
    with_tables = simlab.simulate("reactor-pool", w, simlab.load_platform("cpython"), arch, **kw)
    without = simlab.simulate(
        "reactor-pool", w, simlab.load_platform("cpython"), arch, tables=False, **kw
    )
    assert without.summary.engine == with_tables.summary.engine == engine
    assert without.summary.to_json() == with_tables.summary.to_json()
    assert all(rec.columns == {} for rec in without.records)
    assert all(len(rec.columns["arrival"]) > 0 for rec in with_tables.records)
