"""Every thread's context switches (``simlab.real.probe.thread_switches``), which
psutil's per-process count (the main thread's alone) leaves out: read from this
process's own threads, and turned into rates only when the threads held still."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import psutil
import pytest

from simlab.real.probe import ThreadCounts, run_queue_waits, thread_switch_rates, thread_switches
from simlab.theory import erlang_c


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
    assert sum(c.voluntary for c in after.values()) > main


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
    first = {1: ThreadCounts(10, 1), 2: ThreadCounts(25, 3)}
    second = {t: ThreadCounts(*c) for t, c in second.items()}
    assert thread_switch_rates(first, second, 1.0) == expected
    assert thread_switch_rates(first, first, 0.0) is None


def test_processes_that_outnumber_a_core_wait_on_its_run_queue() -> None:
    """Each thread's scheduler counts (``schedstat``): three spinning
    processes pinned to one core each run a third of the time and wait for
    it two thirds (more on a busy machine): in sum their wait is about twice
    their time run, and far from none, on any number of cores."""
    cpu = min(os.sched_getaffinity(0))
    spin = "import time\nend = time.monotonic() + 5\nwhile time.monotonic() < end: pass"
    kids = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(3)]
    try:
        for kid in kids:
            os.sched_setaffinity(kid.pid, {cpu})
        time.sleep(0.3)
        me = psutil.Process(os.getpid())
        before = thread_switches(me)
        time.sleep(1.0)
        after = thread_switches(me)
    finally:
        for kid in kids:
            kid.kill()  # ours, by its pid
            kid.wait()
    ids = [k.pid for k in kids]  # each one's only thread has the process's id
    assert all(i in before and i in after for i in ids)
    assert all(after[i].wait_ns >= 0 for i in ids), "the kernel keeps no schedstat"
    ran = sum(after[i].cpu_ns - before[i].cpu_ns for i in ids)
    waited = sum(after[i].wait_ns - before[i].wait_ns for i in ids)
    assert ran > 0.3e9  # the core was theirs, mostly
    assert waited > ran  # two waiting for each one running
    assert all(after[i].slices > before[i].slices for i in ids)


def test_run_queue_waits_against_one_queue_of_the_cores() -> None:
    first = {1: ThreadCounts(0, 0, 10**9, 10**8, 100), 2: ThreadCounts(0, 0, 0, 0, 0)}
    # In 2 s, 300 requests served: the threads ran 0.6 s in 600 runs (1 ms
    # each) and waited 0.9 s; the machine was 1.2 cores busy of 2.
    second = {
        1: ThreadCounts(0, 0, 10**9 + 4 * 10**8, 10**8 + 6 * 10**8, 500),
        2: ThreadCounts(0, 0, 2 * 10**8, 3 * 10**8, 200),
    }
    rq = run_queue_waits(first, second, 2.0, 2.4, 300, 2)
    assert rq is not None
    assert rq.wait_ms_per_request == 3.0 and rq.slices_per_request == 2.0
    assert abs(rq.slice_ms - 1.0) < 1e-12 and abs(rq.machine_busy_cores - 1.2) < 1e-12
    one_queue = erlang_c(2, 1.2) * 1.0 / (2 - 1.2) * 2.0
    assert rq.shared_queue_ms_per_request is not None
    assert abs(rq.shared_queue_ms_per_request - one_queue) < 1e-9
    # The machine at or over its cores: one queue's wait has no mean.
    full = run_queue_waits(first, second, 2.0, 4.0, 300, 2)
    assert full is not None and full.shared_queue_ms_per_request is None
    # Not read: a thread came or went, no schedstat, nothing served or run.
    assert run_queue_waits(first, {1: second[1]}, 2.0, 2.4, 300, 2) is None
    blind = {t: c._replace(wait_ns=-1) for t, c in second.items()}
    assert run_queue_waits(first, blind, 2.0, 2.4, 300, 2) is None
    assert run_queue_waits(first, second, 2.0, 2.4, 0, 2) is None
    assert run_queue_waits(first, first, 2.0, 2.4, 300, 2) is None
    # A count that fell: another thread under a reused id.
    reused = {**second, 2: ThreadCounts(0, 0, 10, 10, 1)}
    assert (
        run_queue_waits({**first, 2: ThreadCounts(0, 0, 50, 50, 5)}, reused, 2.0, 2.4, 300, 2)
        is None
    )
