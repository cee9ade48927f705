"""Every thread's context switches (``simlab.real.probe.thread_switches``), which
psutil's per-process count (the main thread's alone) leaves out: read from this
process's own threads, and turned into rates only when the threads held still."""

from __future__ import annotations

import os
import threading
import time

import psutil
import pytest

from simlab.real.probe import thread_switch_rates, thread_switches


def test_every_thread_is_read_where_psutil_sees_the_main_one() -> None:
    stop = threading.Event()

    def nap() -> None:
        while not stop.is_set():
            time.sleep(0.001)  # a voluntary switch each time

    threads = [threading.Thread(target=nap) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        me = psutil.Process(os.getpid())
        before = thread_switches(me)
        time.sleep(0.3)
        after = thread_switches(me)
        main = me.num_ctx_switches().voluntary
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert {t.native_id for t in threads} <= set(before)
    rates = thread_switch_rates(before, after, 0.3)
    assert rates is not None
    # Four threads sleeping a millisecond at a time: hundreds of voluntary
    # switches a second each (dozens on a crowded machine), where the main
    # thread, asleep, made a few.
    assert rates[0] > 4 * 25
    assert sum(v for v, _ in after.values()) > main


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        ({1: (15, 2), 2: (30, 4)}, (10.0, 2.0)),  # the same threads: their sum
        ({1: (15, 2)}, None),  # one exited: its counts went with it
        ({1: (15, 2), 2: (30, 4), 3: (1, 0)}, None),  # one was made: not held still
    ],
)
def test_rates_only_for_the_same_threads(
    second: dict[int, tuple[int, int]], expected: tuple[float, float] | None
) -> None:
    first = {1: (10, 1), 2: (25, 3)}
    assert thread_switch_rates(first, second, 1.0) == expected
    assert thread_switch_rates(first, first, 0.0) is None
