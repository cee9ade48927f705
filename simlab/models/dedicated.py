"""Dedicated owners: the accepting thread creates a thread or a process for every connection.

``thread-per-connection`` and ``process-per-connection`` build on this.
Nobody waits for an owner, so with ample cores each client is its own
M/G/1 (M/G/inf as clients grow); with short connections the accepting
thread, which spawns or forks one connection at a time, is a queue of its own.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

import numpy as np
import simpy

from simlab.footprint import Units
from simlab.models import composition, loads
from simlab.models.base import Analytic
from simlab.models.composition import Sampler
from simlab.models.connection_bound import ConnectionBound
from simlab.params import Architecture, Platform, Workload
from simlab.streams import Deal

__all__ = ["Dedicated"]


class Dedicated(ConnectionBound):
    def owner(self, conn: int) -> tuple[int, int]:
        return conn, self.process_of(conn)

    def worker_is_thread_handle(self) -> bool:
        return not self.workload.persistent

    def base_levels(self) -> dict[str, int]:
        w = self.workload
        per_conn = w.connections if w.persistent else 0
        # Children forked as the run starts are intervals, not constants.
        owners = 0 if self.forks_at_start(w, self.platform) else per_conn
        return self.levels(owners, per_conn, forks=owners if self.own_process else 0)

    @classmethod
    def forks_at_start(cls, workload: Workload, platform: Platform) -> bool:
        """Persistent connections' owners are made as the run starts, one
        connection at a time by the accepting thread, which takes its
        process's GIL (and a core) for each as the handlers do; a
        connection's requests wait for its owner. Under load the owners then
        come over seconds, not at once, and past saturation some never come
        in a run: on 5 December a thread-per-connection server of 1,000
        connections at 1.09 held 781 to 809 threads at peak, and the model
        that made them all at once served 239/s where it served 308/s, its
        hundreds more GIL waiters each slowing the holder.

        Children: where the fork's cost is split (``fork_child_us`` > 0, a
        calibrated profile), each child's own start falls on its first
        request. Threads: under a GIL, where making one costs anything
        (``spawn_us``). Without a GIL the acceptor does not queue behind the
        handlers, and a runtime's ``spawn_us`` is its thread's whole making,
        most of it on the new thread: the JVM's 0.9 ms each, charged to one
        acceptor, held 2,500 connections' first requests for over two
        seconds, where its server had accepted 988 of 1,000 at 1.12.
        Otherwise every owner is there from the start."""
        if not workload.persistent:
            return False
        if cls.own_process:
            return platform.fork_child_us > 0
        return platform.gil and cls.request_cost(workload).accept_s(platform) > 0

    @classmethod
    def steady_platform(cls, workload: Workload, platform: Platform) -> Platform:
        """Persistent connections' children all forked: each is forked once, so
        in the steady state none is left to fork, and a run that starts with
        them (the whole fork on the accept loop, which no connection opens
        again) is that state from its first second, where forking 10,000 of
        them as the run starts would hold a planner's check for a minute of
        simulated start-up."""
        if not cls.forks_at_start(workload, platform):
            return platform
        if cls.own_process:
            return platform.with_(fork_child_us=0.0)
        # A thread is made once per persistent connection, all before the steady state.
        return platform.with_(spawn_us=0.0)

    @classmethod
    def start_warnings(
        cls, workload: Workload, platform: Platform, arch: Architecture, warmup: float
    ) -> list[str]:
        if not cls.forks_at_start(workload, platform):
            return []
        parent, child, _ = cls.accept_split(workload, platform)
        n = workload.connections
        out = []
        # The accept loops fork in turn, each paying its os.fork() calls; the
        # children's own starts fall on their first requests.
        ramp = math.ceil(n / arch.processes) * parent
        owner = "forking a child" if cls.own_process else "making a thread"
        if ramp > warmup:
            out.append(
                f"{owner} for each of the {n:,} connections takes at least {ramp:.3g} s, "
                f"beyond the warm-up ({warmup:g} s): the window holds that start-up (requests "
                "wait for their owners); raise --warmup for the steady state"
            )
        if workload.rate is not None and child > 0:
            # Poisson arrivals dealt over n connections: each is silent through
            # the warm-up with probability exp(-rate x warmup / n).
            silent = n * math.exp(-workload.rate * warmup / n)
            if silent >= 1:
                out.append(
                    f"about {silent:,.0f} of the {n:,} connections send nothing in the warm-up "
                    f"({warmup:g} s): each one's first request in the window pays its child's "
                    f"start ({child * 1e3:.3g} ms of CPU, fork_child_us); raise --warmup for "
                    "the steady state"
                )
        return out

    def start_arrivals(self) -> None:
        self._forked: dict[int, simpy.Event] = {}
        # Children forked as the run starts that have not served yet: each
        # pays its own start with its first request (``_serve_queue``).
        self._unstarted: set[int] = set()
        if self.forks_at_start(self.workload, self.platform):
            # The load generator opens every connection at the start: each
            # process's accept loop forks for its connections in turn.
            by_process: dict[int, list[int]] = {}
            for conn in range(self.workload.connections):
                self._forked[conn] = self.env.event()
                by_process.setdefault(self.process_of(conn), []).append(conn)
            for process, conns in by_process.items():
                self.env.process(self._fork_all(process, conns))
        super().start_arrivals()

    def _fork_all(self, process: int, conns: list[int]) -> Generator[simpy.Event, Any, None]:
        acceptor, gil = self.acceptors[process], self.cpu.gil(process)
        for conn in conns:
            if self._accept_cost > 0:
                yield from self.cpu.run(gil, self._accept_cost, 0, process, lock=acceptor)
            self.open_interval("threads")
            if self.own_process:
                self.open_interval("forks")
            if self._child_start > 0:
                self._unstarted.add(conn)
            self._forked[conn].succeed()

    def _serve_queue(
        self, i: int, conn: int, worker: int, process: int
    ) -> Generator[simpy.Event, Any, None]:
        forked = (
            self._forked.get(conn) if self.forks_at_start(self.workload, self.platform) else None
        )
        if forked is not None and not forked.processed:
            # Its requests wait, unread in the socket, until its child is forked.
            yield forked
        if conn in self._unstarted:
            # The child's own start (``fork_child_us``: the copy-on-write faults
            # as it first touches its pages) falls on its first request, not
            # on its fork: a child forked for a persistent connection sleeps
            # in recv until its client speaks (measured: first requests 5 to
            # 6 ms slower than the rest at 30 and 100 children, 6.7 ms here).
            self._unstarted.discard(conn)
            yield from self.cpu.run(None, self._child_start, 0, None)
        yield from super()._serve_queue(i, conn, worker, process)

    def acquire(self) -> Generator[simpy.Event, Any, tuple[int, int] | None]:
        """A thread (or child) spawned for a new connection by its process's acceptor."""
        process = self.process_of(self._next_thread)
        self._next_thread += 1
        if self._accept_cost > 0:
            acceptor = self.acceptors[process]
            backlog = self.arch.backlog
            if backlog is not None and not acceptor.free and acceptor.queued >= backlog:
                return None
            gil = self.cpu.gil(process)
            yield from self.cpu.run(gil, self._accept_cost, 0, process, lock=acceptor)
        handle = self.open_interval("threads")
        if self.own_process:
            self.open_interval("forks")
        if self._child_start > 0:
            # The forked child's own start, on a core, in parallel with the
            # parent (which accepts again) and with other children.
            yield from self.cpu.run(None, self._child_start, 0, None)
        return handle, process

    def release(self, worker: int) -> None:
        # A forked child lives on while it exits (``fork_exit_us``), a thread
        # until its client's close is read (``thread_exit_us``).
        gone = self.env.now + self._child_exit
        self.intervals["threads"][1][worker] = gone
        if self.own_process:
            self.intervals["forks"][1][worker] = gone

    @classmethod
    def _fast_limits(cls, workload: Workload, platform: Platform, arch: Architecture) -> str | None:
        if workload.requests_per_connection is None:
            return cls._start_limits(workload, platform, arch)
        if cls.request_cost(workload).accept_s(platform) > 0:
            return "creating a thread or process per connection is a queue at the acceptor"
        if cls.accept_split(workload, platform)[2] > 0:
            return "an owner that outlives its short connection (the DES holds it)"
        if cls.own_process or cls.fast_events(workload, platform, arch):
            return "an owner per short connection (fast needs persistent connections here)"
        return None

    @classmethod
    def _start_limits(
        cls, workload: Workload, platform: Platform, arch: Architecture
    ) -> str | None:
        """Why the fast engine cannot run persistent connections' owners made as
        the run starts, or None. Its event loop has the accepting threads
        (``simlab.fast_events``' acceptors); its recursion does not, nor does
        either deal connections to copies racing for them."""
        if not cls.forks_at_start(workload, platform):
            return None
        if not cls.fast_events(workload, platform, arch):
            return "owners made as the run starts need the event loop (a GIL, cores or a wake-up)"
        if arch.accept == "race":
            return "owners made as the run starts by copies racing for connections (the DES)"
        return None

    # ----------------------------------------------------------------- maths

    @classmethod
    def units(cls, workload: Workload, arch: Architecture, in_flight: int) -> Units:
        threads, copies = cls.preforked(arch)
        # Persistent connections each hold an owner for the whole run; short
        # ones only while a request is in flight.
        owners = workload.connections if workload.persistent else in_flight
        forks = copies + (owners if cls.own_process else 0)
        # Each owner that has served holds its own backend connection (the
        # acceptors, short-lived, are counted with them).
        callers = owners if workload.persistent else arch.processes + in_flight
        return Units(
            touched=forks if cls.own_process else copies,
            fork=forks,
            # A process-per-connection copy only accepts and forks: its children
            # serve and call (``touched``, ``called``), and its own growth was
            # never measured; the copies runs are of servers whose copies serve.
            copy=0 if cls.own_process else copies,
            copy_call=copies if workload.calls and not cls.own_process else 0,
            thread=threads + owners,
            connection=owners,
            task=in_flight,
            backend_conn=callers if workload.calls else 0,
            called=owners if cls.own_process and workload.calls else 0,
            # Every owner serves its connection's requests, and grows once it has.
            served=owners,
            child=owners if cls.own_process else 0,
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
        if workload.requests_per_connection is None or accept <= 0:
            return {}
        busiest = deal.busiest(workload.connections, arch.processes)
        return {"acceptor": workload.rate * busiest * accept}

    @classmethod
    def analytic(
        cls, workload: Workload, platform: Platform, arch: Architecture, deal: Deal
    ) -> Analytic | str:
        blocker = loads.reduction_blocker(workload, platform, arch, queue="backlog")
        if blocker is not None:
            return blocker
        _, svc = cls._held(workload, platform)
        k = workload.requests_per_connection
        if k is not None and cls.request_cost(workload).accept_s(platform) > 0:
            return "creating a thread or process per connection adds an accept queue"
        return loads.per_client_reference(workload, svc, what="thread", rtt=platform.rtt_us * 1e-6)

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
        accept, child, _ = cls.accept_split(w, platform)
        extra = np.zeros(len(s.cpu))
        if k is not None and accept + child > 0:
            lam = w.rate * deal.busiest(w.connections, arch.processes)
            pa, ma = composition.mgc_wait(lam / k, accept, 0.0, 1)
            first = s.u_pool < 1 / k  # the first request on a connection waits for its thread
            wait = composition.mixture(s.u_loop, s.e_loop, pa, ma)
            extra = np.where(first, accept + child + wait, 0.0)
        late = cls._buffered_read(workload, platform, s)
        return held + extra + late + s.rtt, f"one thread per connection + {method}"
