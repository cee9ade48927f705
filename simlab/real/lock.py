"""One real run at a time on a machine: they share its cores.

Two real measurements at once would each measure the other's load as their
own server's slowness. ``exclusive`` holds a machine-wide lock (an advisory
``flock`` on a file in the temporary directory, or ``$SIMLAB_LAB_LOCK``) for
the length of a run; a second run waits for the first, saying so, for at
most ``WAIT_S`` seconds. The lock is reentrant within a thread: a run
gated on the machine's speed (``simlab.gate``) holds it from its speed
check through its measurement, whose own ``exclusive`` then holds nothing more.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from simlab.errors import RunFailed

__all__ = ["WAIT_S", "exclusive"]

WAIT_S = 3600.0
POLL_S = 0.5
# How deep this thread holds the lock (flock on a second descriptor would
# wait for the first: the same process would deadlock on itself). Per thread,
# so that another thread of the process still waits for the lock.
_held = threading.local()


def lock_path() -> Path:
    return Path(
        os.environ.get("SIMLAB_LAB_LOCK") or Path(tempfile.gettempdir()) / "simlab-lab.lock"
    )


@contextlib.contextmanager
def exclusive(say: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the machine's real-run lock while the block runs."""
    if getattr(_held, "depth", 0):
        _held.depth += 1
        try:
            yield
        finally:
            _held.depth -= 1
        return
    path = lock_path()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + WAIT_S
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told and say is not None:
                    say(f"waiting for another real run on this machine to finish ({path})")
                    told = True
                if time.monotonic() > deadline:
                    raise RunFailed(
                        f"another real run held {path} for over {WAIT_S:.0f} s"
                    ) from None
                time.sleep(POLL_S)
        _held.depth = 1
        try:
            yield
        finally:
            _held.depth = 0
    finally:
        os.close(fd)  # closing the descriptor releases the lock
