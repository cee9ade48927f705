"""``thread-pool``: W worker threads; each takes a connection and owns it until it closes.

The main thread accepts into a FIFO of connections waiting for a worker; a
free worker takes the oldest and serves every request on it, idle keep-alive
gaps included. ``backlog`` bounds how many may wait: one more is refused
(closed at once).

Overload controls (off by default): ``max_inflight`` answers 503 at accept
when that many connections are already waiting or being served;
``queue_deadline`` answers 503, without serving it, to a connection that
waited longer for a worker; ``kernel_backlog`` accepts only when a worker is
free, so that waiting connections stay in the kernel's listen queue (of
``backlog``), whose overflow drops SYNs as Linux does.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import deque

from simlab.real.blocking import REFUSAL, Context, accept_loop, handle_connection, run
from simlab.real.options import ServerOptions

__all__ = ["serve"]

POLL_S = 0.25
JOIN_TIMEOUT_S = 10.0


class _Waiting:
    """Connections waiting for a worker, and how many workers are idle."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.socks: deque[socket.socket] = deque()
        self.accepted: deque[float] = deque()  # when each waiting one was accepted
        self.idle = 0


def serve(listener: socket.socket, opts: ServerOptions) -> None:
    run(listener, opts, _serve)


def _serve(listener: socket.socket, opts: ServerOptions, ctx: Context) -> None:  # noqa: PLR0915
    w = _Waiting()

    def worker() -> None:
        while True:
            with w.cond:
                w.idle += 1
                if opts.kernel_backlog:
                    w.cond.notify_all()  # the accepting thread waits for an idle worker
                while not w.socks and not ctx.stop.is_set():
                    w.cond.wait(POLL_S)
                w.idle -= 1
                if ctx.stop.is_set():
                    return
                sock = w.socks.popleft()
                accepted = w.accepted.popleft()
            deadline = opts.queue_deadline
            if deadline is not None and time.monotonic() - accepted > deadline:
                _refuse(sock)  # waited past the queue deadline: 503, not served
                continue
            handle_connection(sock, ctx)

    workers = [
        threading.Thread(target=worker, daemon=True, name=f"worker-{k}")
        for k in range(opts.workers)
    ]
    for t in workers:
        t.start()

    def on_conn(sock: socket.socket) -> None:
        with w.cond:
            # Those that will wait = queued beyond the idle workers, this one included.
            waiting = len(w.socks) + 1 - w.idle
            if not opts.kernel_backlog and opts.backlog is not None and waiting > opts.backlog:
                sock.close()  # refused: the backlog is full
                return
            inside = len(w.socks) + opts.workers - w.idle
            if opts.max_inflight is not None and inside >= opts.max_inflight:
                shed = True
            else:
                shed = False
                w.socks.append(sock)
                w.accepted.append(time.monotonic())
                w.cond.notify()
        if shed:
            _refuse(sock)  # the concurrency limit: 503 at once

    def worker_free() -> bool:
        """Accept only once a worker waits for a connection (``kernel_backlog``)."""
        with w.cond:
            if w.idle > len(w.socks) or ctx.stop.is_set():
                return True
            w.cond.wait(POLL_S)
            return w.idle > len(w.socks)

    try:
        accept_loop(listener, ctx, on_conn, before=worker_free if opts.kernel_backlog else None)
    finally:
        ctx.wake_all()
        with w.cond:
            for sock in w.socks:
                sock.close()
            w.socks.clear()
            w.accepted.clear()
            w.cond.notify_all()
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for t in workers:
            t.join(max(0.0, deadline - time.monotonic()))


def _refuse(sock: socket.socket) -> None:
    """Answer 503 on a connection whose request was not read, and close it."""
    with contextlib.suppress(OSError):
        sock.settimeout(1.0)
        sock.sendall(REFUSAL)
    with contextlib.suppress(OSError):
        sock.close()
