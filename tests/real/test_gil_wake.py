"""The GIL's waiters' wake-ups (``simlab.real.gil_wake``): two real interpreters
spinning threads (no sockets, about ten seconds)."""

from __future__ import annotations

import pytest

from simlab.real.gil_wake import measure_gil_wake


# Real interpreters timed by their CPU: in the sequential phase, beside no other test.
@pytest.mark.real
@pytest.mark.timeout(120)
def test_many_waiters_wake_about_once_an_interval_each() -> None:
    cost = measure_gil_wake((2, 101), seconds=1.0, interval_ms=5.0, pairs=2)
    assert len(cost["runs"]) == 2
    for few, many in cost["runs"]:
        # CPython's take_gil: each waiter's timed wait ends once a switch
        # interval, so 100 waiters wake about 20,000 times a second. A waiter
        # that cannot get a core at once wakes late: the count may fall short.
        assert 0.3 * 20_000 < many["wakeups_s"] - few["wakeups_s"] < 1.2 * 20_000
    # Their CPU: the median of the pairs' differences over their wake-ups,
    # where every pair shows one (a busy machine's holder may hide it).
    costs = sorted(
        (b["cpu_cores"] - a["cpu_cores"]) / (b["wakeups_s"] - a["wakeups_s"]) * 1e6
        for a, b in cost["runs"]
    )
    if costs[0] > 0:
        assert cost["identified"]
        # A futex wake-up and a mutex: microseconds, not a switch interval.
        assert 0 < cost["wake_us"] < 100
        assert cost["wake_us"] == pytest.approx(sum(costs) / 2)
        assert cost["range_us"] == pytest.approx(costs)
    else:
        assert not cost["identified"]
        assert cost["wake_us"] is None


@pytest.mark.parametrize(
    ("threads", "seconds", "interval_ms", "pairs", "named"),
    [((1, 5), 1.0, 5.0, 1, "threads"), ((5, 5), 1.0, 5.0, 1, "threads"),
     ((2, 5), 0.0, 5.0, 1, "seconds"), ((2, 5), 1.0, -1.0, 1, "interval_ms"),
     ((2, 5), 1.0, 5.0, 0, "pairs")],
)  # fmt: skip
def test_bad_arguments_are_named(
    threads: tuple[int, int], seconds: float, interval_ms: float, pairs: int, named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        measure_gil_wake(threads, seconds=seconds, interval_ms=interval_ms, pairs=pairs)
