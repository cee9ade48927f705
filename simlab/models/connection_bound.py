"""Models in which one thread (or process) owns a connection for as long as it is open.

Two kinds share this logic, each a subclass:

- *holders* (``simlab.models.holders``: ``iterative``, ``thread-pool``): a
  fixed set of threads; a new connection waits in the accept backlog until
  one is free, and keeps it until the connection closes, idle gaps included;
- *dedicated* (``simlab.models.dedicated``: ``thread-per-connection``,
  ``process-per-connection``): the accepting thread creates a thread or
  process for each connection.

Here lives what both do: serve a connection's requests on its owner, one
after another, and the maths of a request held by a thread from its first
CPU phase to its last backend answer.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from functools import partial
from typing import Any

import numpy as np
import simpy

from simlab.models import composition, loads
from simlab.models.base import Model, RequestCost, client_load, read_held_share
from simlab.models.composition import Sampler
from simlab.models.pool import Pool
from simlab.params import Architecture, Platform, Workload
from simlab.streams import Deal

__all__ = ["ConnectionBound"]


class ConnectionBound(Model):
    holds_connection = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        w, p, a = self.workload, self.platform, self.arch
        cost = self.request_cost(w)
        self._fixed = cost.thread_s(p)
        # The accepting thread's part of a new connection's owner; a forked
        # child's own start; how long the owner (a child, a thread) lives on
        # after its connection closes.
        self._accept_cost, self._child_start, self._child_exit = self.accept_split(w, p)
        self._close_wait = self.close_wait_s(p)
        self._cs_paid = p.context_switch_us > 0
        self._k = w.requests_per_connection
        if self._k is not None and self._k > 1 and math.isfinite(self.stop):
            # When sending stops, a client whose kept-alive connection waits
            # for a request it will never send closes it (as the real load
            # generator does), and the thread holding it lets go.
            self.env.timeout(self.stop - self.env.now).callbacks.append(self._close_idle)
        self.acceptors = [Pool(self.env, 1) for _ in range(a.processes)]
        self._next_thread = 0
        # When each slow client finished reading its last answer (it sends its
        # next request only then).
        self._client_free: dict[int, float] = {}

    # ------------------------------------------------------------ structure

    @classmethod
    def request_cost(cls, workload: Workload) -> RequestCost:
        # The owning thread parses, issues and reads every call, and wakes once
        # for the request and once per backend answer.
        calls = workload.calls
        return RequestCost(
            loop={},
            thread={"parse_us": 1, "call_us": calls},
            switches=1 + calls,
            phases=1 + calls,
            call_phases=calls,
            accept=cls.accept_terms(),
            always_wakes=cls.own_process,
        )

    @classmethod
    def accept_terms(cls) -> dict[str, float]:
        """What a new connection's owner costs in CPU (its accepting thread's part
        and, for a fork, the child's: ``accept_split``)."""
        return {}

    @classmethod
    def close_wait_s(cls, platform: Platform) -> float:
        """How long the owner of a short connection waits after its last
        answer to read the client's close before it lets go (seconds): 0 here,
        a thread or child per connection counts it in its own life after the
        answer (``accept_split``)."""
        return 0.0

    @classmethod
    def accept_split(cls, workload: Workload, platform: Platform) -> tuple[float, float, float]:
        """(seconds the accepting thread pays per new connection, the new owner's
        own CPU before it serves, its life after its connection closes): a
        thread is made wholly by the accepting thread."""
        return cls.request_cost(workload).accept_s(platform), 0.0, 0.0

    def owner(self, conn: int) -> tuple[int, int]:
        """(worker, process) owning a persistent connection."""
        raise NotImplementedError

    def acquire(self) -> Generator[simpy.Event, Any, tuple[int, int] | None]:
        """An owner (worker, process) for a new short-lived connection, or None if refused."""
        raise NotImplementedError

    def release(self, worker: int) -> None:
        """A short-lived connection closed: its owner is free (or gone)."""
        raise NotImplementedError

    # -------------------------------------------------------------- sessions

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
            if self.ov is not None and self.ov.over_limit():
                # Answered 503 at accept by the overload limit: the accepting
                # thread writes it, under the GIL, one connection at a time.
                p = self.process_of(self._next_thread)
                cost = self.platform.parse_us * 1e-6
                yield from self.cpu.run(self.cpu.gil(p), cost, 1, p, lock=self.acceptors[p])
                self.ov.refuse(i)
                self.close_interval("connections", handle)
                nxt = self.next_on_slot(conn)
                continue
            if self.ov is not None:
                self.ov.admit(i)
            arrived = env.now
            owner = yield from self.acquire()
            if owner is None and self.ov is not None and self.ov.syn:
                # The SYN was dropped: the client's kernel retransmits it.
                owner = yield from self.ov.reconnect(i, self.acquire)
            if owner is None:
                # Connection refused: the backlog is full. It was never
                # accepted, so it held nothing of the server's (below).
                self.accepted_at("connections", handle)
                self.close_interval("connections", handle)
                self.drop(i)
                nxt = self.next_on_slot(conn)
                continue
            # Accepted now: a connection waiting in the listen backlog holds no
            # memory of the server's process, and Linux charges its socket to
            # the server's memory cgroup only at accept() (measured:
            # ``simlab.real.forklaw.measure_backlog``, 0 KiB while waiting).
            self.accepted_at("connections", handle)
            worker, process = owner
            if self.ov is not None and self.ov.expired(i, arrived):
                # Waited past the queue deadline for a thread: dropped unserved.
                self.release(worker)
                self.close_interval("connections", handle)
                nxt = self.next_on_slot(conn)
                continue
            nxt, closes = yield from self._serve_connection(i, conn, k, worker, process)
            if closes and self._close_wait > 0:
                # The client closes once it has read its last answer: the owner
                # waits in recv for that close before it lets go. The client's
                # next request (a connection of its own) goes out meanwhile.
                done = env.timeout(self._close_wait)
                done.callbacks.append(partial(self._let_go, worker, handle))
            else:
                self._let_go(worker, handle)
        del self.active[conn]

    def _serve_connection(
        self, i: int, conn: int, k: int, worker: int, process: int
    ) -> Generator[simpy.Event, Any, tuple[int | None, bool]]:
        """Serve an accepted connection's requests, from ``i``, up to ``k``;
        returns the next request on its client's slot (None: none yet) and
        whether the client closes it after its last answer (after the k-th,
        after any once sending has stopped or once it gave up on it; not when
        it was closed idle)."""
        served = 0
        while True:
            yield from self.serve(i, worker, process)
            served += 1
            nxt = self.next_on_slot(conn)
            if served == k:
                return nxt, True
            if nxt is None and self.ov is not None and conn in self.ov.closed:
                # Its client gave up (a timeout); the lab's client still reads
                # the late answer on that socket, then closes it.
                return None, True
            if nxt is None and self.env.now >= self.stop:
                return None, True  # sending has stopped: the client closes after this answer
            if nxt is None:
                # Keep-alive: the owner blocks in recv, holding the connection.
                ev = self.env.event()
                self.idle[conn] = ev
                nxt = yield ev
                if nxt is None:  # closed idle as sending stopped (``_close_idle``)
                    nxt = self.next_on_slot(conn)  # nothing is sent after stop: None
                    if nxt is None:
                        return None, False
            i = nxt

    def _let_go(self, worker: int, handle: int, _event: simpy.Event | None = None) -> None:
        """The owner of a short connection is done with it."""
        self.release(worker)
        self.close_interval("connections", handle)

    def _close_idle(self, _event: simpy.Event) -> None:
        """Sending has stopped: every kept-alive connection waiting for a
        request closes (its owner's ``recv`` returns the end)."""
        waiting, self.idle = self.idle, {}
        for ev in waiting.values():
            ev.succeed(None)

    def serve(self, i: int, worker: int, process: int) -> Generator[simpy.Event, Any, None]:
        """One request on its owning thread: wake, CPU phase, backend calls, answer."""
        env = self.env
        now = env.now
        self.admit[i] = now
        self.start[i] = now
        self.worker[i] = worker
        self.process[i] = process
        own = self.own_process
        # The owning thread reads a slow client's request as it trickles in.
        # The client began sending when it connected (or, on a kept-alive
        # connection, once it had read its previous answer).
        sent = 0.0
        if self._slow:
            conn = self.connection[i]
            since = max(self.arrival[i], self._client_free.get(conn, 0.0))
            sent = yield from self.client_sends(i, since=since)
        cpu = yield from self.on_thread(
            i,
            None if own else self.cpu.gil(process),
            self.demand[i] + self._fixed,
            paid=self._cs_paid,
            # A child per connection is a process of its own, asleep between requests.
            process=None if own else process,
        )
        self.cpu_time[i] = cpu
        # ... and blocks in send until a slow client has read all of the
        # answer that the socket buffers cannot take.
        if not self._slow:
            self.finish(i, cpu + self.io_time[i])
            return
        held, rest = self.read_split(i)
        read = held + rest
        if read > 0:
            starts, ends = self.intervals["recv_buffers"]
            starts.append(env.now)
            ends.append(env.now + read)
        if held > 0:
            yield env.timeout(held)
        if rest > 0:
            self.let_go[i] = env.now
        self._client_free[self.connection[i]] = env.now + rest
        self.finish(i, sent + cpu + self.io_time[i] + read, later=rest)

    # ----------------------------------------------------------------- maths

    @classmethod
    def _held(cls, workload: Workload, platform: Platform) -> tuple[float, loads.Service]:
        """(CPU seconds on the owning thread, the time a request holds it)."""
        cost = cls.request_cost(workload)
        overhead = cost.thread_s(platform) + cost.switch_s(platform)
        # A slow client's transfers hold the thread too (their mean; their spread
        # is left out), a read only beyond what the socket buffers take.
        share = read_held_share(workload, platform)
        transfer = workload.client_send.mean + share * workload.client_recv.mean
        svc = loads.service(
            workload, overhead + transfer, call_latency=platform.call_latency_us * 1e-6
        )
        return workload.cpu.mean + overhead, svc

    @classmethod
    def offered_load(
        cls, workload: Workload, platform: Platform, arch: Architecture, deal: Deal
    ) -> dict[str, float]:
        if workload.rate is None:
            return {}
        thread_cpu, svc = cls._held(workload, platform)
        k = workload.requests_per_connection
        accept = cls.request_cost(workload).accept_s(platform) / (k or math.inf)
        # The accepting thread's part (a forked child's own start is not its).
        acceptor = cls.accept_split(workload, platform)[0] / (k or math.inf)
        out = loads.cpu_loads(
            workload,
            platform,
            arch,
            deal,
            total=thread_cpu + accept,
            # Forked children run under their own GIL; only the parent's accept work shares one.
            per_process_gil=acceptor if cls.own_process else thread_cpu + accept,
        )
        out["client"] = client_load(workload, svc.mean)
        close = cls.close_wait_s(platform)
        out.update(cls._owner_loads(workload, arch, deal, svc.mean, acceptor, close=close))
        return out

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
        """The loads of whatever hands out owners: a pool of holders, or the
        acceptor. ``close``: how long an owner waits for a short connection's
        close after its last answer (``close_wait_s``)."""
        raise NotImplementedError

    @staticmethod
    def _buffered_read(workload: Workload, platform: Platform, s: Sampler) -> np.ndarray:
        """The part of a slow read the socket buffers carry after the thread let go."""
        return (1.0 - read_held_share(workload, platform)) * s.recv

    @classmethod
    def _thread_draws(
        cls,
        workload: Workload,
        platform: Platform,
        arch: Architecture,
        deal: Deal,
        s: Sampler,
    ) -> tuple[np.ndarray, str]:
        """Time a request holds its thread (a slow client's transfers, CPU, backend
        calls, CPU waits), and the CPU's method."""
        held, method = composition.held_on_thread(
            workload,
            platform,
            cls.offered_load(workload, platform, arch, deal),
            deal.busiest(workload.connections, arch.processes),
            s,
            parse=platform.parse_us * 1e-6,
        )
        return held + s.send + read_held_share(workload, platform) * s.recv, method
