"""Slow clients for real: the load generator trickles each request out over its
send time, and the servers' latency agrees with the models'.

With one request per connection a client sends as soon as it has connected,
and the kernel buffers what it sends while the connection waits to be
accepted: a blocking worker is held only for what is still to come when it
accepts, so the latency of ``thread-pool`` and ``reactor-pool`` is alike here
and only their busy threads differ (``tests/models/test_exact.py``).

Bounded: three runs of a few seconds at 2 to 8 requests/s on loopback.
"""

from __future__ import annotations

import pytest

import simlab
from simlab import Architecture, Fixed, Workload
from simlab.real.measure import MeasureOptions, measure, queued_behind, replayed

pytestmark = pytest.mark.real

SEND_S = 0.4
# The real mean against the simulated one on the calibrated platform: a few
# dozen requests on a busy machine, so 15%.
REL = 0.15


@pytest.mark.parametrize("target", ["thread-pool", "reactor-pool"])
def test_a_trickled_request_arrives_after_its_send_time(target: str) -> None:
    w = Workload(
        connections=50,
        rate=2.0,
        cpu=Fixed(0.0),
        io=Fixed(0.01),
        client_send=Fixed(SEND_S),
        requests_per_connection=1,
    )
    arch = Architecture(workers=1)
    real = measure(MeasureOptions(target, w, arch, duration=6.0, warmup=1.0, save=False)).summary
    assert real.completed > 0 and real.dropped == 0
    # No answer comes before the request has arrived whole.
    assert real.latency_ms.p50 >= SEND_S * 1e3
    sim = simlab.simulate(
        target, w, simlab.load_platform("cpython"), arch, duration=120.0, replications=3
    ).summary
    assert real.latency_ms.mean == pytest.approx(sim.latency_ms.mean, rel=REL)


def test_a_run_and_the_simulation_of_its_own_arrivals_see_the_same_waits() -> None:
    # Four connections at 2 requests/s each, every request holding its
    # connection about 0.3 s: many find their connection's last unanswered.
    # The simulation replays the arrivals the load generator sends (its
    # seeded sequence), so both count the same requests, and the same ones wait.
    w = Workload(
        connections=4,
        rate=8.0,
        cpu=Fixed(0.0),
        io=Fixed(0.01),
        client_send=Fixed(0.15),
        client_recv=Fixed(0.15),
    )
    opts = MeasureOptions("async", w, Architecture(), duration=4.0, warmup=0.5, save=False)
    real = measure(opts).summary
    sim = simlab.simulate(
        "async",
        replayed(opts),
        simlab.load_platform("cpython"),
        Architecture(),
        duration=4.0,
        warmup=0.5,
        replications=1,
    )
    assert real.send_delay_ms is not None
    waited = real.send_delay_ms.queued_behind
    assert real.requests == int(sim.requests["measured"].sum())
    assert waited is not None and waited >= 3
    # A wait decided by a few milliseconds may fall either way.
    assert abs(waited - queued_behind(sim.requests)) <= max(2, 0.2 * waited)
    assert real.latency_ms.p99 == pytest.approx(sim.summary.latency_ms.p99, rel=0.25)
