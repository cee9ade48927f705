"""What memory a server holds: counts of units, and what each unit costs on a platform.

One formula for every caller. The DES's levels (``metrics``) weigh each
unit's life over time; the planner's estimate multiplies expected peak
counts. Both take the per-unit costs from ``unit_costs``:

unit                    user (in the process)      kernel                  reserved
======================  =========================  ======================  ==========
process (the server)    process_kib                process_kernel_kib
touched (a fork that    fork_touched_kib
  has served: its
  copy-on-write growth)
called (a child per      fork_call_kib
  connection that has
  made a backend call)
fork (a forked child    fork_kib - thread_kib      fork_kernel -
  beyond its thread)                               thread_kernel_kib
thread                  thread_kib                 thread_kernel_kib       stack_kib
connection (a client's  connection_kib             connection_kernel_kib
  socket)
task (a request in      task_kib
  flight)
backend_conn (a         backend_conn_kib           connection_kernel_kib
  thread's or loop's
  own backend socket)
front (a front loop's   front_process_kib
  process, two-tier)
front_conn (a client    front_connection_kib       connection_kernel_kib
  socket on the front)
buffer_kib (a slow                                 1 KiB
  client's bytes)
served (a thread that   thread_served_kib
  has served: its grown
  stack and buffers)
child (a child forked                              child_kernel -
  per connection, beyond                           fork_kernel
  a pre-forked copy)
copy (a pre-forked      copy_kib
  copy's own start and
  first service)
copy_call (a copy that  copy_call_kib
  has made a backend
  call)
======================  =========================  ======================  ==========

resident = user + kernel (what the machine must have); reserved virtual =
threads x stack_kib. A forked child's one thread is in its ``fork_kib``,
which is why a fork counts as a thread plus the difference. A fork's kernel
cost (``Platform.fork_kernel``) grows with its parent's size: the parent is
the server process, ``process_kib``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from simlab.params import Platform

__all__ = ["KIB_PER_MIB", "UNITS", "Footprint", "Units", "copies_units", "unit_costs"]

KIB_PER_MIB = 1024.0
# The order in which units are summed: it is part of the result (floating point).
UNITS = (
    "process",
    "touched",
    "fork",
    "thread",
    "connection",
    "task",
    "backend_conn",
    "front",
    "front_conn",
    "buffer_kib",
    "called",
    "served",
    "child",
    "copy",
    "copy_call",
)


def unit_costs(p: Platform) -> dict[str, tuple[float, float, float]]:
    """(user, kernel, reserved) KiB of one of each unit on platform ``p``."""
    return {
        "process": (p.process_kib, p.process_kernel_kib, 0.0),
        "touched": (p.fork_touched_kib, 0.0, 0.0),
        "fork": (p.fork_kib - p.thread_kib, p.fork_kernel - p.thread_kernel_kib, 0.0),
        "thread": (p.thread_kib, p.thread_kernel_kib, p.stack_kib),
        "connection": (p.connection_kib, p.connection_kernel_kib, 0.0),
        "task": (p.task_kib, 0.0, 0.0),
        "backend_conn": (p.backend_conn_kib, p.connection_kernel_kib, 0.0),
        # A buffering front's loop process beyond its thread, and a client
        # connection it holds (``two-tier``).
        "front": (p.front_process_kib, 0.0, 0.0),
        "front_conn": (p.front_connection_kib, p.connection_kernel_kib, 0.0),
        # A KiB of a slow client's request or answer waiting in a socket buffer.
        "buffer_kib": (0.0, 1.0, 0.0),
        # A child per connection's growth from its first backend call.
        "called": (p.fork_call_kib, 0.0, 0.0),
        # A thread's growth once it has served (``Platform.thread_served_kib``).
        "served": (p.thread_served_kib, 0.0, 0.0),
        # A child forked per connection holds its own kernel memory
        # (``Platform.child_kernel``), not a pre-forked copy's: the difference.
        "child": (0.0, p.child_kernel - p.fork_kernel, 0.0),
        # A pre-forked copy's own growth (``Platform.copy_kib``).
        "copy": (p.copy_kib, 0.0, 0.0),
        # A pre-forked copy's growth from its first backend call.
        "copy_call": (p.copy_call_kib, 0.0, 0.0),
    }


def copies_units(copies: int, calls: int) -> dict[str, int]:
    """A server's pre-forked copies as units: each a fork that has served and
    grown on its own, and more once it has called the backend (``calls`` a
    request). A forking server's children are counted apart."""
    return {"touched": copies, "fork": copies, "copy": copies, "copy_call": copies if calls else 0}


@dataclass(frozen=True)
class Units:
    """How many of each unit a server holds at once."""

    process: int = 1
    touched: int = 0
    fork: int = 0
    thread: int = 0
    connection: int = 0
    task: int = 0
    backend_conn: int = 0
    front: int = 0
    front_conn: int = 0
    buffer_kib: float = 0.0
    called: int = 0
    served: float = 0.0
    child: int = 0
    copy: int = 0
    copy_call: int = 0

    def footprint(self, platform: Platform) -> Footprint:
        costs = unit_costs(platform)
        user = kernel = reserved = 0.0
        for unit in UNITS:
            n = getattr(self, unit)
            if unit == "backend_conn" and platform.backend_pool and n:
                # A shared pool holds one per request in flight at the peak,
                # not one per thread that has called (``Platform.backend_pool``).
                n = min(n, max(self.task, 1))
            u, k, v = costs[unit]
            user += n * u
            kernel += n * k
            reserved += n * v
        return Footprint(user, kernel, reserved)


@dataclass(frozen=True)
class Footprint:
    """Memory in KiB: user space, kernel, and reserved virtual (thread stacks)."""

    user_kib: float
    kernel_kib: float
    reserved_kib: float

    @property
    def resident_mib(self) -> float:
        return (self.user_kib + self.kernel_kib) / KIB_PER_MIB

    @property
    def user_mib(self) -> float:
        return self.user_kib / KIB_PER_MIB

    @property
    def kernel_mib(self) -> float:
        return self.kernel_kib / KIB_PER_MIB

    @property
    def reserved_mib(self) -> float:
        return self.reserved_kib / KIB_PER_MIB


assert tuple(f.name for f in fields(Units)) == UNITS
