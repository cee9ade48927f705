"""Models in which one thread (or process) owns a connection for as long as it is open.

Two kinds share this logic:

- *holders* (``iterative``, ``thread-pool``): a fixed set of threads; a new
  connection waits in the accept backlog until one is free, and keeps it
  until the connection closes, idle gaps included;
- *dedicated* (``thread-per-connection``, ``process-per-connection``): the
  accepting thread creates a thread or process for each connection.

With persistent connections every client connects at time 0, so ownership is
settled then and costs nothing during the run: a holder model serves the
first ``holders`` connections for ever, keeps the next ``backlog`` waiting for
ever, and refuses the rest; a dedicated model serves all of them.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any, ClassVar

import simpy

from simlab.models import loads
from simlab.models.base import Analytic, Model, client_load, process_of, thread_cpu_overhead
from simlab.models.pool import Pool
from simlab.params import Architecture, Platform, Workload

__all__ = ["ConnectionBound"]

REFUSED, WAITING, SERVED = 0, 1, 2


class ConnectionBound(Model):
    dedicated: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        w, p, a = self.workload, self.platform, self.arch
        self._fixed, _ = thread_cpu_overhead(w, p, parse=True)
        self._cs_paid = p.context_switch_us > 0
        self._k = w.requests_per_connection
        # Holders per process: each pre-forked copy accepts into its own pool.
        self._per_process = 0 if self.dedicated else self.holders_for(a) // a.processes
        self.pools = [
            Pool(self.env, self._per_process, first_id=k * self._per_process)
            for k in range(a.processes if not self.dedicated else 0)
        ]
        accept_us = p.fork_us if self.own_process else p.spawn_us
        self._accept_cost = accept_us * 1e-6 if self.dedicated else 0.0
        self.acceptors = [Pool(self.env, 1) for _ in range(a.processes)]
        self._next_thread = 0
        self._status: dict[int, tuple[int, int]] = {}
        self._filled_at = 0
        if not self.dedicated and w.persistent:
            self._deal_persistent()

    def _deal_persistent(self) -> None:
        """Which persistent connections each process's holders own (time 0).

        Connections connect in id order and land on ``process_of(conn)``; a
        process's first W are served, its next ``backlog`` wait, the rest are
        refused. Dealt until every process is full, so the cost is
        P x (W + backlog) however many connections there are.
        """
        a = self.arch
        per = self._per_process + (a.backlog if a.backlog is not None else 0)
        counts = [0] * a.processes
        conn = 0
        while conn < self.workload.connections and min(counts) < per:
            p = process_of(conn, a.processes, self.salt)
            rank = counts[p]
            counts[p] += 1
            self._status[conn] = (rank, p)
            conn += 1
        self._filled_at = conn

    # ------------------------------------------------------------ structure

    @classmethod
    def holders_for(cls, arch: Architecture) -> int:
        """Threads that can own a connection at once (holder models)."""
        raise NotImplementedError

    def threads_per_process(self) -> int:
        """Threads a holder process runs besides per-connection ones."""
        raise NotImplementedError

    def worker_is_thread_handle(self) -> bool:
        return self.dedicated and not self.workload.persistent

    def persistent_status(self, conn: int) -> int:
        if self.dedicated:
            return SERVED
        dealt = self._status.get(conn)
        if dealt is None:
            # Past the point where every process was full.
            return WAITING if self.arch.backlog is None else REFUSED
        rank = dealt[0]
        if rank < self._per_process:
            return SERVED
        backlog = self.arch.backlog
        if backlog is None or rank < self._per_process + backlog:
            return WAITING
        return REFUSED

    def owner(self, conn: int) -> tuple[int, int]:
        """(worker, process) owning a persistent connection."""
        if self.dedicated:
            return conn, process_of(conn, self.arch.processes, self.salt)
        rank, process = self._status[conn]
        return process * self._per_process + rank, process

    def base_levels(self) -> dict[str, int]:
        w, a = self.workload, self.arch
        n = w.connections
        if self.dedicated:
            per_conn = n if w.persistent else 0
            levels = self.preforked(1, per_conn, forks=per_conn if self.own_process else 0)
            levels["threads"] += per_conn
            return levels
        open_conns = 0
        if w.persistent:
            backlog = a.backlog
            if backlog is None:
                open_conns = n
            else:
                # Connections refused at connect time are not open.
                refused = sum(
                    1 for c in range(self._filled_at) if self.persistent_status(c) == REFUSED
                )
                open_conns = self._filled_at - refused
        return self.preforked(self.threads_per_process(), open_conns)

    # -------------------------------------------------------------- sessions

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

    def session(self, i: int, conn: int) -> Generator[simpy.Event, Any, None]:
        if self._k is None:
            worker, process = self.owner(conn)
            return self._serve_queue(i, conn, worker, process)
        return self._short_session(i, conn, self._k)

    def _serve_queue(
        self, i: int, conn: int, worker: int, process: int
    ) -> Generator[simpy.Event, Any, None]:
        while True:
            yield from self.serve(i, worker, process)
            nxt = self.next_on_slot(conn)
            if nxt is None:
                del self.active[conn]
                return
            i = nxt

    def _short_session(self, i: int, conn: int, k: int) -> Generator[simpy.Event, Any, None]:
        env = self.env
        nxt: int | None = i
        while nxt is not None:
            i = nxt
            handle = self.open_interval("connections")
            owner = yield from self.acquire()
            if owner is None:
                # Connection refused: the backlog is full.
                self.close_interval("connections", handle)
                self.drop(i)
                nxt = self.next_on_slot(conn)
                continue
            worker, process = owner
            for served in range(1, k + 1):
                yield from self.serve(i, worker, process)
                nxt = self.next_on_slot(conn)
                if served == k:
                    break
                if nxt is None:
                    # Keep-alive: the owner blocks in recv, holding the connection.
                    ev = env.event()
                    self.idle[conn] = ev
                    nxt = yield ev
                i = nxt
            self.release(worker)
            self.close_interval("connections", handle)
        del self.active[conn]

    def acquire(self) -> Generator[simpy.Event, Any, tuple[int, int] | None]:
        """A thread for a new connection: a free holder, or one spawned by the acceptor."""
        backlog = self.arch.backlog
        # Which pre-forked copy accepts a new connection is up to the kernel:
        # as uneven as chance, like the hash used for persistent connections.
        process = process_of(self._next_thread, self.arch.processes, self.salt)
        self._next_thread += 1
        if self.pools:
            pool = self.pools[process]
            worker = pool.take()
            if worker < 0:
                if backlog is not None and pool.queued >= backlog:
                    return None
                worker = yield pool.wait()
            return worker, process
        if self._accept_cost > 0:
            acceptor = self.acceptors[process]
            if backlog is not None and not acceptor.free and acceptor.queued >= backlog:
                return None
            gil = self.cpu.gil(process)
            yield from self.cpu.run(gil, self._accept_cost, 0, process, lock=acceptor)
        handle = self.open_interval("threads")
        if self.own_process:
            self.open_interval("forks")
        return handle, process

    def release(self, worker: int) -> None:
        if self.pools:
            self.pools[worker // self._per_process].give(worker)
            return
        self.close_interval("threads", worker)
        if self.own_process:
            self.close_interval("forks", worker)

    def serve(self, i: int, worker: int, process: int) -> Generator[simpy.Event, Any, None]:
        """One request on its owning thread: wake, CPU phase, backend calls, answer."""
        env = self.env
        now = env.now
        self.admit[i] = now
        self.start[i] = now
        self.worker[i] = worker
        self.process[i] = process
        gil = None if self.own_process else self.cpu.gil(process)
        cpu = yield from self.on_thread(
            i,
            gil,
            self.demand[i] + self._fixed,
            paid=self._cs_paid,
            # A child per connection is a process of its own, asleep between requests.
            process=None if self.own_process else process,
        )
        self.cpu_time[i] = cpu
        self.finish(i, cpu + self.io_time[i])

    # ----------------------------------------------------------------- maths

    @classmethod
    def _accept_seconds(cls, platform: Platform) -> float:
        if not cls.dedicated:
            return 0.0
        return (platform.fork_us if cls.own_process else platform.spawn_us) * 1e-6

    @classmethod
    def offered_load(
        cls, workload: Workload, platform: Platform, arch: Architecture
    ) -> dict[str, float]:
        if workload.rate is None:
            return {}
        fixed, switches = thread_cpu_overhead(workload, platform, parse=True)
        thread_cpu = workload.cpu.mean + fixed + switches * platform.context_switch_us * 1e-6
        svc = loads.service(
            workload,
            fixed + switches * platform.context_switch_us * 1e-6,
            call_latency=platform.call_latency_us * 1e-6,
        )
        k = workload.requests_per_connection
        accept = cls._accept_seconds(platform) / (k or math.inf)
        out = loads.cpu_loads(
            workload,
            platform,
            arch,
            total=thread_cpu + accept,
            # Forked children run under their own GIL; only the parent's accept work shares one.
            per_process_gil=accept if cls.own_process else thread_cpu + accept,
        )
        out["client"] = client_load(workload, svc.mean)
        if cls.dedicated:
            if k is not None and accept > 0:
                out["acceptor"] = workload.rate * max(loads.process_shares(workload, arch)) * accept
            return out
        holders = cls.holders_for(arch)
        if k is None:
            busiest = max(loads.process_shares(workload, arch)) * workload.connections
            if busiest > holders // arch.processes:
                # More clients than owners in a process: the surplus is never served.
                out["holders"] = busiest / (holders // arch.processes)
        else:
            # An owner holds a connection for k requests and the k-1 gaps between
            # them: by Poisson splitting the client's next request comes N/lam later.
            gap = workload.connections / workload.rate
            hold = k * svc.mean + (k - 1) * gap
            out["holders"] = workload.rate / k * hold / holders
        return out

    @classmethod
    def explain_overload(
        cls, resource: str, rho: float, workload: Workload, arch: Architecture
    ) -> str:
        if resource == "holders" and workload.persistent:
            holders = cls.holders_for(arch)
            per_process = holders // arch.processes
            shares = loads.process_shares(workload, arch)
            starved = sum(max(0, round(s * workload.connections) - per_process) for s in shares)
            return (
                f"{workload.connections:,} persistent connections for {holders:,} "
                f"thread{'s' if holders != 1 else ''}: {starved:,} are never served"
            )
        if resource == "holders":
            return (
                f"threads held through keep-alive gaps: rho = {rho:.3g} >= 1 "
                f"for {cls.holders_for(arch):,} threads"
            )
        return super().explain_overload(resource, rho, workload, arch)

    @classmethod
    def analytic(cls, workload: Workload, platform: Platform, arch: Architecture) -> Analytic | str:
        blocker = loads.reduction_blocker(workload, platform, arch, queue="backlog")
        if blocker is not None:
            return blocker
        fixed, switches = thread_cpu_overhead(workload, platform, parse=True)
        svc = loads.service(
            workload,
            fixed + switches * platform.context_switch_us * 1e-6,
            call_latency=platform.call_latency_us * 1e-6,
        )
        k = workload.requests_per_connection
        if cls.dedicated:
            if k is not None and cls._accept_seconds(platform) > 0:
                return "creating a thread or process per connection adds an accept queue"
            return loads.per_client_reference(
                workload, svc, what="thread", rtt=platform.rtt_us * 1e-6
            )
        holders = cls.holders_for(arch)
        if k is None:
            busiest = max(loads.process_shares(workload, arch)) * workload.connections
            if busiest > holders // arch.processes:
                return "some persistent connections never get a thread"
            return loads.per_client_reference(
                workload, svc, what="thread", rtt=platform.rtt_us * 1e-6
            )
        if k > 1:
            return "threads idle between a connection's requests while holding it"
        if arch.processes > 1:
            return "connections are dealt to processes in turn, not to the first free thread"
        return loads.mgc_reference(
            workload, arch, svc, servers=holders, split=False, extra_latency=platform.rtt_us * 1e-6
        )
