"""``two-tier``: an asyncio front buffers every connection; a forked back pool works.

The Python twin of nginx + PHP-FPM (the real peers in ``simlab.real.peers``
are the notes' own systems). Before the loop starts, the server forks
``processes`` back processes of ``workers`` threads each, all accepting on
one Unix listening socket whose queue is ``backlog`` long (PHP-FPM's
``listen.backlog``). The front loop reads each whole request, opens a
connection to the back per request (nginx's default), sends the work as one
line, reads the answer line and writes the HTTP answer. A back thread is
held only for the work. When the back's listen queue is full the connect
fails at once (EAGAIN) and the front drops the request: it closes the client
connection, where nginx would answer 502.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import tempfile
import threading
from pathlib import Path

from simlab.real.aio import HttpProtocol, serve_app
from simlab.real.options import ServerOptions
from simlab.real.process_per_connection import _terminate
from simlab.real.processes import exit_after
from simlab.real.protocol import WorkRequest
from simlab.real.work import BlockingBackend, run_blocking

__all__ = ["FrontApp", "serve"]

LINE_LIMIT = 65536


def _encode(request: WorkRequest) -> bytes:
    io = ",".join(f"{ms:g}" for ms in request.io_ms) or "-"
    return f"{request.cpu_ms:g} {io} {request.fanout}\n".encode()


def _decode(line: bytes) -> WorkRequest:
    cpu, io, fanout = line.decode().split()
    delays = () if io == "-" else tuple(float(x) for x in io.split(","))
    return WorkRequest(cpu_ms=float(cpu), io_ms=delays, fanout=fanout)


def _back_thread(back: socket.socket, backend: BlockingBackend) -> None:
    """One back worker: accept a hop, do its work, answer, close; until the socket closes."""
    while True:
        try:
            conn, _ = back.accept()
        except OSError:
            return
        with conn, conn.makefile("rwb") as fh:
            line = fh.readline(LINE_LIMIT)
            if not line:
                continue
            service_us = run_blocking(_decode(line), backend)
            fh.write(f"{service_us}\n".encode())
            fh.flush()


def _back_process(back: socket.socket, opts: ServerOptions) -> None:
    """A back process: T threads on the shared listen queue until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    backend = BlockingBackend(opts.backend_port)
    for _ in range(opts.workers):
        threading.Thread(target=_back_thread, args=(back, backend), daemon=True).start()
    stop.wait()
    backend.close_all()


class FrontApp:
    """The front: every connection on one loop, each request over its own hop."""

    def __init__(self, opts: ServerOptions, path: str) -> None:
        self.request_timeout = opts.request_timeout
        self.parser = opts.parser
        self.protocols: set[HttpProtocol] = set()
        self.path = path

    def overloaded(self) -> bool:
        return False  # the back's listen queue decides, at connect time

    def run(self, request: WorkRequest) -> asyncio.Future[int]:
        return asyncio.ensure_future(self._hop(request))

    async def _hop(self, request: WorkRequest) -> int:
        # A full listen queue fails the connect at once (EAGAIN): a drop.
        reader, writer = await asyncio.open_unix_connection(self.path, limit=LINE_LIMIT)
        try:
            writer.write(_encode(request))
            await writer.drain()
            return int(await reader.readline())
        finally:
            writer.close()

    async def close(self) -> None:
        return None


def serve(listener: socket.socket, opts: ServerOptions) -> None:
    workdir = tempfile.mkdtemp(prefix="simlab-two-tier-")
    path = str(Path(workdir) / "back.sock")
    back = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    children: set[int] = set()
    try:
        back.bind(path)
        back.listen(opts.listen_backlog)
        for _ in range(opts.processes):
            pid = os.fork()
            if pid == 0:

                def back_process() -> None:
                    listener.close()  # the back only accepts from the front
                    _back_process(back, opts)

                exit_after(back_process)
            children.add(pid)
        back.close()  # the front only connects

        async def main() -> None:
            await serve_app(listener, FrontApp(opts, path), opts.listen_backlog)

        asyncio.run(main())
    finally:
        _terminate(children)
        with contextlib.suppress(OSError):
            back.close()
        shutil.rmtree(workdir, ignore_errors=True)
