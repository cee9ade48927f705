"""``thread-pool``: W worker threads per process, each owning one connection while it is open.

The classic blocking pool (``socketserver`` with a bounded executor, Apache
worker, Tomcat BIO): the main thread accepts, a free worker takes the
connection and serves it until it closes, idle keep-alive gaps included.
Extra connections wait in the backlog. With one request per connection it is
M/G/W over requests (one process); with persistent connections each process
serves its first W connections and the rest starve, which is why this design
cannot hold many idle connections. Pre-forked copies take new connections in
turn, each into its own pool.
"""

from __future__ import annotations

import math
from dataclasses import replace

from simlab.models.base import FastMode
from simlab.models.holders import Holders
from simlab.params import Architecture, Platform, Workload
from simlab.streams import Deal

__all__ = ["ThreadPool"]

DEAL_MARGIN_Z = 3.5


class ThreadPool(Holders):
    name = "thread-pool"
    pooled = True
    fast_mode = FastMode.POOL_OWNS_CONNECTION

    @classmethod
    def holders_for(cls, arch: Architecture) -> int:
        return arch.workers * arch.processes

    @classmethod
    def threads_per_process(cls, arch: Architecture) -> int:
        return arch.workers + 1  # the workers plus the accepting main thread

    @classmethod
    def sized(cls, workload: Workload, arch: Architecture, deal: Deal) -> Architecture:
        """A worker owns its connection while it is open, so persistent
        connections need a worker each on the process they land on.

        How many land on the busiest process depends on the kernel's deal,
        which a deployment cannot choose: the pool covers the deals of the
        replications in ``deal`` and, beyond them, any plausible one. The
        busiest of P processes gets about N/P + z sqrt(N/P (1 - 1/P)) of N
        connections; z = ``DEAL_MARGIN_Z`` covers the maximum of a handful of
        processes over many deals.
        """
        if not workload.persistent:
            return arch
        n, p = workload.connections, arch.processes
        need = deal.busiest_count(n, p)
        if p > 1:
            mean = n / p
            margin = math.ceil(mean + DEAL_MARGIN_Z * math.sqrt(mean * (1 - 1 / p))) + 1
            need = max(need, min(n, margin))
        return replace(arch, workers=max(arch.workers, need))

    @classmethod
    def serves_at_most(cls, workload: Workload, arch: Architecture) -> int | None:
        return None  # ``sized`` grows the pool to hold them

    @classmethod
    def _fast_limits(cls, workload: Workload, platform: Platform, arch: Architecture) -> str | None:
        if workload.requests_per_connection not in (None, 1):
            return (
                "a thread-pool worker holds its connection between requests "
                "(fast needs K = 1 or persistent connections)"
            )
        return cls._close_limit(workload, platform)
