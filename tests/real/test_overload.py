"""The real lab's overload controls on loopback: concurrency limits and queue
deadlines answer 503, a blocking call holds an async loop unless offloaded, an
auction's deadline and hedging, the backend's pool, and a full listen backlog
that drops SYNs the client's kernel retransmits after 1 s."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

import simlab
from simlab.real.measure import MeasureOptions, measure
from simlab.real.processes import Managed, port_is_free, python
from simlab.scenario import build
from tests.real.conftest import start_server

pytestmark = [pytest.mark.real, pytest.mark.timeout(120)]


def get(port: int, query: str, results: dict[int, tuple[int, float, bytes]], k: int) -> None:
    """One request on a new connection: (status, seconds, raw answer) in ``results[k]``."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(f"GET /work?{query} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith((b"ok", b"overloaded")):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    results[k] = (int(data.split(b" ", 2)[1]), time.monotonic() - t0, data)


def together(port: int, queries: list[str], gap: float = 0.05) -> list[tuple[int, float, bytes]]:
    """The queries at once (``gap`` apart, in order), each on its own connection."""
    results: dict[int, tuple[int, float, bytes]] = {}
    threads = []
    for k, q in enumerate(queries):
        t = threading.Thread(target=get, args=(port, q, results, k))
        t.start()
        threads.append(t)
        time.sleep(gap)
    for t in threads:
        t.join(30)
    return [results[k] for k in range(len(queries))]


@pytest.mark.parametrize("model", ["thread-pool", "reactor-pool", "async"])
def test_the_concurrency_limit_answers_503_at_once(backend: Managed, model: str) -> None:
    with start_server(model, backend.port, "--max-inflight", "2") as server:
        out = together(server.port, ["io_ms=600&calls=1"] * 4)
    assert [code for code, _, _ in out] == [200, 200, 503, 503]
    assert all(took < 0.3 for code, took, _ in out if code == 503)


@pytest.mark.parametrize("model", ["thread-pool", "reactor-pool"])
def test_a_request_past_the_queue_deadline_is_503_without_the_work(
    backend: Managed, model: str
) -> None:
    # Four workers busy 800 ms each: the fifth, sent 200 ms after the first
    # (50 ms apart, so that they reach the server in order on a busy
    # machine), waits about 600 ms for one, past a 200 ms deadline. It is
    # answered when a worker takes it, not at its deadline: 0.4 s splits the
    # two with 200 ms either side (20 ms gaps and 500 ms of work left 20 ms).
    with start_server(model, backend.port, "--queue-deadline-ms", "200") as server:
        out = together(server.port, ["io_ms=800&calls=1"] * 5)
    assert [code for code, _, _ in out] == [200] * 4 + [503]
    assert 0.4 < out[4][1] < 1.4  # answered when a worker took it


def test_a_blocking_call_holds_the_loop_unless_offloaded(backend: Managed) -> None:
    queries = ["block_ms=600&calls=0", "cpu_ms=0&calls=0"]
    with start_server("async", backend.port) as server:
        held = together(server.port, queries)
    with start_server("async", backend.port, "--offload") as server:
        free = together(server.port, queries)
    assert held[1][1] > 0.45  # waited for the blocking call to end
    assert free[1][1] < 0.3
    assert all(code == 200 for code, _, _ in held + free)


@pytest.mark.parametrize("model", ["async", "reactor-pool"])
def test_an_auction_keeps_the_bids_it_has_by_the_deadline(backend: Managed, model: str) -> None:
    with start_server(model, backend.port) as server:
        out = together(
            server.port,
            [
                "io_ms=10,500,900&calls=3&fanout=parallel&deadline_ms=200",
                "io_ms=10,100,150&calls=3&fanout=sequential&deadline_ms=200",
                "io_ms=900&calls=1&hedge_ms=100&hedge_io_ms=20",
            ],
        )
    (c1, t1, d1), (c2, t2, d2), (c3, t3, d3) = out
    assert (c1, c2, c3) == (200, 200, 200)
    assert b"x-bids: 1/3" in d1 and 0.18 < t1 < 0.5
    assert b"x-bids: 2/3" in d2 and 0.18 < t2 < 0.5  # the third call is cut at 200 ms
    assert b"x-bids: 1/1" in d3 and t3 < 0.5  # the hedge (20 ms) answers first


def test_the_backend_pool_serves_k_calls_at_once() -> None:
    with Managed([python(), "-m", "simlab.real.backend", "--pool", "1"], name="backend") as b:
        socks = [socket.create_connection(("127.0.0.1", b.port), timeout=5) for _ in range(2)]
        t0 = time.monotonic()
        for k, s in enumerate(socks):
            s.sendall(b"%d 300000\n" % k)
        took = []
        for s in socks:
            assert s.recv(64).strip().isdigit()
            took.append(time.monotonic() - t0)
            s.close()
    assert took[0] < 0.45 and took[1] > 0.55  # the second waited for the slot
    assert port_is_free(b.port)


def test_a_full_listen_backlog_drops_the_syn_and_the_kernel_retries_after_1_s(
    backend: Managed,
) -> None:
    # One worker, a kernel queue of one: the worker holds the first connection
    # (600 ms of work), the second waits in the queue, the third's SYN is
    # dropped and retransmitted 1 s later, when there is room again.
    with start_server(
        "thread-pool", backend.port, "--workers", "1", "--backlog", "1", "--kernel-backlog"
    ) as server:
        out = together(server.port, ["io_ms=600&calls=1"] * 3, gap=0.1)
    (c1, t1, _), (c2, t2, _), (c3, t3, _) = out
    assert (c1, c2, c3) == (200, 200, 200)
    assert t1 < 0.9 and t2 < 1.5
    assert t3 > 1.0  # its first SYN went unanswered for a whole second


def test_measure_reports_the_timeline_with_the_simulation_keys() -> None:
    s = build(
        {
            "rate": "40/s for 3s, 120/s for 2s, 40/s for 3s",
            "requests_per_connection": 1,
            "connections": 1000,
            "workers": 4,
            "io_ms": 20.0,
            "timeout_ms": 500.0,
            "retries": 1,
            "warmup": 1.0,
            "replications": 1,
        }
    )
    real = measure(
        MeasureOptions(
            "thread-pool", s.workload, s.architecture, duration=s.run.duration, warmup=1.0,
            save=False,
        )
    ).summary  # fmt: skip
    sim = simlab.simulate("thread-pool", s.workload, s.platform, s.architecture, **s.run.kwargs())
    a, b = json.loads(real.to_json()), json.loads(sim.summary.to_json())
    assert set(a["overload"]) == set(b["overload"])
    assert len(a["timeline"]) == len(b["timeline"]) == 8
    assert set(a["timeline"][0]) == set(b["timeline"][0])
    assert sum(w["offered_rps"] for w in a["timeline"]) == pytest.approx(
        sum(w["offered_rps"] for w in b["timeline"]), rel=0.25
    )
