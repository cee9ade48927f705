"""What the event-loop servers share: an HTTP protocol per connection on asyncio.

The loop owns every connection; an idle one costs only its memory. A
connection runs one request at a time (HTTP/1.1 without pipelining): reading
pauses while its request is in progress and resumes after the answer. What
"running a request" means is the model's ``App``: a worker thread for
``reactor-pool``, a task on the loop for ``async``. An app answers
``EXPIRED`` for a request that waited past its queue deadline: it gets a 503.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import socket
from typing import Protocol, cast

from simlab.real.protocol import EOF, WorkRequest, new_exchange

__all__ = ["EXPIRED", "App", "HttpProtocol", "serve_app"]

# What an app's future holds for a request it dropped unserved (queue deadline).
EXPIRED = -1


class App(Protocol):
    request_timeout: float
    parser: str
    protocols: set[HttpProtocol]

    def overloaded(self) -> bool: ...

    def run(self, request: WorkRequest) -> asyncio.Future[int]: ...

    async def close(self) -> None: ...


class HttpProtocol(asyncio.Protocol):
    def __init__(self, app: App) -> None:
        self.app = app
        self.exchange = new_exchange(app.parser)
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.app.protocols.add(self)

    def data_received(self, data: bytes) -> None:
        self.exchange.feed(data)
        self._pump()

    def eof_received(self) -> bool:
        self.exchange.feed(b"")
        self._pump()
        return True  # keep the write side open until our answer is out

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.app.protocols.discard(self)
        self.transport = None

    def _pump(self) -> None:
        while not self.busy and self.transport is not None:
            item = self.exchange.next()
            if item is None:
                if self.exchange.mid_request:
                    self._arm()
                else:
                    self._disarm()
                return
            self._disarm()
            if item is EOF:
                self.transport.close()
                return
            if isinstance(item, bytes):  # a 4xx: say it and hang up
                self.transport.write(item)
                self.transport.close()
                return
            assert isinstance(item, WorkRequest)
            if self.app.overloaded():
                self.transport.write(self.exchange.refuse())
                if not self.exchange.keep_alive:  # HTTP/1.0 or Connection: close
                    self.transport.close()
                    return
                continue
            self.busy = True
            self.transport.pause_reading()
            self.app.run(item).add_done_callback(functools.partial(self._answered, item))

    def _answered(self, item: WorkRequest, fut: asyncio.Future[int]) -> None:
        self.busy = False
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if fut.cancelled() or fut.exception() is not None:
            transport.close()
            return
        service_us = fut.result()
        if service_us == EXPIRED:
            transport.write(self.exchange.refuse())
        else:
            transport.write(self.exchange.respond(service_us, item.headers()))
        if not self.exchange.keep_alive:
            transport.close()
            return
        transport.resume_reading()
        self._pump()

    def _arm(self) -> None:
        if self.timer is None:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(self.app.request_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timed_out(self) -> None:
        self.timer = None
        if self.transport is not None:
            self.transport.abort()


def _settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def serve_app(listener: socket.socket, app: App, backlog: int) -> None:
    """Serve on ``listener`` until SIGTERM or SIGINT, then close every connection.

    ``backlog`` is the listen queue the options ask for: create_server listens
    on the socket again, with 100 unless told, and a queue of 100 dropped the
    SYNs of a load generator that opens 256 connections at a time (each
    dropped SYN is sent again a second later)."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpProtocol(app), sock=listener, backlog=backlog)
    stop: asyncio.Future[None] = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, _settle, stop)
    try:
        await stop
    finally:
        server.close()
        for proto in list(app.protocols):
            if proto.transport is not None:
                proto.transport.abort()
        await app.close()
