"""The two coats of event-driven code, one small program per runtime: callbacks and coroutines.

The notes say event-driven code wears one of two coats, asynchronous
callbacks or coroutines, and name the runtimes that wear them. Each coat
here is one program (``coats/``) with two modes, the same in every runtime:

- ``pending N``: N operations, each waiting on its own timer of an hour and
  holding its own state, as a request waits on a backend. What each costs in
  memory is the slope between two sizes (``pending_memory``), measured as
  ``simlab measure memory`` measures a unit (``simlab.real.peers.units``):
  the tree's PSS, and the kernel memory charged to its memory cgroup.
- ``hops C K MS``: rounds of C concurrent requests, each passing K times
  through the runtime's scheduler, for MS milliseconds after a warm-up of the
  same length. A hop is one turn through the scheduler and back, the step
  every await and every callback takes: ``setImmediate`` (Node.js callbacks),
  an awaited promise resolved by ``setImmediate`` (Node.js promises),
  ``asyncio.sleep(0)``, ``runtime.Gosched()``, ``erlang:yield()`` and
  Kotlin's ``yield()``. Its CPU is read from the process tree's CPU time
  (``hop_cpu``), from outside the program, the same way for every runtime.

The coats (``COATS``): ``node-callbacks`` and ``node-promises`` on one event
loop; ``asyncio`` on one loop; ``go`` goroutines, ``erlang`` processes and
``kotlin`` coroutines (kotlinx.coroutines) on as many scheduler threads as
cores while pending, and on one for the hops (``GOMAXPROCS=1``, one online
scheduler, runBlocking's event loop), as the loops run: a hop's CPU is then
the scheduler's own work, not idle scheduler threads spinning for more. Go,
Erlang and Kotlin are built on first use and cached (``build.cached_build``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from simlab.real.kernel import KernelAccount
from simlab.real.memory import tree_memory
from simlab.real.peers import node
from simlab.real.peers.build import (
    CACHE,
    PeerProcess,
    cached_build,
    find_program,
    run_build,
    temp_prefix,
    version_line,
)
from simlab.real.probe import kernel_kib
from simlab.real.processes import STOP_GRACE_S

__all__ = ["COATS", "Coat", "hop_cpu", "pending_memory"]

COATS_DIR = Path(__file__).parent / "coats"
READY_TIMEOUT_S = 300.0
SETTLE_S = 0.5  # as simlab.real.peers.units: the program's memory settles once READY
# Where Debian keeps the Kotlin and kotlinx jars (kotlin, libkotlinx-coroutines-java,
# libkotlinx-atomicfu-java: the coroutines library needs atomicfu at run time).
JAVA_SHARE = Path("/usr/share/java")
KOTLIN_JARS = ("kotlin-stdlib.jar", "kotlinx-coroutines-core.jar", "atomicfu.jar")


@dataclass(frozen=True)
class Coat:
    """One runtime's coat: ``argv(mode, args)`` runs its program (building it first)."""

    name: str
    coat: str  # "callbacks" or "coroutines"
    runtime: str
    summary: str
    packages: tuple[str, ...]
    argv: Callable[[str, list[int]], list[str]]
    versions: Callable[[], dict[str, str]]


def _node_coat(style: str) -> Callable[[str, list[int]], list[str]]:
    def argv(mode: str, args: list[int]) -> list[str]:
        program = find_program(("node", "nodejs"), peer=f"node-{style}", packages=("nodejs",))
        return [program, str(COATS_DIR / "coats.js"), style, mode, *map(str, args)]

    return argv


def _node_versions() -> dict[str, str]:
    return node.versions("node-callbacks")


def _asyncio(mode: str, args: list[int]) -> list[str]:
    return [sys.executable, str(COATS_DIR / "coats_asyncio.py"), mode, *map(str, args)]


def _go_binary() -> Path:
    go = find_program(("go",), peer="go", packages=("golang-go",))
    source = COATS_DIR / "coats.go"
    env = {
        "GOPROXY": "off",
        "GOFLAGS": "",
        "GO111MODULE": "off",
        "GOCACHE": str(CACHE / "go-build"),
        "GOPATH": str(CACHE / "gopath"),
        "CGO_ENABLED": "0",
    }

    def build(out: Path) -> None:
        run_build([go, "build", "-o", str(out / "coats"), str(source)], cwd=out, env=env)

    return cached_build("coats-go", [source], version_line([go, "version"]), build) / "coats"


def _go(mode: str, args: list[int]) -> list[str]:
    return [str(_go_binary()), mode, *map(str, args)]


