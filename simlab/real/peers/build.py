"""What every peer shares: finding its runtime, its cached build, its temporary prefix, its start.

- A runtime that is missing is one line naming the Debian package to install
  (``MissingRuntime``, a ValueError: the CLI's exit status 2), never a traceback.
- A build (javac, go build) is cached under ``.cache/peers/<name>-<hash>``,
  keyed by a hash of its sources and the toolchain's version. It is made in a
  temporary folder beside the target and renamed into place, so two processes
  building at once both end up with a complete build and never a half one.
- A peer's configuration, sockets and logs live in a temporary prefix that is
  removed when the peer is stopped.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from simlab.errors import UserError
from simlab.provenance import ROOT
from simlab.real.processes import STOP_GRACE_S, Managed, wait_listening

__all__ = [
    "CACHE",
    "MissingRuntime",
    "PeerConfig",
    "PeerProcess",
    "cached_build",
    "find_program",
    "start_peer",
    "temp_prefix",
    "version_line",
]

CACHE = ROOT / ".cache" / "peers"
READY_TIMEOUT_S = 90.0
STALE_BUILD_S = 3600.0
# Connections ``start_peer`` opens before any load: one when ``wait_listening``
# first finds the port open, one for the ``PROBE`` answered 200. A server that
# hands each new connection to a thread (gthread) sees them as its first work.
# How many of them are open at once: one. The first is closed before
# ``wait_listening`` returns and the probe's connection is opened after it, so
# a pool that reuses an idle thread (gthread's ThreadPoolExecutor) starts one
# thread for both, unless its first thread is still closing the first when the
# second arrives (gthread's idle structure run at 1 process and 1 connection
# held 1 pool thread, not 2).
READINESS_IN_FLIGHT = 1
PROBE = b"GET /work?cpu_ms=0&io_ms=0&calls=0 HTTP/1.1\r\nHost: ready\r\nConnection: close\r\n\r\n"
# Where Debian puts daemons (php-fpm, nginx): not on a normal user's PATH.
SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


@dataclass(frozen=True)
class PeerConfig:
    """How to run a peer: the lab's ``--workers``, ``--processes`` and ``--backlog``
    (each peer says what they mean for it), its port and the backend's."""

    port: int
    backend_port: int
    workers: int = 32
    processes: int = 1
    backlog: int | None = None
    request_timeout: float = 10.0
    stack_kib: int = 0
    # Run in the child before exec: the lab uses it to join the server's memory cgroup.
    preexec: Callable[[], None] | None = None


class MissingRuntime(UserError):  # noqa: N818 - it reads as the condition, like BadRequest
    """A peer's runtime is not installed; the message names the package."""


def find_program(names: Iterable[str], *, peer: str, packages: Iterable[str]) -> str:
    """The path of the first of ``names`` installed, or MissingRuntime naming ``packages``."""
    names = list(names)
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(SBIN)
    for name in names:
        found = shutil.which(name, path=path)
        if found:
            return found
    raise MissingRuntime(
        f"{peer}: {names[0]} is not installed; install it with: "
        f"apt-get install {' '.join(packages)}"
    )


def version_line(argv: list[str]) -> str:
    """The first line a program prints about its version (nginx and java print to stderr)."""
    return _version_line(tuple(argv))


