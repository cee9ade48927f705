"""The backend: an asyncio server on loopback that answers each call after its requested delay.

It stands in for the database or the remote API of the notes. Its wire
protocol is one line per call, so that the server's I/O wait is real network
I/O and a threaded server really blocks in ``recv``:

    client -> backend   b"<call id> <delay in microseconds>\\n"
    backend -> client   b"<call id>\\n"     (after the delay)

Calls on one connection may overlap (a parallel fan-out writes all its lines
at once); each is answered when its own timer fires. A pending call costs a
``TimerHandle`` and a few bytes, so 10,000+ pending calls are cheap.
Malformed input closes the connection.

Run standalone: ``python -m simlab.real.backend --port 0`` prints
``READY <port>`` and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import cast

from simlab.real.limits import raise_fd_limit

__all__ = ["MAX_DELAY_US", "BackendProtocol", "serve_backend"]

MAX_DELAY_US = 600_000_000
MAX_LINE = 64


class BackendProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        loop = asyncio.get_running_loop()
        while b"\n" in self.buffer:
            line, _, self.buffer = self.buffer.partition(b"\n")
            try:
                call_id, delay_us = (int(x) for x in line.split())
                if not 0 <= delay_us <= MAX_DELAY_US:
                    raise ValueError
            except ValueError:
                self._abort()
                return
            # Not tracked: a timer firing after the client left finds no transport.
            loop.call_later(delay_us / 1e6, self._answer, call_id)
        if len(self.buffer) > MAX_LINE:
            self._abort()

    def _answer(self, call_id: int) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"%d\n" % call_id)

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve_backend(host: str, port: int, ready: asyncio.Future[int] | None = None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(BackendProtocol, host, port, backlog=4096, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _settle, stop)
    print(f"READY {bound}", flush=True)
    if ready is not None:
        ready.set_result(bound)
    async with server:
        await stop
    server.close()


def _settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simlab-backend", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    raise_fd_limit()
    asyncio.run(serve_backend(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
