"""``simlab measure memory --runtime R``: what one unit of each runtime costs, measured.

Each unit is held at two counts A < B, each in a fresh process tree, and its
cost is the slope (m(B) - m(A)) / (B - A), so the runtime's own baseline
cancels. For every unit: resident (RSS), private (USS), proportional (PSS)
and virtual (VMS) memory, summed over the tree, and kernel memory (kernel
stacks, slab, page tables); also the time to create a unit, from the slope
of the time taken to create all A and all B of them.

Kernel memory is the unit program's own, counted as ``simlab measure``
counts a server's (``simlab.real.kernel``): the program runs in a memory
cgroup, and each connection it accepted adds the TCP object the kernel made
for it outside any cgroup; the client ends, in this process, are outside
the cgroup. Where no cgroup can be made, the machine's growth is taken
instead, net of the client ends' share (measured in the same run as half
the growth per plain loopback socket pair; ``kernel_client_share``).

Units (the programs are beside their peers' sources):
- jvm: an idle platform thread parked on a latch, default stack and -Xss256k
  (``java/MemUnits.java``);
- go: an idle goroutine, and an idle goroutine holding a connection through a
  4 KiB bufio.Reader (``go/memunits/main.go``);
- node: an idle http connection, a pending setTimeout callback closing over
  its own object, a pending promise awaited by a suspended async function
  (``node/memunits.js``);
- php: a PHP-FPM child of a static pool (the master and its children);
- cpython: the units of ``simlab/real/memory.py``, and a uWSGI worker
  (preforked from a master that loaded the WSGI app, no threads).
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from simlab.real.kernel import KernelAccount, tcp_object_kib
from simlab.real.limits import raise_fd_limit
from simlab.real.memory import tree_memory
from simlab.real.peers import go, jvm, nginx, node
from simlab.real.peers.build import PeerProcess, temp_prefix
from simlab.real.probe import kernel_kib

__all__ = [
    "KERNEL_METHOD",
    "RUNTIMES",
    "UNITS",
    "Unit",
    "client_share_kib",
    "measure_units",
    "runtime_versions",
]

RUNTIMES = ("cpython", "jvm", "go", "node", "php")
SETTLE_S = 0.5
READY_TIMEOUT_S = 300.0
SOURCES = 8  # client source addresses 127.0.0.2.., so that many connections fit
KERNEL_METHOD = (
    "kernel = the unit program's memory cgroup's kernel charge plus a TCP object per accepted "
    "connection (simlab.real.kernel), per unit"
)
MACHINE_METHOD = (
    "kernel = growth of Slab + KernelStack + PageTables (/proc/meminfo, machine-wide) per unit; "
    "for units holding a connection, net of the client end's share, measured in the same run "
    "as half the growth per plain loopback socket pair (client ends here, a sink that only "
    "accepts and holds)"
)


@dataclass(frozen=True)
class Unit:
    runtime: str
    name: str
    label: str
    argv: Callable[[int, Path], list[str]]
    connections: bool = False
    # Process units are ready once the tree has this many processes (master + n);
    # the others print READY themselves.
    processes: Callable[[int], int] | None = None


def _java(stack_kib: int) -> Callable[[int, Path], list[str]]:
    def argv(n: int, _prefix: Path) -> list[str]:
        return jvm.java_argv("memory", "MemUnits", "thread", str(n), stack_kib=stack_kib)

    return argv


def _go(kind: str) -> Callable[[int, Path], list[str]]:
    return lambda n, _prefix: [str(go.binary("memunits", peer="memory")), kind, str(n)]


def _node(kind: str) -> Callable[[int, Path], list[str]]:
    return lambda n, _prefix: node.node_argv("memunits.js", kind, str(n), peer="memory")


def _fpm(n: int, prefix: Path) -> list[str]:
    (prefix / "php-fpm.conf").write_text(nginx.fpm_config(prefix, n, 128, backend_port=1))
    return nginx.fpm_argv(prefix)


def _uwsgi(n: int, prefix: Path) -> list[str]:
    return nginx.uwsgi_argv(prefix, n, 1, 128)


UNITS: dict[str, tuple[Unit, ...]] = {
    "jvm": (
        Unit("jvm", "thread", "idle Java thread (default stack)", _java(0)),
        Unit("jvm", "thread-xss256k", "idle Java thread (-Xss256k)", _java(256)),
    ),
    "go": (
        Unit("go", "goroutine", "idle goroutine", _go("goroutine")),
        Unit(
            "go",
            "goroutine-connection",
            "idle goroutine holding a connection",
            _go("goroutine-connection"),
            connections=True,
        ),
    ),
    "node": (
        Unit("node", "connection", "idle Node.js http connection", _node("connection"), True),
        Unit("node", "callback", "pending setTimeout callback", _node("callback")),
        Unit("node", "promise", "pending promise (suspended async fn)", _node("promise")),
    ),
    "php": (Unit("php", "fpm-child", "PHP-FPM child", _fpm, processes=lambda n: n + 1),),
    "cpython": (
        Unit("cpython", "uwsgi-worker", "uWSGI worker", _uwsgi, processes=lambda n: n + 1),
    ),
}


def _connect(port: int, n: int) -> list[socket.socket]:
    socks = []
    for k in range(n):
        s = socket.socket()
        s.bind((f"127.0.0.{2 + k % SOURCES}", 0))
        s.connect(("127.0.0.1", port))
        socks.append(s)
    return socks


def _read_line(proc: subprocess.Popen[str], deadline: float) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line or time.monotonic() > deadline:
        raise RuntimeError(f"the unit program exited or stalled (exit {proc.poll()})")
    return line


@contextlib.contextmanager
def _held(
    unit: Unit, n: int, preexec: Callable[[], None] | None = None
) -> Iterator[tuple[int, float]]:
    """Hold n units; yields (pid of the tree's root, seconds taken to create them)."""
    prefix = temp_prefix(f"memory-{unit.runtime}")
    clients: list[socket.socket] = []
    t0 = time.perf_counter()
    # A process group of its own, stopped with the groups its children made (PHP-FPM's setsid).
    held = _Holder(unit.argv(n, prefix), prefix=prefix, name=f"{unit.name} x {n}", preexec=preexec)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        if unit.processes is not None:
            want = unit.processes(n)
            while len(psutil.Process(held.pid).children(recursive=True)) + 1 < want:
                if held.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{unit.label}: {want - 1} processes did not start")
                time.sleep(0.01)
            create_s = time.perf_counter() - t0
        else:
            # Managed drains stdout; these programs talk on it, so read it here instead.
            line = _next_stdout(held, deadline)
            if line.startswith("PORT"):
                clients = _connect(int(line.split()[1]), n)
                line = _next_stdout(held, deadline)
            if not line.startswith("READY"):
                raise RuntimeError(f"{unit.label} x {n}: {line.strip()!r}")
            create_s = float(json.loads(line.split(maxsplit=1)[1])["create_s"])
        time.sleep(SETTLE_S)
        held.note_groups()
        yield held.pid, create_s
    finally:
        for c in clients:
            c.close()
        held.stop()


class _Holder(PeerProcess):
    """A unit program; what it prints on stdout (PORT, READY) is kept to be read."""

    def __init__(
        self,
        argv: list[str],
        *,
        prefix: Path,
        name: str,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.lines: deque[str] = deque()
        super().__init__(argv, prefix=prefix, name=name, preexec=preexec)

    def _drain(self, stream: IO[str] | None, sink: deque[str] | None) -> None:
        super()._drain(stream, self.lines if stream is self.proc.stdout else sink)


def _next_stdout(held: _Holder, deadline: float) -> str:
    while time.monotonic() < deadline:
        if held.lines:
            return held.lines.popleft()
        if held.proc.poll() is not None:
            raise RuntimeError(f"exited with {held.proc.returncode}: {held.stop()[-500:]}")
        time.sleep(0.01)
    raise RuntimeError("no READY line in time")


def _one(unit: Unit, n: int) -> dict[str, float]:
    base = kernel_kib()
    account, _ = KernelAccount.create()
    try:
        with _held(unit, n, account.preexec if account else None) as (pid, create_s):
            mem = tree_memory(pid)
            if account is not None:
                accepted = n if unit.connections else 0
                mem["kernel"] = account.kernel_kib() + accepted * tcp_object_kib()
            else:
                mem["kernel"] = kernel_kib() - base
            mem["create_s"] = create_s
    finally:
        if account is not None:
            account.close()
    return mem


def runtime_versions(runtime: str) -> dict[str, str]:
    """The versions behind a runtime's numbers (checks that it is installed, too)."""
    if runtime == "jvm":
        return jvm.versions("memory")
    if runtime == "go":
        return go.versions("memory")
    if runtime == "node":
        return node.versions("memory")
    if runtime == "php":
        return {"php-fpm": nginx.php_fpm_version()}
    return {"python": sys.version.split()[0], "uwsgi": nginx.uwsgi_version()}


def _socket_pairs(n: int) -> float:
    """Kernel growth (KiB) of n plain loopback socket pairs: this process's client
    ends to a sink process that only accepts and holds."""
    base = kernel_kib()
    sink = subprocess.Popen(
        [sys.executable, "-m", "simlab.real.peers.units", "sink", str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    clients: list[socket.socket] = []
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        clients = _connect(int(_read_line(sink, deadline).split()[1]), n)
        if not _read_line(sink, deadline).startswith("READY"):
            raise RuntimeError("the socket sink failed")
        time.sleep(SETTLE_S)
        return kernel_kib() - base
    finally:
        for c in clients:
            c.close()
        sink.kill()
        sink.wait()
        for stream in (sink.stdin, sink.stdout):
            if stream is not None:
                stream.close()


def client_share_kib(sizes: tuple[int, int]) -> float:
    """The kernel memory (KiB) of one plain loopback socket end: half a pair's, by slope."""
    a, b = sizes
    return (_socket_pairs(b) - _socket_pairs(a)) / (b - a) / 2


def measure_units(runtime: str, sizes: tuple[int, int]) -> dict[str, Any]:
    """Per-unit costs (KiB, and create_us) of ``runtime``'s units from the slope between sizes."""
    a, b = sizes
    raise_fd_limit()
    units: dict[str, dict[str, float]] = {}
    raw: dict[str, dict[str, Any]] = {}
    client_share: float | None = None
    account, _ = KernelAccount.create()
    own = account is not None  # a cgroup leaves the client ends out by itself
    if account is not None:
        account.close()
    for unit in UNITS[runtime]:
        small, large = _one(unit, a), _one(unit, b)
        per = {k: (large[k] - small[k]) / (b - a) for k in ("rss", "uss", "pss", "vms", "kernel")}
        per["create_us"] = (large["create_s"] - small["create_s"]) / (b - a) * 1e6
        if unit.connections and not own:
            if client_share is None:
                client_share = client_share_kib(sizes)
            per["kernel_gross"] = per["kernel"]
            per["kernel_client_share"] = client_share
            per["kernel"] -= client_share
        units[unit.name] = per
        raw[unit.name] = {"label": unit.label, str(a): small, str(b): large}
    return {
        "runtime": runtime,
        "sizes": [a, b],
        "per_unit_kib": units,
        "units": raw,
        "kernel_method": KERNEL_METHOD if own else MACHINE_METHOD,
    }


def _sink(n: int) -> None:
    with socket.create_server(("127.0.0.1", 0), backlog=4096) as server:
        print(f"PORT {server.getsockname()[1]}", flush=True)
        held = [server.accept()[0] for _ in range(n)]
        print("READY", flush=True)
        sys.stdin.readline()
        for s in held:
            s.close()


if __name__ == "__main__":
    raise_fd_limit()
    _sink(int(sys.argv[2]))
