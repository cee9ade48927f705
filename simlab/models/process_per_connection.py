"""``process-per-connection``: the accepting process forks a child for every connection.

The notes' fork-per-connection step (``socketserver.ForkingMixIn``, classic
inetd, Apache prefork without reuse). Each child runs alone under its own
GIL, so Python CPU phases in different children run in parallel up to the
core count, but every connection costs a fork and a process's private
memory. The fork's CPU (``fork_us``) is split: the parent's os.fork() call
(about 0.6 ms here) is paid on the accept loop, one connection at a time;
the rest (``fork_child_us``: the child's copy-on-write faults and start-up)
is the child's, on a core of its own, so forks under load run in parallel.
A child outlives its connection while it exits (``fork_exit_us``), which is
why a short connection's child count is higher than its requests in flight.
Queueing-wise it is M/G/inf, like thread-per-connection.
"""

from __future__ import annotations

from simlab.models.base import FastMode
from simlab.models.dedicated import Dedicated
from simlab.params import Platform, Workload

__all__ = ["ProcessPerConnection"]


class ProcessPerConnection(Dedicated):
    name = "process-per-connection"
    own_process = True
    fast_mode = FastMode.THREAD_PER_CONNECTION

    @classmethod
    def accept_terms(cls) -> dict[str, float]:
        return {"fork_us": 1}

    @classmethod
    def accept_split(cls, workload: Workload, platform: Platform) -> tuple[float, float, float]:
        """The parent pays its os.fork() call on the accept loop; the child pays
        the rest of the fork's CPU (``fork_child_us``) on a core of its own, and
        lives ``fork_exit_us`` after its connection closes."""
        total = cls.request_cost(workload).accept_s(platform)
        child = min(platform.fork_child_us * 1e-6, total)
        return total - child, child, platform.fork_exit_us * 1e-6
