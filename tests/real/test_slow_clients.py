"""Slow clients for real: the load generator trickles each request out, and a
blocking worker is held while it does; a loop is not.

Bounded: two runs of a few seconds at 2 requests/s on loopback.
"""

from __future__ import annotations

import pytest

from simlab import Architecture, Fixed, Workload
from simlab.real.measure import MeasureOptions, measure

pytestmark = pytest.mark.real

SEND_S = 0.4


def _mean_ms(target: str) -> float:
    # One worker; each request a new connection, so that thread-pool's worker
    # is free between them and only the trickle can hold it.
    w = Workload(
        connections=50,
        rate=2.0,
        cpu=Fixed(0.0),
        io=Fixed(0.01),
        client_send=Fixed(SEND_S),
        requests_per_connection=1,
    )
    s = measure(
        MeasureOptions(target, w, Architecture(workers=1), duration=6.0, warmup=1.0, save=False)
    ).summary
    assert s.completed > 0 and s.dropped == 0
    # The request arrives whole only after its send time: no answer comes sooner.
    assert s.latency_ms.p50 >= SEND_S * 1e3
    return s.latency_ms.mean


def test_a_trickled_request_holds_a_blocking_worker_not_a_loop() -> None:
    # thread-pool's one worker reads the request as it trickles in (0.41 s
    # each at 2/s: rho 0.82, waits of about a second, M/D/1); reactor-pool's
    # loop reads it and holds its worker for the 10 ms call only.
    blocking, loop = _mean_ms("thread-pool"), _mean_ms("reactor-pool")
    assert loop < SEND_S * 1e3 + 150
    assert blocking > loop + 150
