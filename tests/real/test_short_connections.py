"""A client with K requests per connection connects when it has a request, as the models assume.

Before this was so, the load generator opened every connection up front, and
the idle ones held the threads of a thread-pool or iterative server for ever.
"""

from __future__ import annotations

import time

import pytest

from simlab import Architecture, Exponential, Fixed, Workload
from simlab.real.lock import exclusive
from simlab.real.measure import MeasureOptions, measure

pytestmark = [pytest.mark.real, pytest.mark.timeout(120)]


@pytest.mark.parametrize("model", ["thread-pool", "iterative"])
def test_more_short_lived_clients_than_threads_are_all_served(model: str) -> None:
    # 50 clients, 2 threads: every request must still be answered.
    w = Workload(
        connections=50, rate=20.0, cpu=Fixed(0.001), io=Fixed(0.005), requests_per_connection=1
    )
    s = measure(
        MeasureOptions(
            target=model,
            workload=w,
            architecture=Architecture(workers=2),
            duration=2.0,
            warmup=0.5,
            save=False,
        )
    ).summary
    assert s.completed > 0 and s.completed == s.requests, s.stability
    assert s.latency_ms.p99 is not None and s.latency_ms.p99 < 500


@pytest.mark.parametrize("closed", [False, True], ids=["open-loop", "closed-loop"])
def test_idle_clients_close_when_sending_stops_so_the_run_ends_promptly(closed: bool) -> None:
    """4 threads, 40 clients with 2 requests a connection: a thread holds its
    connection between them. When the window ends, a client with nothing
    left to send closes its connection (as one that is done would), so the
    requests queued behind the held threads are answered; before, they
    waited out the whole drain timeout and went unanswered. A closed loop's
    clients too, though some are still thinking when the window ends."""
    w = Workload(
        connections=40, rate=40.0, cpu=Fixed(0.001), io=Fixed(0.002), requests_per_connection=2
    )
    if closed:
        w = w.with_(rate=None, think=Exponential(1.0))
    opts = MeasureOptions(target="thread-pool", workload=w, architecture=Architecture(workers=4),
                          duration=2.0, warmup=0.5, save=False, timeout=20.0)  # fmt: skip
    # The machine's real-run lock taken first (``measure`` takes it again, at
    # no cost, in this thread): the time is the run's, not a wait for another.
    with exclusive():
        began = time.monotonic()
        s = measure(opts).summary
        took = time.monotonic() - began
    assert took < 15.0  # the drain timeout (20 s) was not waited out
    assert s.completed == s.requests, s.stability
