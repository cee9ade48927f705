"""Which of a test's processes still run.

``p.is_running() and p.status()`` asks twice: a process reaped between the
two questions makes ``status()`` raise ``NoSuchProcess``, a failure of the
test that is none of the code's. A process gone is not running.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import psutil


def alive(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    """The processes of ``procs`` still running and not zombies."""
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            continue
    return out


def outlive(procs: Sequence[psutil.Process], seconds: float) -> list[psutil.Process]:
    """The processes of ``procs`` still running ``seconds`` from now, or as
    soon as none is (a stopped process's last moments, waited for)."""
    deadline = time.monotonic() + seconds
    while alive(procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive(procs)
