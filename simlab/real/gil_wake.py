"""What a GIL waiter's timed wake-up costs on the cores: CPU microseconds each.

A CPython thread waiting for the GIL sleeps in a condition wait of one
switch interval (``sys.getswitchinterval()``), wakes, takes the GIL's mutex,
asks the holder to drop it and sleeps again (``take_gil``): W waiters wake
about W / interval times a second whatever the holder does. Each wake-up runs
on a core, not the holder's: on a machine whose cores are shared (a load
generator, a backend, other processes of the server) it is CPU the others do
not get: beside a thread-per-connection server of 300 threads at 5 ms, on
2 December, its threads switched about 30,000 times a second (5,000 at 50 ms).

``measure_gil_wake`` runs a fresh interpreter (no sockets) whose threads all
spin in pure Python, first a few, then many, for a few seconds each, and reads
its CPU time and its threads' voluntary context switches (one per wake-up
that went back to sleep) from ``getrusage``. One thread holds the GIL at a
time in both, so the holder's CPU is the same; what the many add is their
wake-ups: CPU per wake-up is the difference in CPU over the difference in
wake-ups.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from typing import Any

__all__ = ["INTERVAL_MS", "PAIRS", "THREADS", "measure_gil_wake"]

# Spinning threads in the two runs: one waiter, and about the GIL waiters of
# thread-per-connection at 300 connections.
THREADS = (2, 201)
SECONDS = 2.0
INTERVAL_MS = 5.0
PAIRS = 3

# The child: ``threads`` threads spin in pure Python for ``seconds``; it
# prints its CPU and context switches over that window, read by its main
# thread after the others started (so thread creation is not in it). The
# threads are all started before any spins: a thread's start waits for it to
# run, which behind 200 spinning threads takes a switch interval each.
_CHILD = """
import json, resource, sys, threading, time
threads, seconds, interval = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
sys.setswitchinterval(interval)
stop = False
go = threading.Event()
def spin():
    go.wait()
    x = 0
    while not stop:
        x += 1
started = [threading.Thread(target=spin, daemon=True) for _ in range(threads)]
for t in started:
    t.start()
go.set()
time.sleep(0.3)
r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
time.sleep(seconds)
r1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
stop = True
for t in started:
    t.join()
print(json.dumps({
    "wall_s": w1 - w0,
    "cpu_s": (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime),
    "voluntary": r1.ru_nvcsw - r0.ru_nvcsw,
    "involuntary": r1.ru_nivcsw - r0.ru_nivcsw,
}))
"""


def _run(threads: int, seconds: float, interval_ms: float) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(threads), str(seconds), str(interval_ms / 1000)],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    raw = json.loads(out.stdout)
    wall = float(raw["wall_s"])
    return {
        "threads": threads,
        "cpu_cores": float(raw["cpu_s"]) / wall,
        "wakeups_s": float(raw["voluntary"]) / wall,
        "preemptions_s": float(raw["involuntary"]) / wall,
    }


def measure_gil_wake(
    threads: tuple[int, int] = THREADS,
    seconds: float = SECONDS,
    interval_ms: float = INTERVAL_MS,
    pairs: int = PAIRS,
) -> dict[str, Any]:
    """CPU microseconds a GIL waiter's timed wake-up takes (``wake_us``), from
    ``pairs`` pairs of real interpreters spinning ``threads`` threads at
    ``interval_ms``, the two of a pair run one after the other: the median of
    the pairs' CPU differences over their wake-up differences, with their
    range. ``identified`` is False (and ``wake_us`` None) unless every pair's
    many woke more and cost more than its few: the holder takes a core in both,
    and a machine busy enough to move its share by more than the waiters take
    leaves no cost to give."""
    few, many = threads
    if not 2 <= few < many:
        raise ValueError(f"threads(={threads!r}) must be two increasing counts >= 2")
    if not seconds > 0 or not interval_ms > 0:
        raise ValueError(f"seconds(={seconds!r}) and interval_ms(={interval_ms!r}) must be > 0")
    if pairs < 1:
        raise ValueError(f"pairs(={pairs!r}) must be >= 1")
    runs = [[_run(n, seconds, interval_ms) for n in threads] for _ in range(pairs)]
    costs = []
    for a, b in runs:
        wakes = b["wakeups_s"] - a["wakeups_s"]
        cpu = b["cpu_cores"] - a["cpu_cores"]
        costs.append(cpu / wakes * 1e6 if wakes > 0 else -math.inf)
    identified = min(costs) > 0
    return {
        "wake_us": statistics.median(costs) if identified else None,
        "range_us": [min(costs), max(costs)] if identified else None,
        "identified": identified,
        "runs": runs,
        # What CPython's timed waits would give: every waiter once an interval.
        "expected_wakeups_s": [(n - 1) / (interval_ms / 1000) for n in threads],
        "interval_ms": interval_ms,
        "seconds": seconds,
        "method": (
            f"{pairs} pairs of interpreters spinning {few} and {many} pure-Python threads "
            f"at a {interval_ms:g} ms switch interval for {seconds:g} s each; the median "
            "of the pairs' differences in CPU over their differences in voluntary context "
            "switches (getrusage)"
        ),
    }
