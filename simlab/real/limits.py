"""What this machine allows: open files, threads, ephemeral ports, memory.

Real runs check their size against these before starting, so that a run
that cannot fit says so instead of failing half-way.
"""

from __future__ import annotations

import resource

import psutil

from simlab.errors import UserError

__all__ = ["check_fits", "ephemeral_ports", "raise_fd_limit"]


def raise_fd_limit(wanted: int | None = None) -> int:
    """Raise the soft open-files limit toward ``wanted`` (default: the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if wanted is None else min(max(soft, wanted), hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _read_int(path: str, default: int) -> int:
    try:
        with open(path) as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def ephemeral_ports() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            lo, hi = (int(x) for x in fh.read().split())
    except (OSError, ValueError):
        lo, hi = 32768, 60999
    return hi - lo + 1


def check_fits(
    *,
    connections: int,
    threads: int,
    processes: int,
    memory_mib: float,
    sources: int,
    backend_conns: int | None = None,
) -> None:
    """Raise UserError naming the limit a run of this size would break on this machine.

    ``backend_conns`` is how many backend connections the server opens (by
    default one per thread; none when requests make no backend call).
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # The server holds each client connection and, per calling thread, a backend one.
    fds = connections + (threads if backend_conns is None else backend_conns) + 64
    if fds > hard:
        raise UserError(
            f"connections: {connections:,} connections need about {fds:,} open files in one "
            f"process, over this machine's hard limit of {hard:,} (ulimit -Hn)"
        )
    ports = ephemeral_ports() * sources
    if connections > ports:
        raise UserError(
            f"connections: {connections:,} exceed the {ports:,} ephemeral ports of "
            f"{sources} source addresses"
        )
    threads_max = _read_int("/proc/sys/kernel/threads-max", 1 << 20)
    pid_max = _read_int("/proc/sys/kernel/pid_max", 1 << 22)
    if threads > min(threads_max, pid_max) // 2:
        raise UserError(f"{threads:,} threads is over half this machine's limit ({threads_max:,})")
    if processes > pid_max // 2:
        raise UserError(
            f"{processes:,} processes is over half this machine's pid_max ({pid_max:,})"
        )
    available = psutil.virtual_memory().available / 2**20
    if memory_mib > 0.8 * available:
        raise UserError(
            f"the run needs about {memory_mib:,.0f} MiB resident, over 80% of the "
            f"{available:,.0f} MiB available"
        )
