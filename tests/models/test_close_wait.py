"""A pool's thread (or an iterative server's only one) holds a short connection
after its answer until it reads the client's close (``close_wait_us``): the
thread is not free for the next connection meanwhile, so at saturation a
connection costs the holders its service plus that wait."""

from __future__ import annotations

import pytest

from simlab.distributions import Fixed
from simlab.models import get_model
from simlab.params import Architecture, Workload
from simlab.platforms import ideal
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
def test_a_saturated_holder_serves_one_connection_per_service_and_close_wait(model, arch) -> None:
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
