"""``thread-per-connection``: the accepting thread spawns a thread for every connection.

The notes' 10K-connections-means-10K-threads server. Each thread blocks in
``recv`` on its own client, so an idle connection costs a whole thread: its
resident memory, and its reserved stack (8 MiB under glibc, 1 MiB on the
JVM). Nobody waits for a thread, so with ample cores it is M/G/inf (each
client its own M/G/1 at lam/N); when many threads are runnable at once, the
switching overhead grows and the CPU, not the threads, becomes the limit.
A thread made for a short connection lives on after its last answer until
the client's close is read (``thread_exit_us``), holding its thread and
memory but no core.
"""

from __future__ import annotations

from simlab.models.base import FastMode
from simlab.models.dedicated import Dedicated
from simlab.params import Platform, Workload

__all__ = ["ThreadPerConnection"]


class ThreadPerConnection(Dedicated):
    name = "thread-per-connection"
    fast_mode = FastMode.THREAD_PER_CONNECTION

    @classmethod
    def accept_terms(cls) -> dict[str, float]:
        return {"spawn_us": 1}

    @classmethod
    def accept_split(cls, workload: Workload, platform: Platform) -> tuple[float, float, float]:
        """The accepting thread makes the thread wholly; the thread lives
        ``thread_exit_us`` after its connection's last answer (the client's
        close read, the thread gone)."""
        return cls.request_cost(workload).accept_s(platform), 0.0, platform.thread_exit_us * 1e-6