# Once per process and program: a version does not change while simlab runs, and
# some cost seconds to ask (kotlinc and java start a JVM), once per build key and run.
@functools.cache
def _version_line(argv: tuple[str, ...]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    lines = [x.strip() for x in (out.stdout + out.stderr).splitlines() if x.strip()]
    return lines[0] if lines else "unknown"


def source_key(sources: Iterable[Path], extra: str) -> str:
    digest = hashlib.sha256(extra.encode())
    for path in sorted(sources):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def cached_build(
    name: str, sources: Iterable[Path], extra: str, build: Callable[[Path], None]
) -> Path:
    """The folder holding ``name``'s build, made by ``build(folder)`` on first use.

    ``extra`` (the toolchain's version, a classpath) is part of the key, so
    an upgraded compiler builds afresh instead of reusing a stale output.
    """
    target = CACHE / f"{name}-{source_key(sources, extra)}"
    if target.is_dir():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    # A build killed outright (SIGKILL) leaves its temporary folder: an hour on, it is litter.
    for stale in CACHE.glob(f".{name}-*"):
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > STALE_BUILD_S:
                shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=CACHE))
    try:
        build(tmp)
        try:
            tmp.rename(target)
        except OSError:
            # Another process finished the same build first: its copy is as good.
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def run_build(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> None:
    """Run one build step; a failure is a RuntimeError with the compiler's last words."""
    full_env = {**os.environ, **(env or {})}
    out = subprocess.run(
        argv, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600, check=False
    )
    if out.returncode != 0:
        tail = (out.stdout + out.stderr).strip()[-1500:]
        raise RuntimeError(f"building with {Path(argv[0]).name} failed:\n{tail}")


def temp_prefix(name: str) -> Path:
    """A fresh private folder for one peer's configuration, sockets and logs."""
    prefix = Path(tempfile.mkdtemp(prefix=f"simlab-{name}-"))
    # Worker processes that drop privileges (nginx's, php-fpm's) must reach their sockets.
    prefix.chmod(0o755)
    return prefix


class PeerProcess(Managed):
    """A peer's process tree; stopping it also stops what left its process group,
    and removes its temporary prefix.

    Some daemons start a session of their own even in the foreground (PHP-FPM
    calls setsid() unconditionally), so the group kill of ``Managed`` would
    miss them: their groups are noted once the peer is up, and again at stop,
    and stopped the same way, SIGTERM then SIGKILL.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        prefix: Path | None = None,
        name: str = "peer",
        preexec: Callable[[], None] | None = None,
        stdin_pipe: bool = False,
    ) -> None:
        # Set before starting: a start that fails calls stop(), which uses them.
        self.prefix = prefix
        self.groups: set[int] = set()
        super().__init__(
            argv, env=env, ready_line=False, name=name, preexec=preexec, stdin_pipe=stdin_pipe
        )

    def note_groups(self) -> None:
        """Remember the process groups of the tree other than the peer's own."""
        with contextlib.suppress(psutil.Error):
            for p in psutil.Process(self.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error, OSError):
                    pgid = os.getpgid(p.pid)
                    if pgid != self.pid:
                        self.groups.add(pgid)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.note_groups()
        # First the escaped groups: their ends of the peer's stderr pipe must be
        # closed before Managed drains it.
        _stop_groups(self.groups)
        err = super().stop()
        if self.prefix is not None:
            shutil.rmtree(self.prefix, ignore_errors=True)
        return err


def _group_alive(pgid: int) -> bool:
    for p in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                return True
    return False


def _stop_groups(groups: set[int]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        live = set()
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
                live.add(pgid)
        deadline = time.monotonic() + STOP_GRACE_S
        while live and time.monotonic() < deadline:
            live = {g for g in live if _group_alive(g)}
            if live:
                time.sleep(0.05)
        if not live:
            return


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(PROBE)
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return False
    return data.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))


def start_peer(
    name: str,
    argv: list[str],
    *,
    port: int,
    env: dict[str, str] | None = None,
    prefix: Path | None = None,
    wait_for: Path | None = None,
    preexec: Callable[[], None] | None = None,
) -> Managed:
    """Start a peer and return once it answers a trivial ``/work`` with 200.

    Listening is not enough: nginx listens before its PHP-FPM or uWSGI pool
    is up (its first answers are 502), and a JVM before Tomcat's servlet is.
    ``wait_for`` is a socket file to wait for first (the application tier's),
    so that nginx is not asked, and does not log, before it can answer.
    """
    server = PeerProcess(argv, env=env, prefix=prefix, name=name, preexec=preexec)
    server.port = port
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while wait_for is not None and not wait_for.exists():
            if server.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{wait_for.name} did not appear")
            time.sleep(0.02)
        wait_listening(port, server.proc, READY_TIMEOUT_S)
        while not _answers(port):
            if server.proc.poll() is not None:
                raise RuntimeError(f"exited with {server.proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no 200 answer within {READY_TIMEOUT_S:g} s")
            time.sleep(0.1)
        server.note_groups()
    except RuntimeError as exc:
        logs = [p.read_text(errors="replace") for p in prefix.glob("*.log")] if prefix else []
        err = server.stop() + "".join(logs)
        raise RuntimeError(f"{name} failed to start: {exc}: {err.strip()[-800:]}") from None
    except BaseException:
        server.stop()
        raise
    return server
