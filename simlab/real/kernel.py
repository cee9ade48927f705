"""The server's own kernel memory: a memory cgroup of its own, net of everyone else.

The kernel holds memory for a server that its processes' resident sets do
not show: each thread's kernel stack and task structures, each socket,
page tables. The machine's total (``/proc/meminfo``) also holds the load
generator's client ends and the backend's, so it cannot say which is the
server's. A memory cgroup can: the server's processes join one at their
start (before they fork anything), and the kernel charges what it
allocates for them to it.

One allocation escapes the charge: when a client connects, the kernel
creates the server's end of the connection (a ``TCP`` socket object) in
interrupt context, charged to no cgroup; ``accept`` then charges only the
file and inode. So the server's kernel memory is the cgroup's kernel
charge plus, for each accepted connection it holds, the size of one
``TCP`` slab object (read from ``/proc/slabinfo``). The models count the
same things (``footprint``: threads, sockets, forks), and calibration
measures their per-unit costs the same way.

Where no memory cgroup can be made (not root, no memory controller), the
kernel memory is not measured and says so; nothing else changes.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["KernelAccount", "accepted_sockets", "tcp_object_kib"]

V1_ROOT = Path("/sys/fs/cgroup/memory")
V2_ROOTS = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))
# A cgroup is removed once its processes have gone; they may take a moment.
REMOVE_TRIES, REMOVE_PAUSE_S = 50, 0.1
_names = itertools.count()


def tcp_object_kib() -> float:
    """The size of one TCP socket object in the kernel's slab (KiB), or 0 if unknown."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/slabinfo").read_text().splitlines():
            parts = line.split()
            if parts and parts[0] == "TCP":
                return int(parts[3]) / 1024
    return 0.0


class KernelAccount:
    """A memory cgroup that a server's processes join at their start.

    ``preexec`` is the function to run in a child between fork and exec (it
    uses only async-signal-safe calls, as ``subprocess`` requires);
    ``kernel_kib`` what the kernel has charged to the group so far.
    """

    def __init__(self, path: Path, version: int) -> None:
        self.path = path
        self.version = version

    @classmethod
    def create(cls) -> tuple[KernelAccount | None, str]:
        """A new group, or None and why none can be made here."""
        name = f"simlab-{os.getpid()}-{next(_names)}"
        if (V1_ROOT / "memory.kmem.usage_in_bytes").exists():
            path = V1_ROOT / name
            try:
                path.mkdir()
            except OSError as exc:
                return None, f"cannot make a memory cgroup ({exc.strerror}; run as root)"
            return cls(path, 1), ""
        for root in V2_ROOTS:
            controllers = root / "cgroup.subtree_control"
            with contextlib.suppress(OSError):
                if "memory" in controllers.read_text().split():
                    path = root / name
                    try:
                        path.mkdir()
                    except OSError as exc:
                        return None, f"cannot make a memory cgroup ({exc.strerror})"
                    return cls(path, 2), ""
        return None, "this machine has no memory cgroup controller to account kernel memory"

    @property
    def preexec(self) -> Callable[[], None]:
        procs = str(self.path / "cgroup.procs").encode()

        def join() -> None:
            fd = os.open(procs, os.O_WRONLY)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)

        return join

    def kernel_kib(self) -> float:
        """Kernel memory charged to the group (KiB): slab objects, kernel stacks,
        page tables and socket buffers of its processes."""
        if self.version == 1:
            kmem = int((self.path / "memory.kmem.usage_in_bytes").read_text())
            tcp = int((self.path / "memory.kmem.tcp.usage_in_bytes").read_text())
            return (kmem + tcp) / 1024
        stat = dict(line.split() for line in (self.path / "memory.stat").read_text().splitlines())
        return int(stat.get("kernel", 0)) / 1024 + int(stat.get("sock", 0)) / 1024

    def levels(self) -> tuple[int, int]:
        """Live threads and processes in the group now: one read of each list.

        A process that has exited leaves the group's lists at once, reaped or
        not, as the probe counts no thread for a zombie."""
        threads = self.path / ("tasks" if self.version == 1 else "cgroup.threads")
        return _lines(threads), _lines(self.path / "cgroup.procs")

    def close(self) -> None:
        """Remove the group once its processes are gone (they are stopped first)."""
        for _ in range(REMOVE_TRIES):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(REMOVE_PAUSE_S)


def _lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return fh.read().count(b"\n")


_LISTEN, _TIME_WAIT = "0A", "06"


def accepted_sockets(port: int) -> int:
    """How many connections to local ``port`` are open (accepted and not yet gone).

    Only the server listens on ``port``, so every such socket is its own.
    Counted by ``ss`` with the kernel's own filter (netlink), which stays
    cheap with tens of thousands of sockets; else by reading /proc/net/tcp.
    A connection in TIME_WAIT no longer holds a socket object, so it is not
    counted.
    """
    with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
        out = subprocess.run(
            ["ss", "-Htn", "state", "connected", "exclude", "time-wait", f"sport = :{port}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return sum(1 for line in out.splitlines() if line.strip())
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            next(fh, None)
            for line in fh:
                parts = line.split()
                local, state = parts[1], parts[3]
                if state not in (_LISTEN, _TIME_WAIT) and int(local.rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count
