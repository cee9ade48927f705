"""A client with K requests per connection connects when it has a request, as the models assume.

Before this was so, the load generator opened every connection up front, and
the idle ones held the threads of a thread-pool or iterative server for ever.
"""

from __future__ import annotations

import pytest

from simlab import Architecture, Fixed, Workload
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
