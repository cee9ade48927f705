"""The peers in other runtimes: the same /work, the same abuse, Little's law, a clean stop.

Every test here starts its peer itself and stops it by process id; a peer
whose runtime is missing fails with the one line that names its package
(``make test`` installs them), never a skip.
"""

from __future__ import annotations

import json
import math
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from simlab import Architecture, Workload
from simlab.distributions import Fixed
from simlab.real import peers
from simlab.real.measure import MeasureOptions, measure
from simlab.real.peers import build, units
from simlab.real.processes import Managed, free_port, port_is_free
from tests.real.test_robustness import _quick_connects, _reset_mid_request

pytestmark = [pytest.mark.real, pytest.mark.timeout(300)]

NEW_PEERS = ("nginx-php-fpm", "nginx-uwsgi", "tomcat-nio", "java-threads", "go", "node")
# Small pools, so that the abuse below meets them full.
PROCESSES = {"nginx-php-fpm": 4, "nginx-uwsgi": 2}
WORKERS = 4
GOOD = b"GET /work?cpu_ms=1&calls=0 HTTP/1.1\r\nHost: t\r\n\r\n"


def start(name: str, backend_port: int) -> Managed:
    cfg = peers.PeerConfig(
        port=free_port(),
        backend_port=backend_port,
        workers=WORKERS,
        processes=PROCESSES.get(name, 1),
        request_timeout=2.0,
    )
    return peers.start(name, cfg)


