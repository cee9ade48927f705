"""``process-per-connection``: the accepting process forks a child for every connection.

The notes' fork-per-connection step (``socketserver.ForkingMixIn``, classic
inetd, Apache prefork without reuse). Each child runs alone under its own
GIL, so Python CPU phases in different children run in parallel up to the
core count, but every connection costs a fork (about 0.9 ms in the parent,
which accepts one connection at a time) and a process's private memory.
Queueing-wise it is M/G/inf, like thread-per-connection.
"""

from __future__ import annotations

from simlab.models.connection_bound import ConnectionBound

__all__ = ["ProcessPerConnection"]


class ProcessPerConnection(ConnectionBound):
    name = "process-per-connection"
    dedicated = True
    own_process = True

    def threads_per_process(self) -> int:
        return 1
