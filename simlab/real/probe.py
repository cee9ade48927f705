"""The probe: psutil samples of a server's whole process tree, every 100 ms.

Per sample, summed over the tree: resident (RSS), proportional (PSS: shared
pages split between the processes that share them, so forked children are
not double counted), private (USS) and virtual (VMS) memory, threads, open
fds, voluntary and involuntary context switches and CPU time (reaped
children's included); exited children not yet reaped (zombies) count for
their CPU only; and the server's own kernel memory (its threads'
kernel stacks and structures, its sockets, its page tables: what no
process's resident set shows), from the memory cgroup it runs in
(``simlab.real.kernel``), when there is one.

Reads start on a fixed grid ``SAMPLE_INTERVAL_S`` apart. PSS, USS and the
count of accepted connections (which kernel memory adds) need a read of
every process's smaps, milliseconds each, so they are read on every tenth
point of that grid, ``USER_SAMPLE_INTERVAL_S`` apart whatever the tree's
size, and carried between. The light samples still read a few files per
process, about 0.15 ms each, ten times a second (``simlab.real.probe_cost``
measures what the probe costs). A summary's peak is the largest read in the
window: for a level that rises and falls between reads (threads or children
made per connection, their memory) that is below the exact peak, and the
simulation reports the same sampled quantities as ``threads.peak`` and
``memory_mib``'s peaks (``simlab.metrics.sampled_peak``,
``sampled_memory_peaks``).

A sample of a large busy tree can take far longer than the grid's step:
200 children busy at 700/s left the probe's thread so little of the cores
that a sample took 4 to 8 s, and the run's threads peak was the largest of
two reads (150 and 157 processes, where the children reached 200 within
the window). So where the server has a memory cgroup, its threads and
processes are read apart, on the grid, from the group's task lists
(``LevelReads``: one file each, a line per thread or process), and those
reads give the summary's ``threads`` and ``processes``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import psutil

from simlab.measured import RunQueue
from simlab.real.kernel import KernelAccount, accepted_sockets, tcp_object_kib
from simlab.results import SAMPLE_INTERVAL_S, USER_SAMPLE_INTERVAL_S

__all__ = [
    "Probe",
    "ProbeSample",
    "ThreadCounts",
    "kernel_kib",
    "machine_busy_s",
    "run_queue_waits",
    "thread_switch_rates",
    "thread_switches",
]

NAN = float("nan")

FIELDS = (
    "rss_mib",
    "pss_mib",
    "uss_mib",
    "vms_mib",
    "threads",
    "fds",
    "processes",
    "ctx_voluntary",
    "ctx_involuntary",
    "cpu_s",
    "kernel_mib",
    "memory_mib",
    "lab_cpu_s",
    "front_cpu_s",
)
# A buffering front's processes (the nginx peers' master and workers): their
# CPU is also kept apart, so that calibration can split a two-tier server's
# CPU between its front and its back.
FRONT_NAMES = ("nginx",)
MIB = 2**20


def kernel_kib() -> float:
    """Machine-wide kernel memory that grows with threads and sockets (KiB)."""
    wanted = {"Slab", "KernelStack", "PageTables"}
    total = 0.0
    with open("/proc/meminfo") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in wanted:
                total += float(rest.split()[0])
    return total


@dataclass
class ProbeSample:
    time: float
    values: dict[str, float]


class ThreadCounts(NamedTuple):
    """One thread's counts so far: its voluntary and involuntary context
    switches (``/proc/PID/task/TID/status``), and from the scheduler's own
    accounting (``/proc/PID/task/TID/schedstat``; -1 where the kernel keeps
    none) its time on a core, its time runnable on a run queue waiting for
    one, and how many times it ran, in nanoseconds and counts."""

    voluntary: int
    involuntary: int
    cpu_ns: int = -1
    wait_ns: int = -1
    slices: int = -1


def _schedstat(pid: int, tid: str) -> tuple[int, int, int]:
    try:
        cpu, wait, slices = (
            int(x) for x in Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
        )
    except (OSError, ValueError):
        return -1, -1, -1
    return cpu, wait, slices


def thread_switches(root: psutil.Process) -> dict[int, ThreadCounts]:
    """Every live thread of ``root``'s tree: its context switches so far and
    its scheduler counts (``ThreadCounts``), by thread id.

    psutil's ``num_ctx_switches`` (what the probe's samples sum) reads
    ``/proc/PID/status``, the main thread's alone; a threaded server's other
    threads are only here. Two reads per thread: taken twice a run, not per
    sample (10,000 threads are 20,000 files)."""
    procs = [root]
    with contextlib.suppress(psutil.NoSuchProcess):
        procs += root.children(recursive=True)
    counts: dict[int, ThreadCounts] = {}
    for p in procs:
        try:
            tids = os.listdir(f"/proc/{p.pid}/task")
        except OSError:
            continue  # gone
        for tid in tids:
            try:
                text = Path(f"/proc/{p.pid}/task/{tid}/status").read_text()
            except OSError:
                continue  # exited since
            fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
            with contextlib.suppress(KeyError, ValueError):
                counts[int(tid)] = ThreadCounts(
                    int(fields["voluntary_ctxt_switches"]),
                    int(fields["nonvoluntary_ctxt_switches"]),
                    *_schedstat(p.pid, tid),
                )
    return counts


def thread_switch_rates(
    first: dict[int, ThreadCounts], second: dict[int, ThreadCounts], seconds: float
) -> tuple[float, float] | None:
    """Voluntary and involuntary switches a second of the tree's threads
    between two ``thread_switches`` reads ``seconds`` apart; None unless the
    same threads were there at both (a thread that exited took its counts
    with it). Threads that came and went between the reads are not seen
    here: the caller checks that the tree's threads held still."""
    if not first or set(first) != set(second) or not seconds > 0:
        return None
    voluntary = sum(second[t][0] - first[t][0] for t in first)
    involuntary = sum(second[t][1] - first[t][1] for t in first)
    return voluntary / seconds, involuntary / seconds


