"""``simlab measure memory``: what one idle thread, connection, forked child or coroutine costs.

Each unit is measured at two counts A < B in a fresh child process, and the
cost per unit is the slope (m(B) - m(A)) / (B - A), so the interpreter's own
memory cancels out. For every unit: resident (RSS), private (USS),
proportional (PSS), virtual (VMS), and kernel memory (kernel stacks, slab,
page tables), which is where thread structures and sockets live.

Kernel memory is the child's own, counted as ``simlab measure`` counts a
server's (``simlab.real.kernel``): the child runs in a memory cgroup, and
each connection it accepted adds the TCP object the kernel made for it
outside any cgroup. So a unit's kernel cost here and a server's kernel
memory there mean the same thing. Where no cgroup can be made, the
machine's growth is taken instead (halved for connections, whose client
ends are in the measuring process) and ``kernel_method`` says so.

- thread: B threads blocked in recv on one shared socket (a thread, no socket);
- connection: an asyncio server holding B idle stream connections (the
  client ends are in the measuring process, outside the child's cgroup);
- fork: B forked children each blocked in a read (summed over the children);
- coroutine: B asyncio tasks awaiting a future.

Where a memory cgroup can be made, also: a fork's kernel memory against its
parent's size, a connection's while it waits in the listen backlog, and
what closed short connections leave behind (``simlab.real.forklaw``).

Also timed: thread create+start+join, fork+exit+wait (and the parent's
os.fork() call alone), asyncio task create.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import psutil

from simlab.real.forklaw import (
    fork_held,
    measure_backlog,
    measure_fork_law,
    measure_short,
    stop_child,
)
from simlab.real.kernel import KernelAccount, tcp_object_kib
from simlab.real.limits import raise_fd_limit
from simlab.real.probe import kernel_kib

__all__ = ["KINDS", "measure_memory", "tree_memory"]

KINDS = ("thread", "connection", "fork", "coroutine")
SETTLE_S = 0.5


def _hold(extra: dict[str, Any] | None = None) -> None:
    """Tell the parent we are ready, then wait for its go-ahead to exit."""
    print("READY " + json.dumps(extra or {}), flush=True)
    sys.stdin.readline()


def _child_thread(n: int) -> None:
    a, b = socket.socketpair()
    threads = [threading.Thread(target=a.recv, args=(1,), daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    _hold()
    b.send(b"x" * n)  # wake every thread
    for t in threads:
        t.join(5)


def _child_connection(n: int) -> None:
    async def main() -> None:
        held: list[asyncio.StreamWriter] = []
        got = asyncio.Event()

        async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)
            if len(held) >= n:
                got.set()
            # Idle until the client closes, or until shutdown cancels us.
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await reader.read()

        server = await asyncio.start_server(on_conn, "127.0.0.1", 0, backlog=4096)
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        await got.wait()
        await asyncio.to_thread(_hold)
        server.close()

    asyncio.run(main())


def _child_fork(n: int) -> None:
    release = fork_held(n)
    _hold()
    release()


def _child_coroutine(n: int) -> None:
    async def main() -> None:
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def wait() -> None:
            await gate

        tasks = [asyncio.ensure_future(wait()) for _ in range(n)]
        await asyncio.sleep(0)
        await asyncio.to_thread(_hold)
        gate.set_result(None)
        await asyncio.gather(*tasks)

    asyncio.run(main())


CHILDREN = {
    "thread": _child_thread,
    "connection": _child_connection,
    "fork": _child_fork,
    "coroutine": _child_coroutine,
}


def tree_memory(pid: int) -> dict[str, float]:
    """RSS, USS, PSS and VMS of a process and its descendants, in KiB (a process
    that exits while being read counts as nothing)."""
    out = {"rss": 0.0, "uss": 0.0, "pss": 0.0, "vms": 0.0}
    root = psutil.Process(pid)
    for p in [root, *root.children(recursive=True)]:
        try:
            m = p.memory_full_info()
        except psutil.NoSuchProcess:
            continue
        out["rss"] += m.rss / 1024
        out["uss"] += m.uss / 1024
        out["pss"] += m.pss / 1024
        out["vms"] += m.vms / 1024
    return out


def _one(kind: str, n: int, stack_kib: int) -> dict[str, float]:
    base_kernel = kernel_kib()
    account, _ = KernelAccount.create()
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "simlab.real.memory", kind, str(n), str(stack_kib)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        # Only joins a memory cgroup, with raw syscalls: safe beside threads.
        preexec_fn=account.preexec if account is not None else None,  # noqa: PLW1509
    )
    clients: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        assert proc.stdin is not None
        line = proc.stdout.readline()
        if kind == "connection":
            port = int(line.split()[1])
            clients.extend(socket.create_connection(("127.0.0.1", port)) for _ in range(n))
            line = proc.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"memory probe {kind} x {n} failed to start: {line!r}")
        time.sleep(SETTLE_S)
        mem = tree_memory(proc.pid)
        accepted = n if kind == "connection" else 0
        if account is not None:
            mem["kernel"] = account.kernel_kib() + accepted * tcp_object_kib()
        else:
            # Machine-wide: the client ends are counted too, as many as the child's.
            mem["kernel"] = (kernel_kib() - base_kernel) / (2 if accepted else 1)
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(60)
        return mem
    finally:
        for c in clients:
            c.close()
        stop_child(proc)
        if account is not None:
            account.close()


def _timings(samples: int = 300) -> dict[str, float]:
    t = time.perf_counter()
    for _ in range(samples):
        th = threading.Thread(target=lambda: None)
        th.start()
        th.join()
    thread_us = (time.perf_counter() - t) / samples * 1e6
    t = time.perf_counter()
    forks = max(20, samples // 10)
    parent = 0.0
    for _ in range(forks):
        t_call = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        # The parent's own part: os.fork() until it returns in the parent
        # (what a forking server's accept loop pays). The rest of the cycle
        # is the child's start, exit and reaping, which run on another core.
        parent += time.perf_counter() - t_call
        os.waitpid(pid, 0)
    fork_us = (time.perf_counter() - t) / forks * 1e6

    async def tasks() -> float:
        async def noop() -> None:
            return None

        t0 = time.perf_counter()
        for _ in range(samples * 10):
            await asyncio.ensure_future(noop())
        return (time.perf_counter() - t0) / (samples * 10) * 1e6

    return {
        "thread_create_start_join_us": thread_us,
        "fork_exit_wait_us": fork_us,
        "fork_parent_us": parent / forks * 1e6,
        "task_create_run_us": asyncio.run(tasks()),
    }


def measure_memory(
    sizes: tuple[int, int], stack_kib: int = 0, *, kernel_laws: bool = True
) -> dict[str, Any]:
    """Per-unit memory (KiB) of each kind, from the slope between two sizes;
    with ``kernel_laws``, also the fork law, the backlog's and closed short
    connections' kernel memory (``simlab.real.forklaw``, about a minute)."""
    raise_fd_limit(sizes[1] * 2 + 256)
    a, b = sizes
    units: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        small, large = _one(kind, a, stack_kib), _one(kind, b, stack_kib)
        units[kind] = {key: (large[key] - small[key]) / (b - a) for key in small}
    # Timed in a fresh, small interpreter: fork time grows with the parent's size.
    out = subprocess.run(
        [sys.executable, "-m", "simlab.real.memory", "timings"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    account, why_not = KernelAccount.create()
    if account is not None:
        account.close()
    record = {
        "sizes": [a, b],
        "stack_kib": stack_kib,
        "kernel_method": "cgroup" if account is not None else f"machine-wide ({why_not})",
        "per_unit_kib": units,
        "timings": json.loads(out),
    }
    if account is not None and kernel_laws:
        # A fork's kernel memory against its parent's size (the page tables it
        # copies), and what a connection waiting in the backlog is charged:
        # both read a memory cgroup, so only where one can be made.
        record["fork_law"] = measure_fork_law()
        record["backlog"] = measure_backlog()
        record["short"] = measure_short()
    return record


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[0] == "timings":
        print(json.dumps(_timings()))
        return 0
    kind, n, stack = args[0], int(args[1]), int(args[2]) if len(args) > 2 else 0
    raise_fd_limit(n + 256)
    if stack:
        threading.stack_size(stack * 1024)
    CHILDREN[kind](n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
