"""gthread's racing accept measured: how many connections each worker process took, and which."""

from __future__ import annotations

import pytest

from simlab.distributions import Fixed
from simlab.params import Architecture, Workload
from simlab.real.measure import MeasureOptions, measure

pytestmark = [pytest.mark.real, pytest.mark.timeout(300)]


def test_gthread_records_each_workers_share_of_the_connections(tmp_path) -> None:
    n = 24
    w = Workload(connections=n, rate=40.0, cpu=Fixed(0.001), io=Fixed(0.005))
    arch = Architecture(workers=4, processes=2)
    opts = MeasureOptions("gunicorn-gthread", w, arch, duration=1.0, warmup=1.0, save=False)
    s = measure(opts).summary
    split = s.connections.per_process
    # One count per worker process, most first, every held connection taken by one.
    assert split is not None and len(split) == 2, split
    assert split[0] >= split[1] >= 0
    assert sum(split) == n
    assert s.to_dict()["connections"]["per_process"] == list(split)
    # And which worker took each connection, in the load generator's order:
    # every one of the load generator's connections found, by its address,
    # among one worker's accepted sockets (none found gives no deal).
    dealt = s.connections.per_connection
    assert dealt is not None and len(dealt) == n, dealt
    assert set(dealt) <= {0, 1}
    assert s.to_dict()["connections"]["per_connection"] == list(dealt)
    # A server whose copies do not race records none.
    plain = measure(
        MeasureOptions("async", w, Architecture(processes=2), duration=1.0, warmup=0.5, save=False)
    ).summary
    assert plain.connections.per_process is None
    assert plain.connections.per_connection is None
