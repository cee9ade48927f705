"""Two kernel-memory questions the per-unit benchmark (``simlab.real.memory``) leaves open.

**What a fork costs, as a function of its parent's size.** A fork copies
its parent's page tables (for every mapping the parent has written), so a
child's kernel memory should grow with the parent's resident memory: on
x86-64 a 4 KiB page-table page maps 2 MiB, about 2 KiB per MiB. A child
process here touches ``ballast_mib`` MiB of memory, reports its own size,
then forks A and later B children (each blocked in a read) inside a memory
cgroup; the kernel memory per fork is the slope between the two counts, as
in ``simlab.real.memory``. ``fit_fork_law`` fits

    kernel_per_fork = base + per_mib * parent_MiB

over the points (parent_MiB: the parent's PSS before it forks, what a
model knows of a server's user memory), with bootstrap intervals.

**What a connection waiting in the listen backlog costs.** A child that
listens but does not accept sits in its own memory cgroup; N clients (in
this process, outside that cgroup) connect and send a request; the group's
kernel memory and ``memory.stat`` (``sock``, ``slab``, ``kernel``) are read
before the connections, while they wait, and after the child accepts them.

**What a closed short connection leaves behind.** A child in its own memory
cgroup serves N connections one request each and closes them (or waits for
the client to close first); the group's kernel memory is read before and
after, with the machine's TIME_WAIT count (``/proc/net/sockstat``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from simlab.real.kernel import KernelAccount, tcp_object_kib
from simlab.real.limits import raise_fd_limit

__all__ = [
    "fit_fork_law",
    "fork_held",
    "measure_backlog",
    "measure_fork_law",
    "measure_short",
    "stop_child",
]

SETTLE_S = 0.5
BALLASTS_MIB = (0, 16, 64)
FORKS = (20, 100)
REPEATS = 3
REQUEST = b"GET /work?cpu_ms=1 HTTP/1.1\r\nHost: x\r\n\r\n"


def _self_memory() -> dict[str, float]:
    m = psutil.Process().memory_full_info()
    pte = 0.0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmPTE:"):
                pte = float(line.split()[1])
    return {"pss": m.pss / 1024, "uss": m.uss / 1024, "rss": m.rss / 1024, "pte": pte}


def fork_held(n: int) -> Callable[[], None]:
    """Fork ``n`` children that wait, holding their memory, until the returned
    function lets them exit and reaps them."""
    r, w = os.pipe()
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os.close(w)
            os.read(r, 1)
            os._exit(0)
        pids.append(pid)

    def release() -> None:
        os.write(w, b"x" * n)
        for pid in pids:
            os.waitpid(pid, 0)

    return release


def _child_fork(n: int, ballast_mib: int) -> None:
    # Written, not just allocated: an untouched allocation maps no pages.
    ballast = b"\x01" * (ballast_mib << 20)
    me = _self_memory()
    release = fork_held(n)
    print("READY " + " ".join(f"{k}={v}" for k, v in me.items()), flush=True)
    sys.stdin.readline()
    release()
    del ballast


def _child_backlog(n: int) -> None:
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4096)
    print(f"PORT {lsock.getsockname()[1]}", flush=True)
    sys.stdin.readline()  # accept when told
    held = [lsock.accept()[0] for _ in range(n)]
    print("ACCEPTED", flush=True)
    sys.stdin.readline()
    for s in held:
        s.close()
    lsock.close()


def _stat(account: KernelAccount) -> dict[str, float]:
    """The group's kernel charge as ``simlab.real.kernel`` reads it, and memory.stat's parts."""
    out = {"kernel": account.kernel_kib()}
    if account.version == 2:
        stat = dict(
            line.split() for line in (account.path / "memory.stat").read_text().splitlines()
        )
        for key in ("sock", "slab", "pagetables", "kernel_stack"):
            out[key] = int(stat.get(key, 0)) / 1024
    return out


def _spawn(args: list[str], account: KernelAccount) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "simlab.real.forklaw", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        # Only joins a memory cgroup, with raw syscalls: safe beside threads.
        preexec_fn=account.preexec,  # noqa: PLW1509
    )


def stop_child(proc: subprocess.Popen[str]) -> None:
    """Stop a benchmark child by its pid (if it still runs) and close its pipes."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


