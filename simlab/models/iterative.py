"""``iterative``: one thread per process serves one connection at a time, start to finish.

The first server of the notes' Python journey: ``accept``, then loop on
``recv``/``send`` until the client hangs up, then ``accept`` again. Other
connections wait in the listen backlog. With persistent connections the
thread never gets past its first client; with one request per connection it
is M/G/1 with connections as customers. Pre-forked copies (``processes``)
each call ``accept`` only when their thread is free, so a new short-lived
connection goes to a free copy or waits in the listen queue they share:
M/G/P with connections as customers (gunicorn's sync worker is this server).
"""

from __future__ import annotations

from simlab.models.base import FastMode
from simlab.models.holders import Holders
from simlab.params import Architecture, Platform, Workload

__all__ = ["Iterative"]


class Iterative(Holders):
    name = "iterative"
    fast_mode = FastMode.POOL_OWNS_CONNECTION
    accepts_when_free = True

    @classmethod
    def _fast_limits(cls, workload: Workload, platform: Platform, arch: Architecture) -> str | None:
        if workload.requests_per_connection not in (None, 1):
            return "the thread holds its connection between requests (fast needs K = 1)"
        if arch.processes > 1 and not workload.persistent:
            return "pre-forked copies share one listen queue (fast deals connections to copies)"
        return cls._close_limit(workload, platform)

    @classmethod
    def holders_for(cls, arch: Architecture) -> int:
        return arch.processes
