"""What the blocking servers share: the accept loop, the connection handler, and shutdown.

The accept loop is kept apart from the handler (as in trio): a model only
decides what to do with each accepted socket. The handler reads with h11,
runs ``/work`` on its own thread, and writes the answer. Every open client
socket is registered, so that shutdown can wake threads blocked in ``recv``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from simlab.provenance import atomic_write
from simlab.real.options import ServerOptions
from simlab.real.protocol import EOF, WorkRequest, new_exchange
from simlab.real.work import BackendError, BlockingBackend, run_blocking

__all__ = ["REFUSAL", "STOP_SIGNALS", "Context", "accept_loop", "handle_connection", "run"]

# What a server that sheds a connection says before it closes it (its request
# unread): a complete 503, so that the client can tell it from a crash.
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 11\r\nconnection: close\r\n\r\n"
    b"overloaded\n"
)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

# accept(2) fails with these when the process or the machine is out of a
# resource (fds, socket buffers, memory). They are transient: the right move
# is to back off briefly and retry, not to die (trio does the same).
OVERLOAD_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
OVERLOAD_BACKOFF_S = 0.1
# The peer gave up before accept() got to it; nothing to do.
GONE_ERRNOS = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM}
ACCEPT_POLL_S = 0.25


@dataclass
class Context:
    """One server process's shared state."""

    backend: BlockingBackend
    request_timeout: float = 10.0
    parser: str = "h11"
    stop: threading.Event = field(default_factory=threading.Event)
    # Reentrant: wake_all runs in a signal handler on the main thread, which
    # may itself be inside register() or forget() when the signal lands.
    lock: threading.RLock = field(default_factory=threading.RLock)
    conns: set[socket.socket] = field(default_factory=set)
    # How long each connection's owner waited, after its last answer, for the
    # client's close (seconds); None: not kept (``ServerOptions.close_waits``).
    close_waits: list[float] | None = None

    def register(self, sock: socket.socket) -> None:
        with self.lock:
            self.conns.add(sock)

    def forget(self, sock: socket.socket) -> None:
        with self.lock:
            self.conns.discard(sock)

    def wake_all(self) -> None:
        """Make every thread blocked in recv, on a client or the backend, return (shutdown)."""
        self.stop.set()
        self.backend.close_all()
        with self.lock:
            conns = list(self.conns)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def accept_loop(
    listener: socket.socket,
    ctx: Context,
    on_conn: Callable[[socket.socket], None],
    on_idle: Callable[[], None] | None = None,
    before: Callable[[], bool] | None = None,
) -> None:
    """Accept until ``ctx.stop``; hand each connection to ``on_conn``.

    ``on_idle`` runs whenever no connection arrived for ``ACCEPT_POLL_S``;
    ``before`` runs before each accept and returns True once one may be made
    (it waits at most about ``ACCEPT_POLL_S``).
    """
    listener.settimeout(ACCEPT_POLL_S)  # so that a stop request is seen promptly
    while not ctx.stop.is_set():
        if before is not None and not before():
            continue
        try:
            sock, _ = listener.accept()
        except TimeoutError:
            if on_idle is not None:
                on_idle()
            continue
        except OSError as exc:
            if exc.errno in OVERLOAD_ERRNOS:
                time.sleep(OVERLOAD_BACKOFF_S)
                continue
            if exc.errno in GONE_ERRNOS:
                continue
            if ctx.stop.is_set():
                break
            raise
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        on_conn(sock)


def handle_connection(sock: socket.socket, ctx: Context) -> None:
    """Serve one connection until it closes, on the calling thread.

    Idle between requests, the thread blocks in recv for as long as the
    client stays (keep-alive, as the models assume). Once a request has
    started, the rest must arrive within ``request_timeout`` seconds, so a
    slow or stalled client cannot hold the thread for ever.
    """
    ctx.register(sock)
    exchange = new_exchange(ctx.parser)
    deadline: float | None = None
    answered: float | None = None  # when the last answer went, if close waits are kept
    try:
        while not ctx.stop.is_set():
            item = exchange.next()
            if item is None:
                if exchange.mid_request:
                    # The whole rest of the request has request_timeout from its
                    # first byte, however slowly it trickles in.
                    if deadline is None:
                        deadline = time.monotonic() + ctx.request_timeout
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    sock.settimeout(left)
                else:
                    deadline = None
                    sock.settimeout(None)
                data = _read(sock, ctx, answered)
                # A request came after the answer: the close, if any, follows its own.
                answered = None if data else answered
                exchange.feed(data)
                continue
            deadline = None
            if item is EOF:
                break
            if isinstance(item, bytes):  # a 4xx: say it and hang up
                sock.sendall(item)
                break
            assert isinstance(item, WorkRequest)
            try:
                service_us = run_blocking(item, ctx.backend)
            except BackendError:
                break
            sock.sendall(exchange.respond(service_us, item.headers()))
            answered = None if ctx.close_waits is None else time.monotonic()
            if not exchange.keep_alive:
                break
    except (OSError, TimeoutError):
        pass  # reset, timed out or shut down: the connection is over either way
    finally:
        ctx.forget(sock)
        with contextlib.suppress(OSError):
            sock.close()


def run(
    listener: socket.socket,
    opts: ServerOptions,
    serve: Callable[[socket.socket, ServerOptions, Context], None],
) -> None:
    """Run a blocking server: one backend client and context for the process,
    and stop signals that wake every thread blocked in ``recv``."""
    ctx = Context(
        backend=BlockingBackend(opts.backend_port),
        request_timeout=opts.request_timeout,
        parser=opts.parser,
        close_waits=None if opts.close_waits is None else [],
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        ctx.wake_all()

    for sig in STOP_SIGNALS:
        signal.signal(sig, stop)
    serve(listener, opts, ctx)
    if ctx.close_waits is not None:  # kept exactly when opts.close_waits names a path
        write_close_waits(Path(f"{opts.close_waits}.{os.getpid()}"), ctx.close_waits)


def _read(sock: socket.socket, ctx: Context, answered: float | None) -> bytes:
    """The next bytes from the client; an end (b"") after an answer sent at
    ``answered`` is the client's close, and how long it took is kept."""
    data = sock.recv(65536)
    if not data and answered is not None and ctx.close_waits is not None and not ctx.stop.is_set():
        # The thread held the connection until now (list.append is atomic);
        # an end the server's own shutdown made is no client's close.
        ctx.close_waits.append(time.monotonic() - answered)
    return data


def write_close_waits(path: Path, waits: list[float]) -> None:
    """``waits`` (seconds) one a line, written whole or not at all."""
    atomic_write(path, "".join(f"{w:.9f}\n" for w in waits).encode())