def exchange(port: int, raw: bytes, timeout: float = 15.0) -> bytes:
    """Send ``raw`` on a new connection; the one response (or b"" if the server hung up)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    return data
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                ),
                0,
            )
            while len(body) < length:
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
            return head + b"\r\n\r\n" + body
        except ConnectionResetError:
            return data


def counts(pid: int) -> dict[str, int]:
    """Processes, threads and fds of the tree; and threads by name ('conn': a connection's)."""
    root = psutil.Process(pid)
    out = {"processes": 0, "threads": 0, "fds": 0, "conn_threads": 0, "tomcat_exec": 0}
    for p in [root, *root.children(recursive=True)]:
        try:
            out["processes"] += 1
            out["threads"] += p.num_threads()
            out["fds"] += p.num_fds()
            for t in p.threads():
                try:
                    comm = Path(f"/proc/{p.pid}/task/{t.id}/comm").read_text().strip()
                except (FileNotFoundError, ProcessLookupError):
                    # The thread ended between the listing and the read (ESRCH
                    # mid-read): it is gone, and the baseline wait reads again.
                    continue
                out["conn_threads"] += comm == "conn"
                out["tomcat_exec"] += "-exec-" in comm
        except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
            continue
    return out


def steady_counts(pid: int, timeout: float = 15.0) -> dict[str, int]:
    """The tree's counts once they hold still for a second (closed connections reaped)."""
    deadline = time.monotonic() + timeout
    last = counts(pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = counts(pid)
        if now == last:
            return now
        last = now
    return last


# The peers that run on a JVM.
JVM_PEERS = ("java-threads", "tomcat-nio")


def back_to_baseline(name: str, pid: int, base: dict[str, int], timeout: float = 30) -> None:
    """What each runtime lets us assert once the abuse is over.

    Exactly back: processes everywhere, fds everywhere but on a JVM (every
    abusive connection closed; a JVM's fds may end under the baseline, never
    over it), and threads where the pools are fixed (nginx's workers,
    PHP-FPM's static children, uWSGI's pre-spawned threads, Node's loop
    and V8 helpers). The runtime's own pools are excepted: a JVM's compiler
    threads come and go; Tomcat's pool grows up to maxThreads; Go keeps
    every OS thread (M) it ever made, to reuse.
    """
    deadline = time.monotonic() + timeout
    while True:
        now = counts(pid)
        problems = []
        if now["processes"] != base["processes"]:
            problems.append(f"processes {now['processes']} != {base['processes']}")
        if name in JVM_PEERS:
            # A connection left open adds an fd; the JVM also closes files of
            # its own after the baseline (a jar read by a class loaded late),
            # so its count may end under the baseline (seen: 22 against 23).
            if now["fds"] > base["fds"]:
                problems.append(f"fds {now['fds']} > {base['fds']}")
        elif now["fds"] != base["fds"]:
            problems.append(f"fds {now['fds']} != {base['fds']}")
        if name == "java-threads":
            # Every connection's thread has ended; the JVM's own may differ by a few.
            if now["conn_threads"] != 0:
                problems.append(f"{now['conn_threads']} connection threads left")
            if now["threads"] > base["threads"] + 8:
                problems.append(f"threads {now['threads']} > {base['threads']} + 8")
        elif name == "tomcat-nio":
            if now["tomcat_exec"] > WORKERS:
                problems.append(f"{now['tomcat_exec']} pool threads > maxThreads {WORKERS}")
            if now["threads"] > base["threads"] + WORKERS + 8:
                problems.append(f"threads {now['threads']} > pool max")
        elif name == "go":
            # Ms: at most one per core running plus those once blocked in syscalls.
            if now["threads"] > 64:
                problems.append(f"threads {now['threads']} > 64")
        elif now["threads"] != base["threads"]:
            problems.append(f"threads {now['threads']} != {base['threads']}")
        if not problems:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: {'; '.join(problems)}")
        time.sleep(0.2)


BAD_QUERIES = (
    b"cpu_ms=abc",
    b"cpu_ms=-1",
    b"cpu_ms=99999999",
    b"calls=2.5",
    b"fanout=sideways",
    b"io_ms=1,2&calls=3",
    b"colour=blue",
)


def abuse_once(port: int) -> None:
    """One of each bad request, checking the answers (also the warm-up before the baseline)."""
    answer = exchange(port, b"\x00\xff\x13garbage\r\n\r\n")
    assert answer == b"" or b" 400 " in answer, answer[:100]
    big = b"GET /work HTTP/1.1\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\n\r\n"
    answer = exchange(port, big)
    assert answer == b"" or b" 431 " in answer or b" 400 " in answer, answer[:100]
    for bad in BAD_QUERIES:
        answer = exchange(port, b"GET /work?" + bad + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400"), (bad, answer[:100])
    answer = exchange(port, b"GET /elsewhere HTTP/1.1\r\nHost: t\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 404"), answer[:100]
    answer = exchange(port, b"DELETE /work HTTP/1.1\r\nHost: t\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 405"), answer[:100]


@pytest.mark.parametrize("name", NEW_PEERS)
def test_peer_survives_abuse(backend: Managed, name: str) -> None:
    peer = peers.REGISTRY[name]
    with start(name, backend.port) as server:
        port = server.port
        ok = exchange(port, b"GET /work?cpu_ms=2&io_ms=5,10&calls=2 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200") and ok.endswith(b"\r\n\r\nok\n"), ok
        assert b"x-service-us: " in ok.lower()
        abuse_once(port)  # warm-up: classes loaded, pools started, before the baseline
        base = steady_counts(server.pid)

        abuse_once(port)
        back_to_baseline(name, server.pid, base)

        # Half a request, then silence. Where the peer times a stalled request
        # (--request-timeout, 2 s here) it must hang up; the others time a new
        # connection's first request from accept and are given an hour (see
        # Peer.header_timeout), so there the client gives up after 3 s.
        with socket.create_connection(
            ("127.0.0.1", port), timeout=3 + 7 * peer.header_timeout
        ) as s:
            s.sendall(b"GET /work?cpu_ms=1 HTTP/1.1\r\nHo")
            t0 = time.monotonic()
            try:
                leftover = s.recv(1024)
            except (ConnectionResetError, TimeoutError):
                leftover = b"timed out"
            waited = time.monotonic() - t0
        if peer.header_timeout:
            assert leftover == b"" or b" 408 " in leftover or b" 400 " in leftover, leftover
            assert 1.5 <= waited < 10, waited
        back_to_baseline(name, server.pid, base)

        _reset_mid_request(port, 1000)
        back_to_baseline(name, server.pid, base)

        _quick_connects(port, 5000)
        back_to_baseline(name, server.pid, base)
        assert exchange(port, GOOD).startswith(b"HTTP/1.1 200"), f"{name} stopped answering"
        tree = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
    assert port_is_free(port)
    _, alive = psutil.wait_procs(tree, timeout=10)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], alive


@pytest.mark.parametrize("name", NEW_PEERS)
def test_peer_measured_obeys_littles_law(tmp_path: Path, name: str) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    # A 100 ms call: the load generator's own lag on a busy machine (it counts a
    # request in flight from when it sends it, latency from when it meant to) is
    # then a small part of each latency.
    w = Workload(connections=50, rate=100.0, cpu=Fixed(0.001), io=Fixed(0.1))
    # About 10 requests are in service at once (Little: 100/s x 0.1 s): the
    # pools get room for twice that.
    arch = Architecture(workers=24, processes={"nginx-php-fpm": 24, "nginx-uwsgi": 2}.get(name, 1))
    # Two seconds of warm-up: the JVMs compile their hot paths and Tomcat grows its pool.
    result = measure(MeasureOptions(name, w, arch, duration=3.0, warmup=2.0, out_dir=tmp_path))
    s = result.to_dict()
    assert s["stable"], s["stability"]
    assert s["resembles"] == peers.RESEMBLES[name]
    assert s["platform"] == peers.PLATFORM_OF[name]
    assert s["runtime"], "the runtime's versions are recorded"
    assert s["latency_ms"]["p50"] >= 101.0  # the work: 1 ms of CPU and a 100 ms call
    # Little's law between two independent measurements of the same run: the
    # sampled number in flight, and throughput x mean latency.
    assert s["little"]["rel_error"] < 0.05, s["little"]
    record = json.loads((tmp_path / Path(s["saved_to"]).name).read_text())
    assert record["summary"]["model"] == name
    # The probe keeps a buffering front's CPU apart (calibration splits the
    # two tiers with it): some, and less than the whole tree's, for nginx.
    if name.startswith("nginx-"):
        assert result.front_cpu_cores is not None
        assert 0 < result.front_cpu_cores < s["cpu_busy_cores"]
    else:
        assert result.front_cpu_cores is None
    deadline = time.monotonic() + 10
    while {p.pid for p in psutil.Process().children(recursive=True)} - before:
        assert time.monotonic() < deadline, "processes left behind"
        time.sleep(0.2)


def test_serve_a_peer_stops_cleanly_on_sigterm() -> None:
    port = free_port()
    argv = [sys.executable, "-m", "simlab", "serve", "go", "--port", str(port)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().startswith("READY")
            assert exchange(port, GOOD).startswith(b"HTTP/1.1 200")
            tree = psutil.Process(proc.pid).children(recursive=True)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for child in tree:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert port_is_free(port)


def test_a_missing_runtime_is_one_line_naming_its_package(tmp_path: Path) -> None:
    # No go on this PATH (and none in the sbin folders the lab also searches).
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    argv = [sys.executable, "-m", "simlab", "measure", "go", "--duration", "1", "--no-save"]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0, out.stderr
    assert "apt-get install golang-go" in out.stderr


def test_builds_are_cached_and_safe_when_concurrent(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(build, "CACHE", tmp_path)
    source = tmp_path / "src.txt"
    source.write_text("v1")
    built: list[Path] = []

    def slow_build(out: Path) -> None:
        (out / "part1").write_text("1")
        time.sleep(0.3)  # both builders are inside at once
        (out / "part2").write_text("2")

    threads = [
        threading.Thread(
            target=lambda: built.append(build.cached_build("t", [source], "x", slow_build))
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert built[0] == built[1]
    assert sorted(p.name for p in built[0].iterdir()) == ["part1", "part2"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    source.write_text("v2")  # a changed source is a new build
    assert build.cached_build("t", [source], "x", slow_build) != built[0]


# Sizes whose difference lifts each unit above the runtime's allocation granularity
# (V8 grows its heap in 256 KiB pages: a 1 KiB promise needs thousands).
TEST_SIZES = {"jvm": (20, 120), "go": (50, 500), "node": (500, 3000), "php": (10, 40)}


@pytest.mark.parametrize("runtime", ["jvm", "go", "node", "php", "cpython"])
def test_memory_units_of_each_runtime(runtime: str) -> None:
    a, b = TEST_SIZES.get(runtime, (10, 40))
    result = units.measure_units(runtime, (a, b))
    per = result["per_unit_kib"]
    assert set(per) == {u.name for u in units.UNITS[runtime]}
    for name, v in per.items():
        assert v["pss"] > 0, (name, v)
        assert math.isfinite(v["create_us"]), (name, v)
        assert set(result["units"][name]) == {"label", str(a), str(b)}  # the raw numbers kept
        if "kernel_client_share" in v:
            assert v["kernel"] == pytest.approx(v["kernel_gross"] - v["kernel_client_share"])
    if runtime == "jvm":
        # A thread reserves its stack (1 MiB by default, or -Xss) plus a guard page or so.
        assert 1024 <= per["thread"]["vms"] < 1024 + 64
        assert 256 <= per["thread-xss256k"]["vms"] < 256 + 64
    # Kernel memory is the unit's own: counted in its memory cgroup (the client
    # ends are outside it), or, without one, the machine's less the client share.
    cgroup = result["kernel_method"] == units.KERNEL_METHOD
    connection = {"go": "goroutine-connection", "node": "connection"}.get(runtime)
    if connection is not None:
        assert ("kernel_client_share" in per[connection]) != cgroup
        assert per[connection]["kernel"] > 0
    if runtime == "go":
        assert 1 < per["goroutine"]["uss"] < 16  # a 2 KiB stack and its g


def test_memory_command_for_a_runtime(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "simlab", "measure", "memory", "--runtime", "go"]
    argv += ["--sizes", "20,60", "--json", "--out", str(tmp_path)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout)
    assert result["runtime"] == "go" and result["versions"]["go"].startswith("go version")
    assert result["git_revision"] and result["machine"]["cores"] >= 1
    saved = list(tmp_path.glob("memory-go-*.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text())["per_unit_kib"]
