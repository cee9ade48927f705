"""Edge cases found in review: backlogs under bursts, 503 with Connection: close, slow
trickles, shutdown with calls in flight, and simlab measure stopped by a signal."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from simlab.real.options import SERVER_MODELS
from simlab.real.processes import Managed
from tests.procs import outlive
from tests.real.conftest import RUN_MODULES, measurement_processes, start_server

pytestmark = [pytest.mark.real, pytest.mark.timeout(120)]


def _burst(port: int, count: int, query: bytes, *, close: bool = False) -> list[int]:
    """``count`` requests on separate connections at once; their status codes."""
    header = b"Connection: close\r\n" if close else b""
    raw = b"GET /work?" + query + b" HTTP/1.1\r\nHost: t\r\n" + header + b"\r\n"
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
    for s in socks:
        s.sendall(raw)
    codes = []
    for s in socks:
        codes.append(int(s.recv(4096).split(b" ", 2)[1]))
        s.close()
    return sorted(codes)


def test_async_backlog_bounds_a_burst(backend: Managed) -> None:
    with start_server("async", backend.port, "--backlog", "2") as server:
        codes = _burst(server.port, 10, b"cpu_ms=0&io_ms=400&calls=1")
    assert codes == [200] * 2 + [503] * 8


def test_reactor_backlog_counts_idle_workers(backend: Managed) -> None:
    # Four workers take four at once, one more may wait, the rest are refused.
    with start_server("reactor-pool", backend.port, "--backlog", "1") as server:
        codes = _burst(server.port, 8, b"cpu_ms=0&io_ms=400&calls=1")
    assert codes == [200] * 5 + [503] * 3


def test_503_with_connection_close_hangs_up(backend: Managed) -> None:
    with (
        start_server("async", backend.port, "--backlog", "0") as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as s,
    ):
        s.sendall(b"GET /work?calls=0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):  # EOF ends the loop; a timeout fails the test
            data += chunk
    assert b" 503 " in data


@pytest.mark.parametrize("model", ["thread-pool", "iterative", "async"])
def test_a_trickling_request_is_cut_off_at_the_request_timeout(
    backend: Managed, model: str
) -> None:
    # One header line every 0.5 s: the server's 2 s limit is for the whole rest
    # of the request, not for each gap.
    with (
        start_server(model, backend.port) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as s,
    ):
        t0 = time.monotonic()
        s.sendall(b"GET /work?calls=0 HTTP/1.1\r\n")
        closed_at = None
        for k in range(16):
            time.sleep(0.5)
            try:
                s.sendall(b"X-Slow-%d: 1\r\n" % k)
            except OSError:
                closed_at = time.monotonic() - t0
                break
        if closed_at is None:
            try:
                closed = s.recv(1) == b""
            except OSError:
                closed = True
            closed_at = time.monotonic() - t0 if closed else None
    assert closed_at is not None and closed_at < 5.0


@pytest.mark.parametrize("model", ["thread-per-connection", "thread-pool", "reactor-pool"])
def test_sigterm_does_not_wait_for_calls_in_flight(backend: Managed, model: str) -> None:
    server = start_server(model, backend.port)
    try:

        def slow() -> None:
            try:
                with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
                    s.sendall(b"GET /work?io_ms=20000&calls=1 HTTP/1.1\r\nHost: t\r\n\r\n")
                    s.recv(4096)
            except OSError:
                pass

        threads = [threading.Thread(target=slow) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(30)
        assert time.monotonic() - t0 < 5.0
        for t in threads:
            t.join(10)
    finally:
        server.stop()


def test_measure_stopped_by_sigterm_leaves_nothing_behind() -> None:
    argv = [
        sys.executable,
        "-m",
        "simlab",
        "measure",
        "async",
        "--connections",
        "50",
        "--rate",
        "50",
        "--duration",
        "30",
        "--no-save",
    ]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        # Up to the machine-wide real-run lock's wait, if another run holds it.
        deadline = time.monotonic() + 90
        tree = measurement_processes(proc.pid)
        while time.monotonic() < deadline and len(tree) < len(RUN_MODULES):
            time.sleep(0.2)
            tree = measurement_processes(proc.pid)
        assert len(tree) == len(RUN_MODULES), tree
        time.sleep(0.5)  # into the load, past the start-up
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    left = outlive(tree, 10)
    assert not left, left


def _listen_queues(port: int) -> list[int]:
    """The listen queue of every socket listening on ``port`` (``ss``'s Send-Q)."""
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return [int(line.split()[2]) for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize("model", SERVER_MODELS)
def test_a_server_listens_with_the_queue_it_was_given(backend: Managed, model: str) -> None:
    # asyncio's create_server listens on a socket again, with a queue of 100
    # unless told: the loop servers dropped the SYNs of the load generator's
    # 256 connects at a time, each sent again a second later (about 1 s added
    # to the start of every measured run, and to bursts of new connections).
    want = min(4096, int(Path("/proc/sys/net/core/somaxconn").read_text()))
    with start_server(model, backend.port) as server:
        assert _listen_queues(server.port) == [want]
