"""``async``: one asyncio loop per process does everything; a backend wait holds nothing.

A request becomes a task: its CPU burns on the loop (blocking it, as CPU work
does), and its backend calls are awaits on one multiplexed connection.
``backlog`` bounds the requests in flight per process (like uvicorn's
``--limit-concurrency``): beyond it the loop answers 503. With
``--processes N`` each process runs its own loop on its own SO_REUSEPORT
socket; ``--uvloop`` swaps in uvloop.

Overload controls: ``max_inflight`` is that bound too; ``queue_deadline``
answers 503, without the work, to a request whose task started later than
that after it was read. A request's ``block_ms`` is a blocking call made
from the handler (``time.sleep``, as a synchronous driver blocks): it holds
the loop for its whole duration, unless ``offload`` runs it on a pool of
``workers`` threads (``run_in_executor``).
"""

from __future__ import annotations

import asyncio
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import uvloop

from simlab.real.aio import EXPIRED, HttpProtocol, serve_app
from simlab.real.options import ServerOptions
from simlab.real.protocol import WorkRequest
from simlab.real.work import AsyncBackend, burn_cpu

__all__ = ["AsyncApp", "serve"]


class AsyncApp:
    def __init__(self, opts: ServerOptions) -> None:
        self.request_timeout = opts.request_timeout
        self.parser = opts.parser
        self.protocols: set[HttpProtocol] = set()
        self.backlog = opts.backlog
        self.backend = AsyncBackend(opts.backend_port)
        self.in_flight = 0
        self.tasks: set[asyncio.Task[int]] = set()
        self.max_inflight = opts.max_inflight
        self.queue_deadline = opts.queue_deadline
        self.executor = (
            ThreadPoolExecutor(max_workers=opts.workers, thread_name_prefix="offload")
            if opts.offload
            else None
        )

    def overloaded(self) -> bool:
        if self.max_inflight is not None and self.in_flight >= self.max_inflight:
            return True
        return self.backlog is not None and self.in_flight >= self.backlog

    async def _handle(self, request: WorkRequest, admitted: float) -> int:
        try:
            t0 = time.perf_counter()
            deadline = self.queue_deadline
            if deadline is not None and time.monotonic() - admitted > deadline:
                return EXPIRED  # waited past the queue deadline: 503, not served
            burn_cpu(request.cpu_ms)
            if request.block_ms > 0:
                if self.executor is None:
                    time.sleep(request.block_ms / 1e3)  # holds the loop: nothing else runs
                else:
                    loop = asyncio.get_running_loop()
                    await loop.run_in_executor(self.executor, time.sleep, request.block_ms / 1e3)
            if request.deadline_ms is None and request.hedge_ms is None:
                await self.backend.call(request.delays_us, request.fanout == "parallel")
            else:
                await self.backend.auction(request)
            return int((time.perf_counter() - t0) * 1e6)
        finally:
            self.in_flight -= 1

    def run(self, request: WorkRequest) -> asyncio.Future[int]:
        # Counted when admitted, not when the task first runs, so that a burst
        # read in one go is bounded too.
        self.in_flight += 1
        task = asyncio.ensure_future(self._handle(request, time.monotonic()))
        self.tasks.add(task)  # keep a reference until done (asyncio holds only weak ones)
        task.add_done_callback(self.tasks.discard)
        return task

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await self.backend.close()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)


def serve(listener: socket.socket, opts: ServerOptions) -> None:
    async def main() -> None:
        await serve_app(listener, AsyncApp(opts), opts.listen_backlog)

    if opts.uvloop:
        uvloop.run(main())
    else:
        asyncio.run(main())