def _forks(n: int, ballast_mib: int) -> tuple[float, dict[str, float]]:
    """The group's kernel KiB with ``n`` forks of a parent holding ``ballast_mib``
    more, and the parent's own size before it forked."""
    account, why = KernelAccount.create()
    if account is None:
        raise RuntimeError(f"the fork law needs a memory cgroup: {why}")
    proc = _spawn(["fork", str(n), str(ballast_mib)], account)
    try:
        assert proc.stdout is not None
        assert proc.stdin is not None
        line = proc.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"fork probe x {n} failed to start: {line!r}")
        parent = {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
        time.sleep(SETTLE_S)
        kernel = account.kernel_kib()
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(60)
        return kernel, parent
    finally:
        stop_child(proc)
        account.close()


def measure_fork_law(
    ballasts: tuple[int, ...] = BALLASTS_MIB,
    forks: tuple[int, int] = FORKS,
    repeats: int = REPEATS,
) -> dict[str, Any]:
    """Kernel KiB per fork at each parent size, ``repeats`` times (one point each)."""
    a, b = forks
    points = []
    for rep in range(repeats):
        for mib in ballasts:
            k_a, parent = _forks(a, mib)
            k_b, _ = _forks(b, mib)
            points.append(
                {
                    "repeat": rep,
                    "ballast_mib": mib,
                    "parent_pss_mib": parent["pss"] / 1024,
                    "parent_uss_mib": parent["uss"] / 1024,
                    "parent_rss_mib": parent["rss"] / 1024,
                    "parent_pte_kib": parent["pte"],
                    "kernel_per_fork_kib": (k_b - k_a) / (b - a),
                }
            )
    return {"forks": [a, b], "ballasts_mib": list(ballasts), "points": points}


def fit_fork_law(points: list[dict[str, Any]]) -> Any:
    """kernel_per_fork = base + per_mib * parent_MiB (parent's PSS), soft-L1 with
    bootstrap intervals over the points (``simlab.fitting.fit_robust``)."""
    import numpy as np  # noqa: PLC0415

    from simlab.fitting import fit_robust  # noqa: PLC0415

    x = np.array([[1.0, p["parent_pss_mib"]] for p in points])
    y = np.array([p["kernel_per_fork_kib"] for p in points])
    return fit_robust(x, y, ("fork_kernel_kib", "fork_kernel_per_mib"))


def measure_backlog(n: int = 500, repeats: int = REPEATS) -> dict[str, Any]:
    """Per connection (KiB): the server's cgroup charge while N connections wait
    unaccepted in its backlog (each having sent a request), and at accept."""
    raise_fd_limit(2 * n + 256)
    rows = []
    for rep in range(repeats):
        account, why = KernelAccount.create()
        if account is None:
            raise RuntimeError(f"the backlog probe needs a memory cgroup: {why}")
        proc = _spawn(["backlog", str(n)], account)
        clients: list[socket.socket] = []
        try:
            assert proc.stdout is not None
            assert proc.stdin is not None
            port = int(proc.stdout.readline().split()[1])
            time.sleep(SETTLE_S)
            before = _stat(account)
            for _ in range(n):
                c = socket.create_connection(("127.0.0.1", port))
                c.sendall(REQUEST)
                clients.append(c)
            time.sleep(SETTLE_S)
            waiting = _stat(account)
            proc.stdin.write("\n")
            proc.stdin.flush()
            if not proc.stdout.readline().startswith("ACCEPTED"):
                raise RuntimeError("backlog probe did not accept")
            time.sleep(SETTLE_S)
            accepted = _stat(account)
            proc.stdin.write("\n")
            proc.stdin.flush()
            proc.wait(60)
        finally:
            for c in clients:
                c.close()
            stop_child(proc)
            account.close()
        rows.append(
            {
                "repeat": rep,
                "waiting_kib": {k: (waiting[k] - before[k]) / n for k in before},
                "at_accept_kib": {k: (accepted[k] - waiting[k]) / n for k in before},
            }
        )
    return {"connections": n, "tcp_object_kib": tcp_object_kib(), "repeats": rows}


def _child_short(n: int, server_first: bool) -> None:
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4096)
    print(f"PORT {lsock.getsockname()[1]}", flush=True)
    for _ in range(n):
        conn = lsock.accept()[0]
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        if not server_first:
            conn.recv(1)  # the client's EOF: it closes first
        conn.close()
    print("DONE", flush=True)
    sys.stdin.readline()
    lsock.close()


def _sockstat() -> dict[str, int]:
    """/proc/net/sockstat's TCP line: inuse, orphan, tw, alloc, mem (pages)."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            parts = line.split()[1:]
            return {parts[k]: int(parts[k + 1]) for k in range(0, len(parts), 2)}
    return {}


def measure_short(n: int = 2000, repeats: int = REPEATS) -> dict[str, Any]:
    """Per connection (KiB): what the server's cgroup still holds once N short
    connections (one request each) have closed, with the server or the client
    closing first, and the machine's TIME_WAIT sockets meanwhile."""
    raise_fd_limit(n + 256)
    rows = []
    for rep in range(repeats):
        for server_first in (True, False):
            account, why = KernelAccount.create()
            if account is None:
                raise RuntimeError(f"the short-connection probe needs a memory cgroup: {why}")
            proc = _spawn(["short", str(n), "1" if server_first else "0"], account)
            try:
                assert proc.stdout is not None
                assert proc.stdin is not None
                port = int(proc.stdout.readline().split()[1])
                time.sleep(SETTLE_S)
                before, tw0 = _stat(account), _sockstat()
                for _ in range(n):
                    with socket.create_connection(("127.0.0.1", port)) as c:
                        c.sendall(REQUEST)
                        while c.recv(4096):
                            if not server_first:
                                break
                if not proc.stdout.readline().startswith("DONE"):
                    raise RuntimeError("short-connection probe did not finish")
                time.sleep(SETTLE_S)
                after, tw1 = _stat(account), _sockstat()
                proc.stdin.write("\n")
                proc.stdin.flush()
                proc.wait(60)
            finally:
                stop_child(proc)
                account.close()
            rows.append(
                {
                    "repeat": rep,
                    "server_closes_first": server_first,
                    "held_after_close_kib": {k: (after[k] - before[k]) / n for k in before},
                    "time_wait_added": tw1.get("tw", 0) - tw0.get("tw", 0),
                    "orphans_added": tw1.get("orphan", 0) - tw0.get("orphan", 0),
                }
            )
    return {"connections": n, "repeats": rows}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    raise_fd_limit(int(args[1]) + 256)
    if args[0] == "fork":
        _child_fork(int(args[1]), int(args[2]))
    elif args[0] == "short":
        _child_short(int(args[1]), args[2] == "1")
    else:
        _child_backlog(int(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
