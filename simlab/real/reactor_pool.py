"""``reactor-pool``: an asyncio loop reads and parses; a pool of W threads runs the work.

The first generation of event-driven servers (nginx + PHP-FPM, Tomcat NIO):
a parsed request is handed to a worker thread (``run_in_executor``), which
burns its CPU and blocks in ``recv`` on the backend, then the loop writes the
answer. ``backlog`` bounds the requests waiting for a worker; beyond it the
loop answers 503 at once. ``max_inflight`` answers 503 beyond that many
requests submitted and not finished; ``queue_deadline`` makes a worker
answer 503, without the work, to a request that waited longer for it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from simlab.real.aio import EXPIRED, HttpProtocol, serve_app
from simlab.real.options import ServerOptions
from simlab.real.protocol import WorkRequest
from simlab.real.work import BlockingBackend, run_blocking

__all__ = ["ReactorApp", "serve"]


class ReactorApp:
    def __init__(self, opts: ServerOptions, backend: BlockingBackend) -> None:
        self.request_timeout = opts.request_timeout
        self.parser = opts.parser
        self.protocols: set[HttpProtocol] = set()
        self.backlog = opts.backlog
        self.backend = backend
        self.executor = ThreadPoolExecutor(max_workers=opts.workers, thread_name_prefix="worker")
        self.lock = threading.Lock()
        self.workers = opts.workers
        self.submitted = 0
        self.finished = 0
        self.max_inflight = opts.max_inflight
        self.queue_deadline = opts.queue_deadline
        self._prestart(opts.workers)

    def _prestart(self, workers: int) -> None:
        # ThreadPoolExecutor starts threads lazily; start all W now so that the
        # thread count is the model's W + 1 from the first request on.
        barrier = threading.Barrier(workers + 1)
        for _ in range(workers):
            self.executor.submit(barrier.wait)
        barrier.wait()

    def overloaded(self) -> bool:
        """True when one more request would wait for a worker beyond the backlog,
        or go over the concurrency limit."""
        if self.backlog is None and self.max_inflight is None:
            return False
        with self.lock:
            inside = self.submitted - self.finished
        if self.max_inflight is not None and inside >= self.max_inflight:
            return True
        return self.backlog is not None and inside - self.workers >= self.backlog

    def _work(self, request: WorkRequest, submitted: float) -> int:
        try:
            deadline = self.queue_deadline
            if deadline is not None and time.monotonic() - submitted > deadline:
                return EXPIRED  # waited past the queue deadline: 503, not served
            return run_blocking(request, self.backend)
        finally:
            with self.lock:
                self.finished += 1

    def run(self, request: WorkRequest) -> asyncio.Future[int]:
        with self.lock:
            self.submitted += 1
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self.executor, self._work, request, time.monotonic())

    async def close(self) -> None:
        # Closing the backend sockets wakes workers blocked in a backend call,
        # so shutdown does not wait for the longest call to finish.
        self.backend.close_all()
        await asyncio.to_thread(self.executor.shutdown, wait=True, cancel_futures=True)


def serve(listener: socket.socket, opts: ServerOptions) -> None:
    backend = BlockingBackend(opts.backend_port)

    async def main() -> None:
        await serve_app(listener, ReactorApp(opts, backend), opts.listen_backlog)

    asyncio.run(main())
