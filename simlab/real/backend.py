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

With ``--pool K`` at most K calls are served at once, from all clients
together; the others wait in turn, and a call's delay starts when it gets a
slot (an M/G/K backend: a database's connection pool). With ``--stats
FILE`` it writes, when it stops, how many calls it answered in each tenth
of a second (wall clock): the work the server did, whether or not its client still waited.

Run standalone: ``python -m simlab.real.backend --port 0`` prints
``READY <port>`` and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import cast

from simlab.real.limits import raise_fd_limit

__all__ = ["MAX_DELAY_US", "BackendProtocol", "Slots", "serve_backend"]

MAX_DELAY_US = 600_000_000
MAX_LINE = 64


class Slots:
    """At most ``size`` calls in service at once; the others wait in turn (FIFO)."""

    def __init__(self, size: int) -> None:
        self.free = size
        self.waiting: deque[Callable[[], None]] = deque()

    def start(self, call: Callable[[], None]) -> None:
        if self.free > 0:
            self.free -= 1
            call()
        else:
            self.waiting.append(call)

    def release(self) -> None:
        if self.waiting:
            self.waiting.popleft()()
        else:
            self.free += 1


class Answered:
    """Calls answered per tenth of a second of wall-clock time."""

    def __init__(self) -> None:
        self.per_tenth: dict[int, int] = {}

    def tick(self) -> None:
        tenth = int(time.time() * 10)
        self.per_tenth[tenth] = self.per_tenth.get(tenth, 0) + 1


class BackendProtocol(asyncio.Protocol):
    def __init__(self, slots: Slots | None = None, answered: Answered | None = None) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.slots = slots
        self.answered = answered

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
            if self.slots is None:
                loop.call_later(delay_us / 1e6, self._answer, call_id)
            else:
                self.slots.start(self._later(loop, delay_us, call_id))
        if len(self.buffer) > MAX_LINE:
            self._abort()

    def _later(
        self, loop: asyncio.AbstractEventLoop, delay_us: int, call_id: int
    ) -> Callable[[], None]:
        def start() -> None:
            loop.call_later(delay_us / 1e6, self._answer, call_id)

        return start

    def _answer(self, call_id: int) -> None:
        if self.slots is not None:
            self.slots.release()  # the slot frees whether or not the caller is still there
        if self.answered is not None:
            self.answered.tick()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"%d\n" % call_id)

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve_backend(
    host: str,
    port: int,
    ready: asyncio.Future[int] | None = None,
    *,
    pool: int | None = None,
    stats: Path | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    slots = Slots(pool) if pool is not None else None
    answered = Answered() if stats is not None else None
    server = await loop.create_server(
        lambda: BackendProtocol(slots, answered), host, port, backlog=4096, reuse_address=True
    )
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
    if stats is not None and answered is not None:
        stats.write_text(json.dumps({"answered_per_tenth": answered.per_tenth}))


def _settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simlab-backend", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--pool", type=int, default=None, help="calls served at once (K)")
    parser.add_argument("--stats", type=Path, default=None, help="write answers per second here")
    args = parser.parse_args(argv)
    if args.pool is not None and args.pool < 1:
        parser.error("--pool must be >= 1")
    raise_fd_limit()
    asyncio.run(serve_backend(args.host, args.port, pool=args.pool, stats=args.stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
