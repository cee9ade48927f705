"""Running one real server: the listening socket, pre-forked copies, signals, and readiness.

``run_server`` binds, forks ``processes`` copies when asked (each serving the
shared socket, or, for ``async``, its own SO_REUSEPORT socket), prints
``READY <port>`` once connections can be made, and serves until SIGTERM or
SIGINT. The master of a pre-forked server forwards the signal and reaps
every copy, so nothing is left behind.

``python -m simlab.real.runner MODEL --backend-port P [...]`` is how
``simlab measure`` starts a server in a process of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import socket
import sys
import threading
import time
from types import FrameType, ModuleType
from typing import NoReturn

from simlab.real.blocking import STOP_SIGNALS
from simlab.real.limits import raise_fd_limit
from simlab.real.options import SERVER_MODELS, ServerOptions
from simlab.real.processes import exit_after
from simlab.real.protocol import PARSERS
from simlab.registry import entry

__all__ = ["main", "run_server"]

KILL_AFTER_S = 10.0


def _listener(opts: ServerOptions, port: int, *, reuse_port: bool, listen: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((opts.host, port))
    if listen:
        sock.listen(opts.listen_backlog)
    return sock


def serve_here(listener: socket.socket, opts: ServerOptions) -> None:
    """Serve in this process until a stop signal, with the model's real twin."""
    if opts.stack_kib:
        threading.stack_size(opts.stack_kib * 1024)
    server_module(opts).serve(listener, opts)


def server_module(opts: ServerOptions) -> ModuleType:
    """The model's real twin, imported (once: a pre-forked master imports it
    before it forks, so every copy starts with it)."""
    return importlib.import_module(f"simlab.real.{entry(opts.model).server}")


def run_server(opts: ServerOptions) -> None:
    raise_fd_limit()
    if opts.switch_interval is not None:
        # Before any thread or fork: every copy and thread inherits it.
        sys.setswitchinterval(opts.switch_interval)
    per_process = opts.model == "async" and opts.processes > 1
    # For SO_REUSEPORT copies, the master only holds the port (bound, not
    # listening, so the kernel never queues a connection on it).
    master = _listener(opts, opts.port, reuse_port=per_process, listen=not per_process)
    port = master.getsockname()[1]
    # However it ends (a stop signal once the copies serve, a failed fork,
    # the server's own error), the port is let go and every copy made is
    # stopped. (A signal during the forks themselves, before the handler is
    # set, ends the master at once; whoever started it stops its group.)
    children: set[int] = set()
    try:
        if opts.processes == 1:
            print(f"READY {port}", flush=True)
            serve_here(master, opts)
            return
        # The copies are forks of a master that has imported the server, as
        # the model's pre-forked copies are (``Platform``: fork_kib each, not
        # a whole interpreter) and as a server that preloads its application
        # makes them: imported in each copy after the fork, it cost a copy
        # about 1.4 MiB of PSS more (async, 1,000 connections at 300/s, 5
        # December).
        server_module(opts)
        for _ in range(opts.processes):
            pid = os.fork()
            if pid == 0:
                _serve_copy(master, port, opts, per_process=per_process)
            children.add(pid)
        stopping = threading.Event()

        def stop(signum: int, frame: FrameType | None) -> None:
            stopping.set()

        for sig in STOP_SIGNALS:
            signal.signal(sig, stop)
        print(f"READY {port}", flush=True)
        while not stopping.is_set() and children:
            with contextlib.suppress(ChildProcessError):
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if pid:
                    children.discard(pid)
            stopping.wait(0.2)
    finally:
        _stop_children(children)
        master.close()


def _serve_copy(
    master: socket.socket, port: int, opts: ServerOptions, *, per_process: bool
) -> NoReturn:
    """A forked copy: serve until stopped, then exit (``exit_after``)."""

    def serve() -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        sock = master
        if per_process:
            sock = _listener(opts, port, reuse_port=True, listen=True)
            master.close()
        serve_here(sock, opts)

    exit_after(serve)


def _stop_children(children: set[int]) -> None:
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + KILL_AFTER_S
    while children and time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid:
            children.discard(pid)
        else:
            time.sleep(0.02)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="simlab-server", description="run one simlab server")
    p.add_argument("model", choices=SERVER_MODELS)
    p.add_argument("--backend-port", type=int, required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--workers", type=int, default=32)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--backlog", type=int, default=None)
    p.add_argument("--request-timeout", type=float, default=10.0)
    p.add_argument("--stack-kib", type=int, default=0)
    p.add_argument("--uvloop", action="store_true")
    p.add_argument("--parser", choices=PARSERS, default="h11")
    p.add_argument("--max-inflight", type=int, default=None)
    p.add_argument("--queue-deadline-ms", type=float, default=None)
    p.add_argument("--offload", action="store_true")
    p.add_argument("--kernel-backlog", action="store_true")
    p.add_argument("--switch-interval-ms", type=float, default=None)
    p.add_argument("--close-waits", default=None, metavar="PATH")
    a = p.parse_args(argv)
    opts = ServerOptions(
        model=a.model,
        backend_port=a.backend_port,
        port=a.port,
        workers=a.workers,
        processes=a.processes,
        backlog=a.backlog,
        request_timeout=a.request_timeout,
        stack_kib=a.stack_kib,
        uvloop=a.uvloop,
        parser=a.parser,
        max_inflight=a.max_inflight,
        queue_deadline=None if a.queue_deadline_ms is None else a.queue_deadline_ms / 1e3,
        offload=a.offload,
        kernel_backlog=a.kernel_backlog,
        switch_interval=None if a.switch_interval_ms is None else a.switch_interval_ms / 1e3,
        close_waits=a.close_waits,
    )
    run_server(opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
