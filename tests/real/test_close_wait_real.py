"""A real blocking server records how long each short connection's thread
waited, after its answer, for the client's close (``ServerOptions.close_waits``),
and ``measure_close_wait`` turns those records into ``close_wait_us``."""

from __future__ import annotations

import pytest

from simlab import Architecture, Fixed, Workload
from simlab.real.close_wait import measure_close_wait, read_close_waits
from simlab.real.measure import MeasureOptions, measure

pytestmark = [pytest.mark.real, pytest.mark.timeout(120)]


@pytest.mark.parametrize(("model", "k"), [("iterative", 1), ("thread-pool", 2)])
def test_each_connection_its_client_closed_leaves_one_wait(tmp_path, model: str, k: int) -> None:
    w = Workload(connections=40, rate=40.0, cpu=Fixed(0.001), io=Fixed(0.002),
                 requests_per_connection=k)  # fmt: skip
    stem = tmp_path / "waits"
    opts = MeasureOptions(model, w, Architecture(workers=4), duration=2.0, warmup=0.5,
                          save=False, close_waits=stem)  # fmt: skip
    s = measure(opts).summary
    waits = read_close_waits(stem)
    # One a connection closed by its client after its k-th answer (none after
    # the answers before it), warm-up included: the record covers the whole
    # run (2.5 s), the summary its 2 s window; and, with k = 2, one a client
    # whose connection had answered once when the run stopped (40 at most).
    assert s.completed > 0
    assert s.completed / k <= len(waits) <= 1.5 * s.requests / k + (40 if k > 1 else 5)
    # A close over loopback comes within a few ms, never before the answer
    # (those at the stop: after an idle keep-alive gap, within the run and
    # its stop).
    assert all(0 < x < 10.0 for x in waits)
    assert sorted(waits)[len(waits) // 2] < 0.005
    assert not list(tmp_path.glob("*.partial"))


def test_the_benchmark_measures_a_positive_wait_from_every_run() -> None:
    bench = measure_close_wait(runs=2, seconds=2.0)
    assert bench["identified"], bench["runs"]
    assert [r["closes"] >= 50 for r in bench["runs"]] == [True, True]
    low, high = bench["range_us"]
    assert 0 < low <= bench["wait_us"] <= high < 50_000
