"""``thread-per-connection``: the main thread accepts and starts a thread per connection.

Each thread blocks in ``recv`` on its own client for as long as the client
stays connected, so 10,000 idle connections are 10,000 threads.
"""

from __future__ import annotations

import socket
import threading
import time

from simlab.real.blocking import Context, accept_loop, handle_connection, run
from simlab.real.options import ServerOptions

__all__ = ["serve"]

JOIN_TIMEOUT_S = 10.0


def serve(listener: socket.socket, opts: ServerOptions) -> None:
    run(listener, opts, _serve)


def _serve(listener: socket.socket, opts: ServerOptions, ctx: Context) -> None:
    threads: set[threading.Thread] = set()
    lock = threading.Lock()

    def run(sock: socket.socket) -> None:
        try:
            handle_connection(sock, ctx)
        finally:
            with lock:
                threads.discard(threading.current_thread())

    def on_conn(sock: socket.socket) -> None:
        t = threading.Thread(target=run, args=(sock,), daemon=True, name="conn")
        with lock:
            threads.add(t)
        try:
            t.start()
        except RuntimeError:  # can't start new thread: out of memory or limits
            with lock:
                threads.discard(t)
            sock.close()

    try:
        accept_loop(listener, ctx, on_conn)
    finally:
        ctx.wake_all()
        with lock:
            remaining = list(threads)
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for t in remaining:
            t.join(max(0.0, deadline - time.monotonic()))
