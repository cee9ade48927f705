"""``iterative``: accept one connection, serve it until it closes, then accept the next.

Everything runs on the process's main thread; other clients wait in the
kernel's listen backlog. The first rung of the notes' Python journey.
"""

from __future__ import annotations

import socket

from simlab.real.blocking import Context, accept_loop, handle_connection, run
from simlab.real.options import ServerOptions

__all__ = ["serve"]


def serve(listener: socket.socket, opts: ServerOptions) -> None:
    run(listener, opts, _serve)


def _serve(listener: socket.socket, opts: ServerOptions, ctx: Context) -> None:
    accept_loop(listener, ctx, lambda sock: handle_connection(sock, ctx))