class LevelReads(threading.Thread):
    """The live threads and processes of a server's memory cgroup, read every
    ``interval`` on a fixed grid (``KernelAccount.levels``): the same counts
    as the probe's samples (no thread for a zombie), cheap enough to stay on
    the grid however large and busy the tree is (two small files, a line per
    thread and per process). One case counts apart: a process whose main
    thread has exited while others run is a zombie to psutil (no thread in
    the samples) and its live threads here."""

    def __init__(self, account: KernelAccount, interval: float = SAMPLE_INTERVAL_S) -> None:
        super().__init__(daemon=True, name="probe-levels")
        self.account = account
        self.interval = interval
        # (wall time, threads, processes)
        self.reads: list[tuple[float, int, int]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        due = time.monotonic()
        while not self._halt.is_set():
            try:
                threads, processes = self.account.levels()
            except (OSError, ValueError):
                break  # the group is gone: the server stopped
            self.reads.append((time.time(), threads, processes))
            # As the probe's samples keep their grid: a late read still leaves
            # half an interval before the next.
            due = max(due + self.interval, time.monotonic() + self.interval / 2)
            self._halt.wait(due - time.monotonic())

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def summary(self, window: tuple[float, float]) -> dict[str, dict[str, float]] | None:
        """Peak, mean and first read of both levels over the reads inside
        ``window``, or None unless the reads cover it (their first and last
        within two intervals of its ends: reads that stopped early, the group
        gone, leave the answer to the probe's samples)."""
        inside = [r for r in self.reads if window[0] <= r[0] <= window[1]]
        slack = 2 * self.interval
        if not inside or inside[0][0] > window[0] + slack or inside[-1][0] < window[1] - slack:
            return None
        levels = np.array([r[1:] for r in inside])
        return {
            key: {
                "peak": float(levels[:, k].max()),
                "mean": float(levels[:, k].mean()),
                "first": float(levels[0, k]),
            }
            for k, key in enumerate(("threads", "processes"))
        }


def machine_busy_s(cpus: set[int] | None = None) -> float:
    """The machine's busy CPU seconds so far, summed over ``cpus`` (None:
    every core): user, nice, system and interrupt time (not idle, not
    waiting on disk, not stolen by a hypervisor: a thread that waits while
    its virtual core is stolen counts that time as a wait, which this load
    does not explain)."""
    per = psutil.cpu_times(percpu=True)
    chosen = per if cpus is None else [t for k, t in enumerate(per) if k in cpus]
    return float(sum(t.user + t.nice + t.system + t.irq + t.softirq for t in chosen))


def run_queue_waits(  # noqa: PLR0917 - the two reads and what lies between them
    first: dict[int, ThreadCounts],
    second: dict[int, ThreadCounts],
    seconds: float,
    busy_s: float,
    served: float,
    cores: int,
) -> RunQueue | None:
    """What the threads of two ``thread_switches`` reads ``seconds`` apart
    waited for a core, a request (``served`` between the reads), against one
    shared queue (``simlab.measured.RunQueue``'s fields).

    The threads' time runnable but not running (``wait_ns``) is what Linux's
    per-core run queues made them wait. What one queue of ``cores`` would
    make them wait is Erlang C's mean wait, offered the machine's busy cores
    (``busy_s`` of CPU in the span: the lab's processes and anything else on
    the machine compete for the cores too) in runs as long as the threads'
    mean run on a core (time on a core over runs); times their runs a
    request. None unless the same threads were there at both reads (as
    ``thread_switch_rates``), the kernel kept their counts, something was
    served and they ran."""
    if not first or set(first) != set(second) or not (seconds > 0 and served > 0):
        return None
    if any(c.wait_ns < 0 for c in (*first.values(), *second.values())):
        return None
    deltas = [
        (second[t].wait_ns - first[t].wait_ns, second[t].cpu_ns - first[t].cpu_ns,
         second[t].slices - first[t].slices)
        for t in first
    ]  # fmt: skip
    # A count that fell is another thread under a reused id: not the same threads.
    if any(min(d) < 0 for d in deltas):
        return None
    wait = sum(d[0] for d in deltas) / 1e9
    cpu = sum(d[1] for d in deltas) / 1e9
    slices = sum(d[2] for d in deltas)
    if slices <= 0 or cpu <= 0:
        return None
    slice_s = cpu / slices
    offered = max(busy_s / seconds, 0.0)
    shared = None
    if offered < cores:
        from simlab.theory import erlang_c  # noqa: PLC0415 - light, but only here

        shared = 1e3 * erlang_c(cores, offered) * slice_s / (cores - offered) * slices / served
    return RunQueue(
        wait_ms_per_request=1e3 * wait / served,
        shared_queue_ms_per_request=shared,
        machine_busy_cores=offered,
        slice_ms=1e3 * slice_s,
        slices_per_request=slices / served,
    )


class Probe(threading.Thread):
    """Samples a server's process tree; ``account`` (its memory cgroup) and
    ``port`` (where it accepts) give its own kernel memory, and the account
    its threads and processes on the grid (``LevelReads``)."""

    def __init__(
        self,
        pid: int,
        interval: float = SAMPLE_INTERVAL_S,
        *,
        account: KernelAccount | None = None,
        port: int = 0,
        neighbours: tuple[int, ...] = (),
    ) -> None:
        super().__init__(daemon=True, name="probe")
        self.root = psutil.Process(pid)
        self.interval = interval
        self.samples: list[ProbeSample] = []
        self._halt = threading.Event()
        self._last_full: tuple[float, float, int] = (0.0, 0.0, 0)
        self.account = account
        self.port = port
        self.tcp_kib = tcp_object_kib()
        # Other lab processes on the same cores (the backend): their CPU only.
        self.neighbours = [psutil.Process(p) for p in neighbours]
        self.levels = LevelReads(account, interval) if account is not None else None

    def start(self) -> None:
        super().start()
        if self.levels is not None:
            self.levels.start()

    def run(self) -> None:
        # Reads on a fixed grid, ``interval`` apart however long a read takes
        # (while it takes less), so that a sampled peak is the simulation's
        # ``threads.peak``: the level read every ``SAMPLE_INTERVAL_S``.
        due = time.monotonic()
        # PSS on its own fixed grid, known to the simulation, rather than
        # spaced by what a read costs: a spacing that followed the tree's
        # size would make the user peak a different quantity per run.
        next_full = due
        while not self._halt.is_set():
            t0 = time.monotonic()
            # Half an interval's slack: the reads fall on the grid's points
            # up to the timer's lateness.
            full = t0 >= next_full - self.interval / 2
            try:
                self.samples.append(self.sample(full=full))
            except psutil.NoSuchProcess:
                break
            while full and next_full <= t0 + self.interval / 2:
                next_full += USER_SAMPLE_INTERVAL_S
            # A read that overran (a large tree) still leaves the server half
            # an interval of the probe's quiet.
            due = max(due + self.interval, time.monotonic() + self.interval / 2)
            self._halt.wait(due - time.monotonic())

    def stop(self) -> None:
        self._halt.set()
        if self.levels is not None:
            self.levels.stop()
        self.join(5)

    def _cpu_pass(
        self, procs: list[psutil.Process], v: dict[str, float]
    ) -> tuple[list[psutil.Process], float]:
        """Add the tree's and the neighbours' CPU counters to ``v``: the live
        processes (not zombies) and when the counters were read."""
        # The CPU counters first, in one pass with nothing slow between them,
        # and the sample stamped when they were read: the rest of a read (a
        # large tree's PSS, its sockets) can take a good part of a second on
        # saturated cores, and a stamp taken after it would move the window's
        # ends unevenly (two copies of 1,000 threads each read 2.55 busy
        # cores on 2 when so stamped, 6 December).
        before = time.time()
        live = []
        for p in procs:
            try:
                with p.oneshot():
                    cpu = p.cpu_times()
                    if p.status() == psutil.STATUS_ZOMBIE:
                        # An exited child not reaped yet holds no thread and no
                        # memory (psutil still answers one thread for it): only
                        # its CPU counts, which moves to its parent's reaped
                        # children's once it is reaped.
                        v["cpu_s"] += cpu.user + cpu.system
                        continue
                    # children_*: CPU of children already reaped (per-connection
                    # forks that exited), which no live process shows any more.
                    spent = cpu.user + cpu.system + cpu.children_user + cpu.children_system
                    v["cpu_s"] += spent
                    if p.name() in FRONT_NAMES:
                        v["front_cpu_s"] += spent
                    live.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        for n in self.neighbours:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                cpu = n.cpu_times()
                v["lab_cpu_s"] += cpu.user + cpu.system
        stamp = (before + time.time()) / 2
        return live, stamp

    def sample(self, *, full: bool) -> ProbeSample:
        procs = [self.root]
        with contextlib.suppress(psutil.NoSuchProcess):
            procs += self.root.children(recursive=True)
        v = dict.fromkeys(FIELDS, 0.0)
        live, stamp = self._cpu_pass(procs, v)
        pss = uss = 0.0
        for p in live:
            try:
                with p.oneshot():
                    mem = p.memory_info()
                    v["rss_mib"] += mem.rss / MIB
                    v["vms_mib"] += mem.vms / MIB
                    v["threads"] += p.num_threads()
                    v["fds"] += p.num_fds()
                    # The main thread's only: psutil reads /proc/PID/status,
                    # the thread group leader's counts (``context_switches_per_s``).
                    ctx = p.num_ctx_switches()
                    v["ctx_voluntary"] += ctx.voluntary
                    v["ctx_involuntary"] += ctx.involuntary
                    v["processes"] += 1
                    if full:
                        fm = p.memory_full_info()
                        pss += fm.pss / MIB
                        uss += fm.uss / MIB
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        if full:
            accepted = accepted_sockets(self.port) if self.port else 0
            self._last_full = (pss, uss, accepted)
        v["pss_mib"], v["uss_mib"], accepted = self._last_full
        v["kernel_mib"] = NAN
        if self.account is not None:
            with contextlib.suppress(OSError, ValueError):
                # Each accepted connection's TCP object escapes the cgroup's charge.
                kib = self.account.kernel_kib() + accepted * self.tcp_kib
                v["kernel_mib"] = kib / 1024
        v["memory_mib"] = v["pss_mib"] + v["kernel_mib"]
        return ProbeSample(stamp, v)

    def summary(self, window: tuple[float, float]) -> dict[str, dict[str, float]]:
        """Peak and mean of every field over samples inside ``window`` (wall
        time); the threads' and processes' first read in it too."""
        inside = [s for s in self.samples if window[0] <= s.time <= window[1]]
        if not inside:
            inside = self.samples[-1:]
        out: dict[str, dict[str, float]] = {}
        for key in FIELDS:
            values = np.array([s.values[key] for s in inside]) if inside else np.zeros(1)
            seen = values[np.isfinite(values)]
            if len(seen) == 0:  # not measured here (kernel memory without a cgroup)
                out[key] = {"peak": NAN, "mean": NAN}
                continue
            out[key] = {"peak": float(seen.max()), "mean": float(seen.mean())}
            if key in ("threads", "processes"):
                out[key]["first"] = float(seen[0])
        if len(inside) >= 2:
            dt = inside[-1].time - inside[0].time
            for key in ("cpu_s", "ctx_voluntary", "ctx_involuntary", "lab_cpu_s", "front_cpu_s"):
                rate = (inside[-1].values[key] - inside[0].values[key]) / dt if dt > 0 else 0.0
                out[key]["rate"] = rate
        levels = self.levels.summary(window) if self.levels is not None else None
        if levels is not None:
            out.update(levels)
        return out

    def series(self) -> list[dict[str, float]]:
        return [{"time": s.time, **s.values} for s in self.samples]


def accepted_peers(root: psutil.Process, port: int) -> list[frozenset[tuple[str, int]]]:
    """The remote addresses of the connections to local ``port`` that each
    process of ``root``'s tree has accepted (its listening socket not
    counted), the fullest process first.

    Each accepted socket sits in the file table of the process that took it
    from the listen queue, so they are how the kernel and the copies' accept
    loops dealt the connections between them."""
    procs = [root]
    with contextlib.suppress(psutil.NoSuchProcess):
        procs += root.children(recursive=True)
    held = []
    for p in procs:
        try:
            conns = p.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        held.append(
            frozenset(
                (str(c.raddr.ip), int(c.raddr.port))
                for c in conns
                if c.laddr and c.laddr.port == port and c.status != "LISTEN" and c.raddr
            )
        )
    return sorted(held, key=len, reverse=True)


class AcceptSplit(threading.Thread):
    """Reads how a pre-forked server's copies share ``expected`` persistent
    connections (``accepted_peers``) while they open, until all are held:
    the deal a racing accept drew in this run (gthread's ``Architecture.accept
    = "race"``), which the model can then be given.

    It reads only while connections are still opening, for at most
    ``within_s`` (the load generator's start and the warm-up), so never for
    long in the measured window. ``split`` is the read that held the most
    connections, its ``processes`` largest counts, most first; ``peers`` the
    same read's remote addresses per copy, in that order (``deal`` maps them
    to the load generator's connections)."""

    POLL_S = 0.2

    def __init__(self, pid: int, port: int, expected: int, processes: int, within_s: float) -> None:
        super().__init__(daemon=True, name="accept-split")
        self.root = psutil.Process(pid)
        self.port = port
        self.expected = expected
        self.processes = processes
        self.within_s = within_s
        self.split: tuple[int, ...] | None = None
        self.peers: tuple[frozenset[tuple[str, int]], ...] = ()
        self._halt = threading.Event()

    def run(self) -> None:
        end = time.monotonic() + self.within_s
        while not self._halt.is_set() and time.monotonic() < end:
            try:
                held = accepted_peers(self.root, self.port)
            except psutil.Error:
                return
            top = tuple((held + [frozenset()] * self.processes)[: self.processes])
            counts = tuple(len(x) for x in top)
            if sum(counts) > sum(self.split or ()):
                self.split, self.peers = counts, top
            if sum(counts) >= self.expected:
                return
            self._halt.wait(self.POLL_S)

    def deal(self, local: list[Any] | None) -> tuple[int, ...] | None:
        """The copy (its rank in ``split``) that took each of the load
        generator's connections, given their first local addresses in
        connection order (``connections.local``); None unless every one was
        found held by a copy."""
        if not local or self.split is None:
            return None
        where = {addr: rank for rank, peers in enumerate(self.peers) for addr in peers}
        out = []
        for addr in local:
            rank = None if addr is None else where.get((str(addr[0]), int(addr[1])))
            if rank is None:
                return None
            out.append(rank)
        return tuple(out)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
