"""Holders: a fixed set of threads per process, each owning one connection while it is open.

``iterative`` (one thread) and ``thread-pool`` (W threads) build on this. A
new connection waits in the accept backlog until a thread is free, and keeps
it until the connection closes, idle keep-alive gaps included.

With persistent connections every client connects at time 0, so ownership is
settled then and costs nothing during the run: each process's holders serve
the first connections dealt to it for ever, the next ``backlog`` wait for
ever, and the rest are refused.

Who accepts a short-lived connection depends on who calls ``accept``. A
process whose only thread accepts and then serves (``accepts_when_free``:
``iterative``, gunicorn's sync worker) is in ``accept`` only while it is
free, so of P pre-forked copies the connection goes to a free one, and
waits in the one listen queue they share while none is: one FIFO queue in
front of all the holders (M/G/P). A process with an accepting thread of
its own (``thread-pool``) accepts whenever the kernel wakes it, busy or
not, and the connection queues in that process's pool.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, ClassVar

import numpy as np
import simpy

from simlab.footprint import Units, copies_units
from simlab.models import composition, loads
from simlab.models.base import Analytic, Bottleneck
from simlab.models.composition import Sampler
from simlab.models.connection_bound import ConnectionBound
from simlab.models.pool import Pool
from simlab.params import Architecture, Platform, Workload
from simlab.streams import Deal, deal

__all__ = ["Holders"]

REFUSED, WAITING, SERVED = 0, 1, 2


class Holders(ConnectionBound):
    # A process's accepting thread is its holder: it accepts only while free.
    accepts_when_free: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        a = self.arch
        # Holders per process: each pre-forked copy accepts into its own pool.
        self._per_process = self.holders_for(a) // a.processes
        self.pools = [
            Pool(self.env, self._per_process, first_id=k * self._per_process)
            for k in range(a.processes)
        ]
        # Short-lived connections to processes that accept only while free
        # share one listen queue in front of every holder.
        self._shared: Pool | None = None
        if self.accepts_when_free and not self.workload.persistent:
            self._shared = Pool(self.env, self.holders_for(a))
        # Connection id -> its rank in its process's accept order, and the process.
        self._rank = np.empty(0, np.int64)
        self._proc = np.empty(0, np.int64)
        self._filled_at = 0
        if self.workload.persistent:
            self._deal_persistent()

    @classmethod
    def close_wait_s(cls, platform: Platform) -> float:
        # A holder reads the client's close before it takes another connection.
        return platform.close_wait_us * 1e-6

    @classmethod
    def _close_limit(cls, workload: Workload, platform: Platform) -> str | None:
        """Why the fast engine cannot run short connections here, if it cannot."""
        if not workload.persistent and cls.close_wait_s(platform) > 0:
            return "a thread waits for its client's close after the answer (the DES holds it)"
        return None

    @classmethod
    def holders_for(cls, arch: Architecture) -> int:
        """Threads that can own a connection at once, over all processes."""
        raise NotImplementedError

    @classmethod
    def serves_at_most(cls, workload: Workload, arch: Architecture) -> int | None:
        # A holder never lets go of a persistent connection: a fixed set of
        # them serves as many as there are, whatever the memory.
        return cls.holders_for(arch) if workload.persistent else None

    def _deal_persistent(self) -> None:
        """Which persistent connections each process's holders own (time 0).

        Connections connect in id order and land on ``process_of(conn)``; a
        process's first W are served, its next ``backlog`` wait, the rest are
        refused. Dealt until every process is full, so the cost is
        P x (W + backlog) however many connections there are.
        """
        a = self.arch
        per = self._per_process + (a.backlog if a.backlog is not None else 0)
        n, processes = self.workload.connections, a.processes
        counts = np.zeros(processes, np.int64)
        ranks: list[np.ndarray] = []
        procs: list[np.ndarray] = []
        conn = 0
        # Dealt a block at a time (the dealer's own ``deal``), with each
        # process's ranks counted in connection order.
        while conn < n and counts.min() < per:
            hi = min(n, conn + self.process_of.BLOCK)
            proc = deal(np.arange(conn, hi, dtype=np.uint64), processes, self.salt)
            rank = np.empty(len(proc), np.int64)
            stop = len(proc)
            filled = 0
            for p in range(processes):
                mine = np.flatnonzero(proc == p)
                rank[mine] = counts[p] + np.arange(len(mine))
                need = per - counts[p]  # connections until this process is full
                if need <= 0:
                    continue
                # The connection that fills it, or past the block when none does.
                filled = max(filled, int(mine[need - 1]) + 1 if need <= len(mine) else stop + 1)
            # The deal stops after the connection that fills the last process.
            keep = filled if filled <= stop else stop
            ranks.append(rank[:keep])
            procs.append(proc[:keep])
            counts += np.bincount(proc[:keep], minlength=processes)
            conn += keep
        self._rank = np.concatenate(ranks) if ranks else np.empty(0, np.int64)
        self._proc = np.concatenate(procs) if procs else np.empty(0, np.int64)
        self._filled_at = conn

    def persistent_status(self, conn: int) -> int:
        if conn >= self._filled_at:
            # Past the point where every process was full.
            return WAITING if self.arch.backlog is None else REFUSED
        rank = int(self._rank[conn])
        if rank < self._per_process:
            return SERVED
        backlog = self.arch.backlog
        if backlog is None or rank < self._per_process + backlog:
            return WAITING
        return REFUSED

    def owner(self, conn: int) -> tuple[int, int]:
        rank, process = int(self._rank[conn]), int(self._proc[conn])
        return process * self._per_process + rank, process

    @classmethod
    def fast_servers(cls, arch: Architecture) -> int:
        return cls.holders_for(arch) // arch.processes

    @classmethod
    def fast_events(cls, workload: Workload, platform: Platform, arch: Architecture) -> bool:
        # Persistent owners are settled at time 0 (``_deal_persistent``): the
        # event loop serves each owner's queue; the recursion has no owners.
        return workload.persistent or super().fast_events(workload, platform, arch)

    def fast_owners(self, connections: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.workload.persistent:
            return None
        conns = np.asarray(connections, np.int64)
        if self._filled_at == 0:
            none = np.full(len(conns), -1, np.int64)
            return none, none.copy()
        dealt = conns < self._filled_at
        at = np.where(dealt, conns, 0)
        rank = np.where(dealt, self._rank[at], -1)
        proc = np.where(dealt, self._proc[at], -1)
        served = dealt & (rank < self._per_process)
        worker = np.where(served, proc * self._per_process + rank, -1)
        return worker.astype(np.int64), np.where(served, proc, -1).astype(np.int64)

    def base_levels(self) -> dict[str, int]:
        w = self.workload
        open_conns = 0
        if w.persistent:
            # Only the connections a thread has accepted: one left waiting in
            # the listen backlog (or refused) holds none of the server's
            # memory, user or kernel (``ConnectionBound._short_session``).
            ranks = self._rank[: self._filled_at]
            open_conns = int(np.count_nonzero(ranks < self._per_process))
        return self.levels(0, open_conns)

    def admit_slot(self, i: int, conn: int) -> bool:
        if not self.workload.persistent:
            return True
        status = self.persistent_status(conn)
        if status == REFUSED:
            self.drop(i)
            return False
        if status == WAITING:
            # Nobody will ever read this connection: the request and any that
            # follow on it stay pending until the end of the run.
            self.active[conn] = None
            return False
        return True

    def acquire(self) -> Generator[simpy.Event, Any, tuple[int, int] | None]:
        if self._shared is not None:
            # A free copy takes the connection; with none free it waits in the
            # shared listen queue for the first to come back to ``accept``.
            worker = yield from self._holder(self._shared)
            return None if worker is None else (worker, worker // self._per_process)
        # Which pre-forked copy accepts a new connection is up to the kernel:
        # as uneven as chance, like the deal of persistent connections.
        process = self.process_of(self._next_thread)
        self._next_thread += 1
        worker = yield from self._holder(self.pools[process])
        return None if worker is None else (worker, process)

    def _holder(self, pool: Pool) -> Generator[simpy.Event, Any, int | None]:
        """A free holder of ``pool``, or the first to come free; None when the
        backlog in front of it is full (the connection is refused)."""
        worker = pool.take()
        if worker < 0:
            backlog = self.arch.backlog
            if backlog is not None and pool.queued >= backlog:
                return None
            worker = yield pool.wait()
        return worker

    def release(self, worker: int) -> None:
        if self._shared is not None:
            self._shared.give(worker)
            return
        self.pools[worker // self._per_process].give(worker)

    # ----------------------------------------------------------------- maths

    @classmethod
    def units(cls, workload: Workload, arch: Architecture, in_flight: int) -> Units:
        threads, copies = cls.preforked(arch)
        holders = cls.holders_for(arch)
        n = workload.connections
        # Only accepted connections hold memory: the ones without a thread
        # wait in the listen backlog, which charges the server nothing.
        conns = min(in_flight if not workload.persistent else n, holders)
        return Units(
            **copies_units(copies, workload.calls),
            thread=threads,
            connection=conns,
            task=in_flight,
            # Each holder that serves opens its own backend connection.
            backend_conn=holders if workload.calls else 0,
            served=holders,  # each holder serves, and grows once it has
        )

    @classmethod
    def _owner_loads(
        cls,
        workload: Workload,
        arch: Architecture,
        deal: Deal,
        held: float,
        accept: float,
        *,
        close: float,
    ) -> dict[str, float]:
        assert workload.rate is not None
        holders = cls.holders_for(arch)
        k = workload.requests_per_connection
        if k is None:
            busiest = deal.busiest_count(workload.connections, arch.processes)
            per_process = holders // arch.processes
            # More clients than owners in a process: the surplus is never served.
            return {"holders": busiest / per_process} if busiest > per_process else {}
        # An owner holds a connection for k requests and the k-1 gaps between
        # them: by Poisson splitting the client's next request comes N/lam later.
        gap = workload.connections / workload.rate
        hold = k * held + (k - 1) * gap + close
        return {"holders": workload.rate / k * hold / holders}

    @classmethod
    def queue_of(
        cls,
        resource: str,
        rho: float,
        *,
        workload: Workload,
        platform: Platform,
        arch: Architecture,
        deal: Deal,
    ) -> Bottleneck | None:
        """The holders are a queue of connections (each held for its k requests)
        only with short connections; with persistent ones their "load" counts
        starved connections, which never settle into anything."""
        if resource != "holders":
            return super().queue_of(
                resource, rho, workload=workload, platform=platform, arch=arch, deal=deal
            )
        k = workload.requests_per_connection
        if k is None:
            return None
        assert workload.rate is not None
        holders = cls.holders_for(arch)
        _, svc = cls._held(workload, platform)
        # A constant close wait after the answer narrows the spread of what
        # a connection holds its thread for.
        close = cls.close_wait_s(platform)
        scv = svc.scv * (svc.mean / (svc.mean + close)) ** 2 if k == 1 else svc.scv
        return Bottleneck(resource, rho, holders, rho * holders / (workload.rate / k), scv)

    @classmethod
    def explain_overload(
        cls, resource: str, rho: float, workload: Workload, arch: Architecture, deal: Deal
    ) -> str:
        if resource == "holders" and workload.persistent:
            holders = cls.holders_for(arch)
            per_process = holders // arch.processes
            starved = sorted(
                {
                    sum(max(0, c - per_process) for c in counts)
                    for counts in deal.counts(workload.connections, arch.processes)
                }
            )
            many = f"{starved[0]:,}" if len(starved) == 1 else f"{starved[0]:,} to {starved[-1]:,}"
            return (
                f"{workload.connections:,} persistent connections for {holders:,} "
                f"thread{'s' if holders != 1 else ''}: {many} are never served"
            )
        if resource == "holders":
            return (
                f"threads held through keep-alive gaps: rho = {rho:.3g} >= 1 "
                f"for {cls.holders_for(arch):,} threads"
            )
        return super().explain_overload(resource, rho, workload, arch, deal)

    @classmethod
    def analytic(
        cls, workload: Workload, platform: Platform, arch: Architecture, deal: Deal
    ) -> Analytic | str:
        blocker = loads.reduction_blocker(workload, platform, arch, queue="backlog")
        if blocker is not None:
            return blocker
        _, svc = cls._held(workload, platform)
        holders = cls.holders_for(arch)
        k = workload.requests_per_connection
        rtt = platform.rtt_us * 1e-6
        if k is None:
            busiest = deal.busiest_count(workload.connections, arch.processes)
            if busiest > holders // arch.processes:
                return "some persistent connections never get a thread"
            return loads.per_client_reference(workload, svc, what="thread", rtt=rtt)
        if k > 1:
            return "threads idle between a connection's requests while holding it"
        unlike = None
        if arch.processes > 1 and not cls.accepts_when_free:
            unlike = "connections are dealt to processes in turn, not to the first free thread"
        elif cls.close_wait_s(platform) > 0:
            unlike = "a thread holds its connection past the answer, until the client's close"
        if unlike is not None:
            return unlike
        return loads.mgc_reference(
            workload, arch, deal, svc, servers=holders, split=False, extra_latency=rtt
        )

    @classmethod
    def latency_draws(
        cls,
        workload: Workload,
        platform: Platform,
        arch: Architecture,
        deal: Deal,
        sampler: Any,
    ) -> tuple[np.ndarray, str]:
        s: Sampler = sampler
        w = workload
        assert w.rate is not None
        held, method = cls._thread_draws(w, platform, arch, deal, s)
        k = w.requests_per_connection
        if k is None:
            late = cls._buffered_read(w, platform, s)
            return held + late + s.rtt, f"a thread per persistent connection + {method}"
        holders = cls.holders_for(arch) // arch.processes
        lam = w.rate * deal.busiest(w.connections, arch.processes)
        if cls.accepts_when_free:
            # One listen queue in front of every copy's holder.
            holders, lam = cls.holders_for(arch), w.rate
        gap = w.connections / w.rate
        # The holder reads the client's close after the last answer (a constant).
        close = cls.close_wait_s(platform)
        hold = k * float(held.mean()) + (k - 1) * gap + close
        pw, mw = composition.mgc_wait(
            lam / k, hold, composition.scv(held + close) if k == 1 else 1.0, holders
        )
        first = s.u_loop < 1 / k
        wait = np.where(first, composition.mixture(s.u_pool, s.e_pool, pw, mw), 0.0)
        return (
            wait + held + cls._buffered_read(w, platform, s) + s.rtt,
            f"M/G/{holders} over connections "
            f"{'in one listen queue' if cls.accepts_when_free else 'per process'}"
            f" (Erlang C, Allen-Cunneen) + {method}",
        )
