"""``thread-pool``: W worker threads; each takes a connection and owns it until it closes.

The main thread accepts into a FIFO of connections waiting for a worker; a
free worker takes the oldest and serves every request on it, idle keep-alive
gaps included. ``backlog`` bounds how many may wait: one more is refused
(closed at once).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque

from simlab.real.blocking import Context, accept_loop, handle_connection, run
from simlab.real.options import ServerOptions

__all__ = ["serve"]

POLL_S = 0.25
JOIN_TIMEOUT_S = 10.0


class _Waiting:
    """Connections waiting for a worker, and how many workers are idle."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.socks: deque[socket.socket] = deque()
        self.idle = 0


def serve(listener: socket.socket, opts: ServerOptions) -> None:
    run(listener, opts, _serve)


def _serve(listener: socket.socket, opts: ServerOptions, ctx: Context) -> None:
    w = _Waiting()

    def worker() -> None:
        while True:
            with w.cond:
                w.idle += 1
                while not w.socks and not ctx.stop.is_set():
                    w.cond.wait(POLL_S)
                w.idle -= 1
                if ctx.stop.is_set():
                    return
                sock = w.socks.popleft()
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
            if opts.backlog is not None and len(w.socks) + 1 - w.idle > opts.backlog:
                sock.close()  # refused: the backlog is full
                return
            w.socks.append(sock)
            w.cond.notify()

    try:
        accept_loop(listener, ctx, on_conn)
    finally:
        ctx.wake_all()
        with w.cond:
            for sock in w.socks:
                sock.close()
            w.socks.clear()
            w.cond.notify_all()
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for t in workers:
            t.join(max(0.0, deadline - time.monotonic()))