def _erlang_dir() -> Path:
    erlc = find_program(("erlc",), peer="erlang", packages=("erlang-base",))
    source = COATS_DIR / "coats.erl"

    def build(out: Path) -> None:
        run_build([erlc, "-o", str(out), str(source)], cwd=out)

    return cached_build("coats-erlang", [source], _otp_release(), build)


def _otp_release() -> str:
    erl = find_program(("erl",), peer="erlang", packages=("erlang-base",))
    return version_line(
        [
            erl,
            "-noshell",
            "-eval",
            'io:format("OTP ~s~n", [erlang:system_info(otp_release)]), halt().',
        ]
    )


def _erlang(mode: str, args: list[int]) -> list[str]:
    erl = find_program(("erl",), peer="erlang", packages=("erlang-base",))
    # Stopping the process group stops erl_child_setup beside the VM, which then
    # "crashes": no crash dump is wanted in the working directory for that.
    return [
        erl,
        "-noshell",
        "-env",
        "ERL_CRASH_DUMP_SECONDS",
        "0",
        "-pa",
        str(_erlang_dir()),
        "-s",
        "coats",
        "main",
        mode,
        *map(str, args),
    ]


def _kotlin_jars() -> list[Path]:
    jars = [JAVA_SHARE / j for j in KOTLIN_JARS]
    missing = [j.name for j in jars if not j.exists()]
    if missing:
        find_program(
            ("kotlin-jars-missing",),
            peer="kotlin",
            packages=("kotlin", "libkotlinx-coroutines-java", "libkotlinx-atomicfu-java"),
        )
    return jars


def _kotlin_classes() -> Path:
    kotlinc = find_program(("kotlinc",), peer="kotlin", packages=("kotlin",))
    source = COATS_DIR / "Coats.kt"
    jars = _kotlin_jars()
    extra = version_line([kotlinc, "-version"]) + ":".join(os.path.realpath(j) for j in jars)

    def build(out: Path) -> None:
        classpath = ":".join(str(j) for j in jars)
        run_build([kotlinc, str(source), "-cp", classpath, "-d", str(out)], cwd=out)

    return cached_build("coats-kotlin", [source], extra, build)


def _kotlin(mode: str, args: list[int]) -> list[str]:
    java = find_program(("java",), peer="kotlin", packages=("default-jdk-headless",))
    classpath = ":".join([str(_kotlin_classes()), *map(str, _kotlin_jars())])
    return [java, "-cp", classpath, "CoatsKt", mode, *map(str, args)]


def _kotlin_versions() -> dict[str, str]:
    kotlinc = find_program(("kotlinc",), peer="kotlin", packages=("kotlin",))
    java = find_program(("java",), peer="kotlin", packages=("default-jdk-headless",))
    coroutines = os.path.basename(os.path.realpath(JAVA_SHARE / "kotlinx-coroutines-core.jar"))
    # kotlinc prints the JVM's warnings first; its own line names it.
    out = subprocess.run(
        [kotlinc, "-version"], capture_output=True, text=True, timeout=60, check=False
    )
    lines = (out.stdout + out.stderr).splitlines()
    kotlin = next((x.strip() for x in lines if "kotlinc" in x), "unknown")
    return {
        "kotlin": kotlin,
        "kotlinx-coroutines": coroutines.removesuffix(".jar"),
        "java": version_line([java, "-version"]),
    }


def _erlang_versions() -> dict[str, str]:
    return {"erlang": _otp_release()}


def _go_versions() -> dict[str, str]:
    go = find_program(("go",), peer="go", packages=("golang-go",))
    return {"go": version_line([go, "version"])}


_COATS = (
    Coat(
        "node-callbacks",
        "callbacks",
        "node",
        "Node.js, callbacks on one event loop (setImmediate, setTimeout)",
        ("nodejs",),
        _node_coat("callbacks"),
        _node_versions,
    ),
    Coat(
        "node-promises",
        "coroutines",
        "node",
        "Node.js, async functions awaiting promises on one event loop",
        ("nodejs",),
        _node_coat("promises"),
        _node_versions,
    ),
    Coat(
        "asyncio",
        "coroutines",
        "cpython",
        "CPython asyncio, tasks on one event loop",
        (),
        _asyncio,
        lambda: {"python": sys.version.split()[0]},
    ),
    Coat(
        "go",
        "coroutines",
        "go",
        "Go goroutines, GOMAXPROCS = cores",
        ("golang-go",),
        _go,
        _go_versions,
    ),
    Coat(
        "erlang",
        "coroutines",
        "erlang",
        "Erlang processes, one scheduler per core",
        ("erlang-base",),
        _erlang,
        _erlang_versions,
    ),
    Coat(
        "kotlin",
        "coroutines",
        "kotlin",
        "Kotlin coroutines, kotlinx.coroutines' default dispatcher",
        ("kotlin", "libkotlinx-coroutines-java", "libkotlinx-atomicfu-java"),
        _kotlin,
        _kotlin_versions,
    ),
)

