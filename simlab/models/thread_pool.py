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

from simlab.models.connection_bound import ConnectionBound
from simlab.params import Architecture

__all__ = ["ThreadPool"]


class ThreadPool(ConnectionBound):
    name = "thread-pool"

    @classmethod
    def holders_for(cls, arch: Architecture) -> int:
        return arch.workers * arch.processes

    def threads_per_process(self) -> int:
        return self.arch.workers + 1  # the workers plus the accepting main thread
