"""Which of a test's processes still run.

``p.is_running() and p.status()`` asks twice: a process reaped between the
two questions makes ``status()`` raise ``NoSuchProcess``, a failure of the
test that is none of the code's. A process gone is not running.
"""

from __future__ import annotations

from collections.abc import Iterable

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
