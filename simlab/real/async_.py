"""``async``: one asyncio loop per process does everything; a backend wait holds nothing.

A request becomes a task: its CPU burns on the loop (blocking it, as CPU work
does), and its backend calls are awaits on one multiplexed connection.
``backlog`` bounds the requests in flight per process (like uvicorn's
``--limit-concurrency``): beyond it the loop answers 503. With
``--processes N`` each process runs its own loop on its own SO_REUSEPORT
socket; ``--uvloop`` swaps in uvloop.
"""

from __future__ import annotations

import asyncio
import socket
import time

import uvloop

from simlab.real.aio import HttpProtocol, serve_app
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

    def overloaded(self) -> bool:
        return self.backlog is not None and self.in_flight >= self.backlog

    async def _handle(self, request: WorkRequest) -> int:
        try:
            t0 = time.perf_counter()
            burn_cpu(request.cpu_ms)
            await self.backend.call(request.delays_us, request.fanout == "parallel")
            return int((time.perf_counter() - t0) * 1e6)
        finally:
            self.in_flight -= 1

    def run(self, request: WorkRequest) -> asyncio.Future[int]:
        # Counted when admitted, not when the task first runs, so that a burst
        # read in one go is bounded too.
        self.in_flight += 1
        task = asyncio.ensure_future(self._handle(request))
        self.tasks.add(task)  # keep a reference until done (asyncio holds only weak ones)
        task.add_done_callback(self.tasks.discard)
        return task

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await self.backend.close()


def serve(listener: socket.socket, opts: ServerOptions) -> None:
    async def main() -> None:
        await serve_app(listener, AsyncApp(opts))

    if opts.uvloop:
        uvloop.run(main())
    else:
        asyncio.run(main())
