"""``process-per-connection``: the accepting process forks a child for each connection.

The child serves the connection and exits; the parent closes its copy of the
socket, reaps finished children as it goes, and on shutdown terminates and
reaps every child so that none is orphaned.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time

from simlab.real.blocking import Context, accept_loop, handle_connection, run
from simlab.real.options import ServerOptions
from simlab.real.processes import exit_after

__all__ = ["serve"]

KILL_AFTER_S = 5.0


def _reap(children: set[int]) -> None:
    while children:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        children.discard(pid)


def serve(listener: socket.socket, opts: ServerOptions) -> None:
    run(listener, opts, _serve)


def _serve(listener: socket.socket, opts: ServerOptions, ctx: Context) -> None:
    children: set[int] = set()

    def on_conn(sock: socket.socket) -> None:
        _reap(children)
        try:
            pid = os.fork()
        except OSError:
            sock.close()  # out of processes or memory: refuse this one
            return
        if pid == 0:

            def serve() -> None:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                listener.close()
                child = Context(
                    backend=ctx.backend, request_timeout=ctx.request_timeout, parser=ctx.parser
                )
                handle_connection(sock, child)

            exit_after(serve)
        children.add(pid)
        sock.close()

    try:
        # Finished children are reaped as connections arrive and, when none
        # do, every accept poll, so no zombie outlives its connection long.
        accept_loop(listener, ctx, on_conn, on_idle=lambda: _reap(children))
    finally:
        _terminate(children)


def _terminate(children: set[int]) -> None:
    for pid in list(children):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + KILL_AFTER_S
    while children and time.monotonic() < deadline:
        _reap(children)
        time.sleep(0.01)
    for pid in list(children):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    children.clear()
