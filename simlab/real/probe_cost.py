"""What the probe itself costs: its CPU per sample, against the size of the tree it samples.

The probe (``simlab.real.probe``) runs inside ``simlab measure``, on the same
two cores as the server, the load generator and the backend, at the same
priority. Every light sample reads several ``/proc`` files per process of
the server's tree (and walks ``/proc`` to find the tree), so a tree of a few
hundred forked children costs tens of milliseconds of CPU per sample, ten
samples a second: a fifth of a core or more that the server cannot use. A
validation that simulates the lab as it ran (the load generator's and the
backend's CPU beside the server) must add it too.

``measure_probe_cost`` times a real ``Probe`` thread on trees of sleeping
processes of two sizes (no sockets, no load) and fits a line: CPU
microseconds per sample for the tree's root, and for each process more.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

__all__ = ["SIZES", "measure_probe_cost"]

# Trees of this many processes: a single server process, and about the
# largest per-connection tree the validation grid holds at once (N=300).
SIZES = (1, 301)
SECONDS = 2.0


def _tree(processes: int) -> int:
    """Fork a root that forks ``processes - 1`` sleeping children; its pid."""
    root = os.fork()
    if root == 0:  # pragma: no cover - the child's side
        try:
            for _ in range(processes - 1):
                if os.fork() == 0:
                    signal.pause()
                    os._exit(0)
            signal.pause()
        finally:
            os._exit(0)
    return root


def _stop(root: int) -> None:
    import psutil  # noqa: PLC0415 - heavy, and only when measuring

    try:
        kids = psutil.Process(root).children(recursive=True)
    except psutil.NoSuchProcess:
        kids = []
    for kid in kids:
        # Each child is ours (forked by our root): stopped by its pid.
        with contextlib.suppress(ProcessLookupError):
            os.kill(kid.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(root, signal.SIGKILL)
    os.waitpid(root, 0)
    for kid in kids:
        # Orphans are reaped by init once the root is gone; wait for them to go.
        deadline = time.monotonic() + 5
        while kid.is_running() and time.monotonic() < deadline:
            time.sleep(0.01)


def _per_sample_us(processes: int, seconds: float) -> float:
    from simlab.real.probe import Probe  # noqa: PLC0415 - needs psutil

    root = _tree(processes)
    try:
        # Let every child be forked before the probe looks.
        time.sleep(0.2 + processes * 0.002)
        probe = Probe(root)
        cpu0 = time.process_time()
        probe.start()
        time.sleep(seconds)
        probe.stop()
        spent = time.process_time() - cpu0
        samples = max(len(probe.samples), 1)
    finally:
        _stop(root)
    # This process does nothing else meanwhile (the main thread sleeps), so
    # its CPU time is the probe thread's.
    return spent / samples * 1e6


def measure_probe_cost(sizes: tuple[int, int] = SIZES, seconds: float = SECONDS) -> dict[str, Any]:
    """The probe's CPU per sample: ``sample_us`` (intercept, the tree's root
    included) and ``process_us`` (slope per process), from real probes on two
    trees of sleeping processes."""
    small, large = sizes
    if not 1 <= small < large:
        raise ValueError(f"sizes(={sizes!r}) must be two increasing counts >= 1")
    a, b = (_per_sample_us(n, seconds) for n in sizes)
    slope = max(b - a, 0.0) / (large - small)
    intercept = a - slope * small
    method = (
        "a real Probe thread timed (its process's CPU time over its samples) on trees of "
        f"{small} and {large} sleeping processes; a line through the two"
    )
    if intercept < 0:
        # A root that costs less than one more process (seen on a CI host: 4.5 ms
        # for the root alone, 6 ms a process more) puts the line's intercept below
        # zero; a cost cannot be negative, so it is held at 0, and said so.
        method += (
            f"; its intercept ({intercept:.0f} us) held at 0, so the line passes above both trees"
        )
    return {
        "sample_us": max(intercept, 0.0),
        "process_us": slope,
        "per_sample_us": {str(small): a, str(large): b},
        "interval_s": 0.1,
        "seconds": seconds,
        "method": method,
    }
