"""``thread-per-connection``: the accepting thread spawns a thread for every connection.

The notes' 10K-connections-means-10K-threads server. Each thread blocks in
``recv`` on its own client, so an idle connection costs a whole thread: its
resident memory, and its reserved stack (8 MiB under glibc, 1 MiB on the
JVM). Nobody waits for a thread, so with ample cores it is M/G/inf (each
client its own M/G/1 at lam/N); when many threads are runnable at once, the
switching overhead grows and the CPU, not the threads, becomes the limit.
"""

from __future__ import annotations

from simlab.models.base import FastMode
from simlab.models.dedicated import Dedicated

__all__ = ["ThreadPerConnection"]


class ThreadPerConnection(Dedicated):
    name = "thread-per-connection"
    fast_mode = FastMode.THREAD_PER_CONNECTION

    @classmethod
    def accept_terms(cls) -> dict[str, float]:
        return {"spawn_us": 1}
