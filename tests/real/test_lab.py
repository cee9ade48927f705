"""The real lab end to end: load generator, measure, serve and memory, on loopback."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time

import psutil
import pytest

from simlab import Architecture, Workload
from simlab.distributions import Exponential, Fixed
from simlab.real import loadgen
from simlab.real.measure import MeasureOptions, build_queries, measure
from simlab.real.memory import measure_memory
from simlab.real.processes import Managed, free_port, port_is_free
from simlab.real.speed import WORK
from tests.real.conftest import request, start_server

pytestmark = [pytest.mark.real, pytest.mark.timeout(240)]

SIM_KEYS = {
    "model",
    "throughput_rps",
    "latency_ms",
    "queue_delay_ms",
    "threads",
    "memory_mib",
    "cpu_utilization",
    "dropped",
    "completed",
    "stable",
}


@pytest.mark.parametrize("host", ["10.1.2.3", "8.8.8.8", "192.168.0.1", "::ffff:8.8.8.8"])
def test_loadgen_refuses_targets_off_loopback(host: str) -> None:
    with pytest.raises(ValueError, match="outside loopback"):
        loadgen.LoadSpec(host=host, port=80, connections=1, queries=("cpu_ms=0",), rate=1.0)


def test_loadgen_process_refuses_too(tmp_path) -> None:
    spec = {"host": "10.0.0.7", "port": 80, "connections": 1, "queries": ["cpu_ms=0"], "rate": 1.0}
    proc = subprocess.run(
        [sys.executable, "-m", "simlab.real.loadgen", "-"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "outside loopback" in proc.stderr


def test_loadgen_is_bounded_and_counts(backend: Managed, tmp_path) -> None:
    dump = tmp_path / "requests.csv"
    with start_server("async", backend.port) as server:
        spec = loadgen.LoadSpec(
            host="127.0.0.1",
            port=server.port,
            connections=20,
            queries=("cpu_ms=0.2&io_ms=5&calls=1",),
            rate=400.0,
            warmup=0.5,
            duration=2.0,
            max_requests=300,
            requests_out=str(dump),
        )
        t0 = time.monotonic()
        report = loadgen.run(spec)
        took = time.monotonic() - t0
    assert took < 20
    assert report["sent"] == 300  # the request cap, well before 400/s x 2.5 s
    assert report["connections"]["opened"] == 20
    assert report["errors"]["timeouts"] == 0
    # The opt-in dump: every answered request, warm-up included, with the
    # intended times the arrivals gave (``open_arrivals``).
    lines = dump.read_text().splitlines()
    assert lines[0] == "intended_s,latency_s,connection,status"
    rows = [line.split(",") for line in lines[1:]]
    assert len(rows) == 300
    times, conns = loadgen.open_arrivals(spec)
    got = sorted((float(r[0]), int(r[2])) for r in rows)
    want = sorted(zip(times[:300], conns[:300], strict=True))
    assert [t for t, _ in got] == pytest.approx([t for t, _ in want], abs=1e-5)
    assert [k for _, k in got] == [k for _, k in want]
    assert all(float(r[1]) > 0 and r[3] == "200" for r in rows)


def test_queries_carry_the_workload() -> None:
    w = Workload(connections=1, rate=1.0, cpu=Exponential(0.002), io=Exponential(0.01), calls=3)
    qs = build_queries(w, seed=3, count=100)
    assert len(qs) == 100
    assert qs == build_queries(w, seed=3, count=100)
    assert all(q.count(",") == 2 for q in qs)  # one latency per call
    fixed = build_queries(Workload(connections=1, rate=1.0), seed=3, count=100)
    assert fixed == ("cpu_ms=1.000&io_ms=50.000&calls=1&fanout=sequential",)


def _no_leftovers(before: set[int]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = {p.pid for p in psutil.Process().children(recursive=True)} - before
        if not children:
            return
        time.sleep(0.2)
    raise AssertionError(f"processes left behind: {children}")


@pytest.mark.parametrize("target", ["async", "reactor-pool", "thread-per-connection", "uvicorn"])
def test_measure_matches_the_contract_and_littles_law(tmp_path, target: str) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    w = Workload(connections=200, rate=100.0, cpu=Fixed(0.001), io=Fixed(0.02))
    result = measure(
        MeasureOptions(
            target, w, Architecture(workers=8), duration=4.0, warmup=1.0, out_dir=tmp_path
        )
    )
    s = result.to_dict()
    assert set(s) >= SIM_KEYS
    assert s["engine"] == "real"
    assert s["stable"], s["stability"]
    assert s["offered_rps"] == pytest.approx(100, rel=0.25)
    assert s["throughput_rps"] == pytest.approx(s["offered_rps"], rel=0.1)
    # The work is 21 ms; the median may not be under it.
    assert s["latency_ms"]["p50"] >= 21.0
    # Little's law between two independent measurements: the sampled number
    # in flight and throughput x mean latency. Both are noisy over 4 s; 15%.
    assert s["little"]["rel_error"] < 0.15
    if target == "thread-per-connection":
        # 200 threads held still: every thread's switches are read, each
        # request waking its connection's thread at least once, where the
        # per-process count sees the accepting main thread's alone.
        threads = s["thread_switches_per_s"]
        assert threads is not None
        assert threads["voluntary"] >= 0.9 * s["throughput_rps"]
        assert threads["voluntary"] > s["context_switches_per_s"]["voluntary"]
        # And their waits for a core: each request's thread ran at least
        # once on one, and the machine was busy (the lab's processes too)
        # but not full at 100/s.
        rq = s["run_queue"]
        assert rq is not None and rq["slices_per_request"] >= 1
        assert rq["wait_ms_per_request"] >= 0 and 0 < rq["machine_busy_cores"] < psutil.cpu_count()
        assert rq["shared_queue_ms_per_request"] is not None
    assert result.saved_to is not None and result.saved_to.parent == tmp_path
    saved = json.loads(result.saved_to.read_text())
    assert saved["summary"]["seed"] == 1
    assert saved["summary"]["machine"]["cores"] >= 1
    # The machine's speed, measured before and after the run (simlab.real.speed).
    speed = saved["summary"]["speed_reference"]
    assert speed["before_ops_s"] > 0 and speed["after_ops_s"] > 0 and speed["work"] == WORK
    # And inside the run (SpeedWatch): its speed, its slowest reading, the longest stall.
    assert speed["during_ops_s"] >= speed["during_min_ops_s"] > 0
    assert speed["stall_max_ms"] >= 0 and speed["steal_cores"] >= 0
    assert s["speed_reference"] == speed
    _no_leftovers(before)


def test_measure_with_the_timer_pacing_keeps_the_contract(tmp_path) -> None:
    # The load generator on the monotonic clock and a timerfd
    # (``simlab.real.pacing``): the same run's contract, and its pacing said.
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    w = Workload(connections=50, rate=100.0, cpu=Fixed(0.001), io=Fixed(0.02))
    opts = MeasureOptions("reactor-pool", w, Architecture(workers=8), duration=3.0, warmup=1.0,
                          out_dir=tmp_path, pacing="timer")  # fmt: skip
    s = measure(opts).to_dict()
    assert s["stable"], s["stability"]
    assert s["throughput_rps"] == pytest.approx(s["offered_rps"], rel=0.1)
    assert s["latency_ms"]["p50"] >= 21.0  # never under the work: sends are not early
    assert s["little"]["rel_error"] < 0.15
    assert s["send_delay_ms"]["pacing"] == "timer"
    _no_leftovers(before)


def test_measure_refuses_what_cannot_fit() -> None:
    w = Workload(connections=60_000, rate=10.0)
    with pytest.raises(ValueError, match="connections"):
        measure(MeasureOptions("async", w, Architecture(), duration=1.0, sources=1, save=False))


def test_serve_stops_cleanly_on_sigterm() -> None:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "simlab",
        "serve",
        "thread-pool",
        "--port",
        str(port),
        "--workers",
        "3",
        "--processes",
        "2",
    ]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().startswith("READY")
            assert b" 200 " in request(port)
            tree = psutil.Process(proc.pid).children(recursive=True)
            assert len(tree) >= 3  # the backend and two server copies
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for child in tree:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert port_is_free(port)


def test_memory_units_are_per_unit_slopes() -> None:
    # The kernel laws have a test of their own (test_forklaw.py).
    result = measure_memory((50, 250), stack_kib=256, kernel_laws=False)
    per = result["per_unit_kib"]
    # Each thread reserves its 256 KiB stack plus a guard page and glibc's
    # per-thread area (tens of KiB), instead of the default 8 MiB.
    assert 256 < per["thread"]["vms"] < 256 + 64
    assert 4 < per["thread"]["uss"] < 64
    assert 0 < per["coroutine"]["uss"] < 8
    assert per["fork"]["uss"] > 100
    assert result["timings"]["fork_exit_wait_us"] > 0
    # The parent's os.fork() call is a part of the fork's cycle (fork_child_us).
    assert 0 < result["timings"]["fork_parent_us"] < result["timings"]["fork_exit_wait_us"]


def test_backend_holds_ten_thousand_pending_calls(backend: Managed) -> None:
    # 10,000 calls of 1 s over 20 connections, all in flight at once: every
    # one is answered about 1 s later, and the backend stays small.
    async def run() -> float:
        conns = [await asyncio.open_connection("127.0.0.1", backend.port) for _ in range(20)]
        t0 = time.monotonic()
        for k, (_, writer) in enumerate(conns):
            writer.write(b"".join(b"%d 1000000\n" % (k * 500 + j) for j in range(500)))
        answered = 0
        for reader, _ in conns:
            for _ in range(500):
                await reader.readline()
                answered += 1
        took = time.monotonic() - t0
        for _, writer in conns:
            writer.close()
        assert answered == 10_000
        return took

    rss_before = psutil.Process(backend.pid).memory_info().rss
    took = asyncio.run(run())
    assert 1.0 <= took < 5.0
    grew = psutil.Process(backend.pid).memory_info().rss - rss_before
    assert grew < 64 * 2**20  # well under 6.4 KiB per pending call


def test_a_window_opened_while_the_children_are_forked_is_not_steady(tmp_path) -> None:
    """process-per-connection forks a child for each of its 300 connections
    as the load starts, which takes it a second or more here: a window opened
    at once sees its count of children still rising, and says so."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    w = Workload(connections=300, rate=100.0, cpu=Fixed(0.001), io=Fixed(0.01))
    opts = MeasureOptions("process-per-connection", w, Architecture(), duration=2.0, warmup=0.0,
                          save=False)  # fmt: skip
    s = measure(opts).summary.to_dict()
    assert s["threads"]["mean"] < s["threads"]["peak"], s["threads"]
    assert not s["stable"]
    assert any("still making its threads" in why for why in s["stability"]["reasons"]), s
    _no_leftovers(before)
