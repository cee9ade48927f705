"""``process-per-connection``: the accepting process forks a child for every connection.

The notes' fork-per-connection step (``socketserver.ForkingMixIn``, classic
inetd, Apache prefork without reuse). Each child runs alone under its own
GIL, so Python CPU phases in different children run in parallel up to the
core count, but every connection costs a fork (about 0.9 ms in the parent,
which accepts one connection at a time) and a process's private memory.
Queueing-wise it is M/G/inf, like thread-per-connection.
"""

from __future__ import annotations

from simlab.models.base import FastMode
from simlab.models.dedicated import Dedicated

__all__ = ["ProcessPerConnection"]


class ProcessPerConnection(Dedicated):
    name = "process-per-connection"
    own_process = True
    fast_mode = FastMode.THREAD_PER_CONNECTION

    @classmethod
    def accept_terms(cls) -> dict[str, float]:
        return {"fork_us": 1}