COATS: dict[str, Coat] = {c.name: c for c in _COATS}


def pending_memory(coat: Coat, n: int) -> dict[str, float]:
    """The program's tree holding ``n`` pending operations: rss, uss, pss, vms and
    kernel (KiB; its memory cgroup's kernel charge, as ``simlab measure memory``
    counts a unit's, else the machine's growth), and create_s (the time the
    program took to create them)."""
    base = kernel_kib()
    account, _ = KernelAccount.create()
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        preexec = account.preexec if account is not None else None
        with _running(coat.argv("pending", [n]), f"coats-{coat.name}", preexec) as program:
            ready = program.next_line("READY", deadline)
            time.sleep(SETTLE_S)
            mem = tree_memory(program.pid)
            mem["kernel"] = account.kernel_kib() if account is not None else kernel_kib() - base
            mem["create_s"] = float(ready["create_s"])
    finally:
        if account is not None:
            account.close()
    return mem


def _tree_cpu_s(pid: int) -> float:
    root = psutil.Process(pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system
    return total


class _Program(PeerProcess):
    """A coat's program; what it prints on stdout (READY, DONE) is kept to be read.

    It is stopped main group first: the Erlang VM's helper (erl_child_setup)
    runs in a session of its own and waits for the VM to go, so stopping the
    escaped groups first (``PeerProcess``'s order) would wait out its grace.
    """

    def __init__(
        self, argv: list[str], *, name: str, preexec: Callable[[], None] | None = None
    ) -> None:
        self.lines: deque[str] = deque()
        super().__init__(
            argv, prefix=temp_prefix(name), name=name, preexec=preexec, stdin_pipe=True
        )

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.note_groups()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_GRACE_S)
        return super().stop()

    def _drain(self, stream: IO[str] | None, sink: deque[str] | None) -> None:
        super()._drain(stream, self.lines if stream is self.proc.stdout else sink)

    def send_line(self, line: str) -> None:
        stdin = self.proc.stdin
        if stdin is None:
            raise RuntimeError(f"{self.name} has no stdin to send {line!r} to")
        stdin.write(line + "\n")
        stdin.flush()

    def next_line(self, word: str, deadline: float) -> dict[str, Any]:
        """The JSON after the next line starting with ``word``."""
        while time.monotonic() < deadline:
            if self.lines:
                line = self.lines.popleft()
                if line.startswith(word):
                    out: dict[str, Any] = json.loads(line.split(maxsplit=1)[1])
                    return out
                continue
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}: {self.stop()[-500:]}")
            time.sleep(0.002)
        raise RuntimeError(f"no {word} line in time")


@contextlib.contextmanager
def _running(
    argv: list[str], name: str, preexec: Callable[[], None] | None = None
) -> Iterator[_Program]:
    program = _Program(argv, name=name, preexec=preexec)
    try:
        yield program
    finally:
        program.stop()


def hop_cpu(coat: Coat, *, concurrency: int, hops: int, ms: int) -> dict[str, float]:
    """CPU seconds of the program's tree over its measured rounds, with the rounds,
    requests, wall seconds and cores used (CPU seconds per wall second)."""
    argv = coat.argv("hops", [concurrency, hops, ms])
    deadline = time.monotonic() + READY_TIMEOUT_S + 2 * ms / 1e3
    with _running(argv, f"coats-{coat.name}") as program:
        program.next_line("READY", deadline)
        # The program waits for a line after READY, so the CPU count is taken
        # while it waits, however late this reads READY on a busy machine.
        before = _tree_cpu_s(program.pid)
        program.send_line("GO")
        done = program.next_line("DONE", deadline)
        after = _tree_cpu_s(program.pid)
    rounds = int(done["rounds"])
    wall = float(done["wall_s"])
    cpu = after - before
    return {
        "rounds": rounds,
        "requests": rounds * concurrency,
        "wall_s": wall,
        "cpu_s": cpu,
        "cores_used": cpu / wall if wall > 0 else float("nan"),
    }
