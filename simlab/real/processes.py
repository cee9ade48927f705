"""Starting and stopping the lab's processes (backend, server, load) by their process ids.

Each is started in a session of its own, so that stopping it by its process
group also stops whatever it forked (pre-forked copies, per-connection
children), and a Ctrl-C in the terminal reaches only simlab, which then
stops them in order. ``Managed`` guarantees the stop on every exit path.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import IO, NoReturn

__all__ = [
    "Managed",
    "exit_after",
    "free_port",
    "port_is_free",
    "share_priority",
    "wait_listening",
]

STOP_GRACE_S = 15.0
STDERR_LINES = 200


def share_priority(pid: int) -> None:
    """Give the session ``pid`` leads this process's nice value.

    Linux's scheduler autogroups (``kernel.sched_autogroup_enabled``) put each
    session in a group of its own at nice 0, and the groups share the cores
    equally whatever their members' nice: a server started in a new session
    would ignore the ``nice -n -10`` its run was started with, and get no more
    than a niced test suite in another session. The group's own nice (its
    ``/proc/<pid>/autogroup``) is set to this process's; where autogroups are
    off or absent, or a negative value is not allowed, nothing changes.
    """
    with contextlib.suppress(OSError), open(f"/proc/{pid}/autogroup", "w") as f:
        f.write(str(os.getpriority(os.PRIO_PROCESS, 0)))


def free_port() -> int:
    """A port nobody listens on right now (for servers that can't report theirs)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    """True when nothing accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) != 0


def exit_after(body: Callable[[], object]) -> NoReturn:
    """In a forked child: run ``body``, then leave the process (0 if it
    returned, 1 if it raised) without unwinding into the stack it inherited
    from its parent, whose ``finally`` blocks and exit handlers are not its own."""
    code = 0
    try:
        body()
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def wait_listening(port: int, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before listening")
        if not port_is_free(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {timeout:g} s")


class Managed:
    """A child process that is stopped (SIGTERM, then SIGKILL) with its whole group.

    Its stdout and stderr are drained by threads as it runs, so a chatty
    child (uvicorn logging every 503) can never block on a full pipe; the last
    lines of stderr are kept for error messages. If anything interrupts the
    start (Ctrl-C while waiting for READY), the child is stopped before the
    exception goes on.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        ready_line: bool = True,
        name: str = "process",
        preexec: Callable[[], None] | None = None,
        stdin_pipe: bool = False,
    ) -> None:
        self.name = name
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
            start_new_session=True,
            # Only joins a memory cgroup, with raw syscalls: safe beside threads.
            preexec_fn=preexec,  # noqa: PLW1509
        )
        share_priority(self.proc.pid)
        self.port = 0
        self._stderr: deque[str] = deque(maxlen=STDERR_LINES)
        self._drains: list[threading.Thread] = []
        try:
            if ready_line:
                assert self.proc.stdout is not None
                line = self.proc.stdout.readline()
                if not line.startswith("READY"):
                    err = self.stop()
                    raise RuntimeError(
                        f"{name} failed to start: {line.strip()} {err.strip()[-500:]}"
                    )
                self.port = int(line.split()[1])
            self._drain(self.proc.stdout, None)
            self._drain(self.proc.stderr, self._stderr)
        except BaseException:
            self.stop()
            raise

    def _drain(self, stream: IO[str] | None, sink: deque[str] | None) -> None:
        if stream is None:
            return

        def pump() -> None:
            with contextlib.suppress(ValueError, OSError):
                for line in stream:
                    if sink is not None:
                        sink.append(line)

        t = threading.Thread(target=pump, daemon=True, name=f"drain-{self.name}")
        t.start()
        self._drains.append(t)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> str:
        """Stop the process group; returns the end of what it wrote on stderr."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # Children of the group that outlived their parent (they should not).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if not self._drains and self.proc.stderr is not None:
            with contextlib.suppress(ValueError, OSError):
                self._stderr.extend(self.proc.stderr.readlines()[-STDERR_LINES:])
        for t in self._drains:
            t.join(2.0)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        return "".join(self._stderr)

    def __enter__(self) -> Managed:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def python() -> str:
    return sys.executable
