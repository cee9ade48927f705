"""Real-socket tier: servers, backend and load on loopback, bounded in time.

Every process a test starts is stopped by the fixture that started it, by
process id (``Managed``), and its port is checked free afterwards.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import psutil
import pytest

from simlab.real.processes import Managed, port_is_free, python

# The processes a measurement starts (``simlab measure``), by the module each runs.
RUN_MODULES = ("simlab.real.backend", "simlab.real.runner", "simlab.real.loadgen")


def measurement_processes(pid: int) -> list[psutil.Process]:
    """The backend, server and load generator found under ``pid`` so far, by
    the modules they run: a count of children would also count a short-lived
    ``ss`` or ``git`` the run calls (CI once saw three children before the
    load had started)."""
    found: dict[str, psutil.Process] = {}
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            argv = child.cmdline()
            found.update({m: child for m in RUN_MODULES if m in argv})
    return list(found.values())


GOOD = b"GET /work?cpu_ms=1&calls=0 HTTP/1.1\r\nHost: t\r\n\r\n"


@pytest.fixture(scope="session")
def backend() -> Iterator[Managed]:
    with Managed([python(), "-m", "simlab.real.backend"], name="backend") as b:
        yield b
    assert port_is_free(b.port)


def start_server(model: str, backend_port: int, *extra: str) -> Managed:
    return Managed(
        [
            python(),
            "-m",
            "simlab.real.runner",
            model,
            "--backend-port",
            str(backend_port),
            "--workers",
            "4",
            "--request-timeout",
            "2",
            *extra,
        ],
        name=model,
    )


def request(port: int, raw: bytes = GOOD, timeout: float = 15.0) -> bytes:
    """Send ``raw`` on a new connection and return everything the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
            if b"\r\n\r\n" in b"".join(chunks) and raw == GOOD:
                break
        return b"".join(chunks)


def tree_counts(pid: int) -> tuple[int, int, int]:
    """(threads, fds, processes) of a process and its descendants."""
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    threads = fds = 0
    for p in procs:
        try:
            threads += p.num_threads()
            fds += p.num_fds()
        except psutil.NoSuchProcess:
            continue
    return threads, fds, len(procs)


def settle(pid: int, baseline: tuple[int, int, int], timeout: float = 30.0) -> tuple[int, int, int]:
    """Wait until the tree is back to ``baseline``; returns the last counts seen."""
    deadline = time.monotonic() + timeout
    counts = tree_counts(pid)
    while counts != baseline and time.monotonic() < deadline:
        time.sleep(0.2)
        counts = tree_counts(pid)
    return counts
