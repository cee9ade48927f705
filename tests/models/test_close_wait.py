"""A pool's thread (or an iterative server's only one) holds a short connection
after its answer until it reads the client's close (``close_wait_us``): the
thread is not free for the next connection meanwhile, so at saturation a
connection costs the holders its service plus that wait."""

from __future__ import annotations

from pathlib import Path

import pytest

from simlab.distributions import Fixed
from simlab.errors import UserError
from simlab.models import get_model
from simlab.params import Architecture, Workload
from simlab.planner.estimate import estimate
from simlab.platforms import ideal
from simlab.real.close_wait import read_close_waits
from simlab.real.measure import MeasureOptions
from simlab.real.peers import with_own_costs
from simlab.results import SimSummary
from simlab.simulation import simulate
from simlab.streams import Deal

SERVICE = 0.008
# One request a connection, offered beyond what one thread serves either way.
SATURATED = Workload(connections=10_000, rate=160.0, cpu=Fixed(0.0), io=Fixed(SERVICE),
                     requests_per_connection=1)  # fmt: skip


def _run(model: str, wait_us: float, workload: Workload = SATURATED, **arch: int) -> SimSummary:
    p = ideal().with_(close_wait_us=wait_us)
    return simulate(model, workload, p, Architecture(**arch), duration=6.0, warmup=1.0,
                    seed=3, replications=3).summary  # fmt: skip


@pytest.mark.parametrize(("model", "arch"), [("iterative", {}), ("thread-pool", {"workers": 1})])
def test_a_saturated_holder_serves_one_connection_per_service_and_close_wait(
    model: str, arch: dict[str, int]
) -> None:
    """Deterministic service: a saturated single holder answers 1 / (S + C)
    connections a second; the model's own 95% interval must hold that, and
    not the 1 / S it serves without the wait."""
    wait = 0.002
    held = _run(model, wait * 1e6, **arch)
    free = _run(model, 0.0, **arch)
    assert held.throughput_ci95 is not None and free.throughput_ci95 is not None
    low, high = held.throughput_ci95
    slack = 0.5  # a request at the window's edge: at most one a second either way
    assert low - slack <= 1 / (SERVICE + wait) <= high + slack
    low, high = free.throughput_ci95
    assert low - slack <= 1 / SERVICE <= high + slack
    # The answer's own latency holds no close: its service is the same.
    light = SATURATED.with_(rate=20.0)
    assert _run(model, wait * 1e6, light, **arch).latency_ms.p50 == pytest.approx(
        _run(model, 0.0, light, **arch).latency_ms.p50, abs=1e-9
    )


def test_the_holders_load_counts_the_close_wait() -> None:
    model = get_model("iterative")
    deal = Deal.of_run()
    loads = model.offered_load(SATURATED, ideal().with_(close_wait_us=2000.0), Architecture(), deal)
    assert loads["holders"] == pytest.approx(160.0 * (SERVICE + 0.002))
    assert model.offered_load(SATURATED, ideal(), Architecture(), deal)["holders"] == (
        pytest.approx(160.0 * SERVICE)
    )


def test_persistent_connections_wait_for_no_close() -> None:
    held = SATURATED.with_(connections=8, rate=40.0, requests_per_connection=None)
    a = _run("thread-pool", 2000.0, held, workers=8)
    b = _run("thread-pool", 0.0, held, workers=8)
    assert a.latency_ms == b.latency_ms and a.throughput_rps == b.throughput_rps


def test_the_fast_engine_and_the_exact_reduction_leave_it_to_the_des() -> None:
    for name in ("iterative", "thread-pool"):
        model = get_model(name)
        short = SATURATED.with_(rate=50.0)
        assert model.fast_reason(short, ideal(), Architecture(workers=1)) is None
        why = model.fast_reason(short, ideal().with_(close_wait_us=100.0), Architecture(workers=1))
        assert why is not None and "close" in why
        exact = model.analytic(short, ideal().with_(close_wait_us=100.0), Architecture(workers=1),
                               Deal.of_run())  # fmt: skip
        assert isinstance(exact, str) and "close" in exact


def test_a_peer_that_closes_its_connections_itself_waits_for_none() -> None:
    platform = ideal().with_(close_wait_us=100.0)
    assert with_own_costs("gunicorn-sync", platform, {}).close_wait_us == 0.0
    assert with_own_costs("iterative", platform, {}).close_wait_us == 100.0


def test_a_client_sends_again_while_its_last_connection_waits_for_the_close() -> None:
    """Two clients, one request a connection, a long close wait: a client's
    next request (a connection of its own) goes out while the thread still
    waits for the last one's close, and is served once a thread is free:
    every request is answered."""
    few = SATURATED.with_(connections=2, rate=30.0)
    s = simulate("thread-pool", few, ideal().with_(close_wait_us=2000.0), Architecture(workers=4),
                 duration=20.0, warmup=1.0, seed=1, replications=2).summary  # fmt: skip
    assert s.incomplete == 0 and s.completed == s.requests, s.stability


def test_kept_alive_clients_close_when_sending_stops() -> None:
    """40 clients with 2 requests a connection on 4 threads: a thread holds
    its connection between them. When sending stops, a client with nothing
    left to send closes its connection (as the real load generator's do),
    so the requests queued behind the held threads are answered in the
    drain, not left waiting for requests that never come."""
    w = Workload(connections=40, rate=40.0, cpu=Fixed(0.001), io=Fixed(0.002),
                 requests_per_connection=2)  # fmt: skip
    s = simulate("thread-pool", w, ideal(), Architecture(workers=4), duration=2.0, warmup=0.5,
                 seed=1, replications=2).summary  # fmt: skip
    assert s.requests > 100 and s.incomplete == 0 and s.completed == s.requests


def test_only_the_blocking_servers_keep_a_record(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="close_waits"):
        MeasureOptions("async", SATURATED, Architecture(), close_waits=tmp_path / "w")
    MeasureOptions("iterative", SATURATED, Architecture(), close_waits=tmp_path / "w")
    # One file a server process, ``stem.<pid>``; nothing else the glob finds.
    (tmp_path / "w.123").write_text("0.001\n0.002\n")
    (tmp_path / "w.456").write_text("0.003\n")
    (tmp_path / "w.extra").write_text("9\n")
    (tmp_path / ".w.789.abc.tmp").write_text("9\n")
    assert sorted(read_close_waits(tmp_path / "w")) == [0.001, 0.002, 0.003]


def test_the_planners_draws_hold_a_thread_for_the_close_too() -> None:
    """The M/G/c estimate (``latency_draws``) counts the wait in what a
    connection holds its thread for: more queueing, the same service."""
    model = get_model("iterative")
    w = SATURATED.with_(rate=100.0)  # rho 0.8 without the wait, 0.9 with 1 ms
    deal = Deal.of_run()
    loads = {c: model.offered_load(w, ideal().with_(close_wait_us=c), Architecture(), deal)
             for c in (0.0, 1000.0)}  # fmt: skip
    assert loads[1000.0]["holders"] == pytest.approx(0.9)
    assert loads[0.0]["holders"] == pytest.approx(0.8)
    est = {c: estimate("iterative", w, ideal().with_(close_wait_us=c), Architecture(), deal)
           for c in (0.0, 1000.0)}  # fmt: skip
    # Waiting connections queue longer (Erlang C at 0.9 against 0.8); the
    # exact reduction steps aside for the wait and the draws answer.
    assert not est[1000.0].exact and "M/G/1" in est[1000.0].method
    assert est[1000.0].p99 > 1.5 * est[0.0].p99
