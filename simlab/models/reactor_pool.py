"""``reactor-pool``: an event loop reads requests, a pool of W worker threads runs them.

The first generation of event-driven servers (nginx + PHP-FPM, Tomcat NIO,
gunicorn gthread): the loop owns every connection, so an idle connection
costs only its memory; each request is parsed on the loop, handed to a
worker (``dispatch``), and the worker blocks through its backend calls. It is
M/G/W over requests per process (Erlang C when service is exponential). The
catch the notes point at: a worker is held for the whole backend wait, so
W must grow with lam x W_io (Little's law).

gunicorn's gthread worker reads a new connection's first request on a worker
thread (``Architecture.first_read = "worker"``): the loop accepts and hands
the connection to the pool at once, and the worker that takes it blocks in
recv until the client's first request comes. Persistent connections all
open at the start, so each holds a worker for its client's first think time
(about N / rate): with N well above W the first requests queue behind that
for seconds. Only then is the connection the loop's, as in a reactor.
(gunicorn's ``workers/gthread.py`` says so in its design note: "accepted
connections are added to the thread pool as a connection job. Keepalive
connections are put back in the loop waiting for an event.") A worker waits
for a new connection's first bytes ``FIRST_READ_WAIT_S`` at most (gunicorn
27's ``DEFAULT_WORKER_DATA_TIMEOUT``: ``handle`` selects on the socket
before it reads); a connection still silent then goes back to the poller,
and its first request comes through the loop like any other. Its P worker
processes race for the connections that open together
(``Architecture.accept = "race"``), so one may hold most of them and stay
in first reads far longer than an even deal would.
"""

from __future__ import annotations

from collections.abc import Generator
from functools import partial
from typing import Any

import numpy as np
import simpy
from simpy.events import Initialize

from simlab.errors import UserError
from simlab.footprint import Units, copies_units
from simlab.models import composition, loads
from simlab.models.base import (
    COMPLETED,
    Analytic,
    Due,
    FastMode,
    Model,
    RequestCost,
    Step,
    client_load,
)
from simlab.models.composition import Sampler
from simlab.models.pool import Pool
from simlab.params import Architecture, Platform, Workload
from simlab.streams import Deal

__all__ = ["ReactorPool"]

# Where a quick session resumes: a new request, a worker handed over, its timeout over.
BEGIN, SERVE, DONE, NEXT = 0, 1, 2, 3
# gthread's wait for a new connection's first bytes on a worker (gunicorn 27,
# ``workers/gthread.py``: ``DEFAULT_WORKER_DATA_TIMEOUT``), then the poller's.
FIRST_READ_WAIT_S = 5.0


class ReactorPool(Model):
    name = "reactor-pool"
    pooled = True
    fast_mode = FastMode.LOOP_THEN_POOL
    first_read_knob = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        w, p, a = self.workload, self.platform, self.arch
        cost = self.request_cost(w)
        self._loop_cost = cost.loop_s(p)
        self._fixed = cost.thread_s(p)
        self._cs_paid = p.context_switch_us > 0
        self.loops = [Pool(self.env, 1, first_id=k) for k in range(a.processes)]
        self.pools = [Pool(self.env, a.workers, first_id=k * a.workers) for k in range(a.processes)]
        # With no loop phase and a free-running CPU a session only waits for a
        # worker and then for one timeout: it runs as callbacks (``_quick``).
        self._quick = (
            self.ov is None and not self._slow and self._loop_cost == 0 and self.cpu.free_running
        )
        self._switch = (1 + w.calls) * self.cpu.cs
        self._short = w.requests_per_connection is not None
        self._closed = w.think is not None  # a closed client thinks after each answer
        self._single = a.processes == 1
        # gthread's first read: connection -> the worker blocked in its first
        # read (an event to hand it the request), or the request that came first.
        self._reader: dict[int, simpy.Event] = {}
        self._first: dict[int, int] = {}
        self._unread: set[int] = set()
        self._parse = p.parse_us * 1e-6  # a worker reads and parses as a thread does
        if a.first_read == "worker" and (self.ov is not None or w.slow_clients):
            raise UserError(
                "first_read='worker' (gthread's first read) is modelled without the "
                "overload options and slow clients"
            )

    @classmethod
    def request_cost(cls, workload: Workload) -> RequestCost:
        # The loop parses and hands off; the worker issues and reads the calls,
        # waking once for the request and once per backend answer.
        calls = workload.calls
        return RequestCost(
            loop={"parse_us": 1, "dispatch_us": 1},
            thread={"call_us": calls},
            switches=1 + calls,
            phases=2 + calls,
            call_phases=calls,
        )

    @classmethod
    def threads_per_process(cls, arch: Architecture) -> int:
        return arch.workers + 1  # the workers and the loop

    def base_levels(self) -> dict[str, int]:
        w = self.workload
        return self.levels(0, w.connections if w.persistent else 0)

    # ------------------------------------------------- gthread's first read

    def start_arrivals(self) -> None:
        if self.arch.first_read == "worker" and self.workload.persistent:
            # Every persistent connection is accepted at time 0 and queued for a
            # worker, which will block in its first read.
            self._unread = set(range(self.workload.connections))
            for conn in range(self.workload.connections):
                self.env.process(self._first_read(conn))
        super().start_arrivals()

    def admit_slot(self, i: int, conn: int) -> bool:
        if conn not in self._unread:
            return True
        # The connection's first request goes to the worker that reads it (or
        # waits for one); what the client sends after it queues behind it.
        self._unread.discard(conn)
        self.active[conn] = None
        if self.ov is not None:
            self.ov.on_sent(conn, i)
        reader = self._reader.pop(conn, None)
        if reader is not None:
            reader.succeed(i)
        else:
            self._first[conn] = i
        return False

    def _first_read(self, conn: int) -> Generator[simpy.Event, Any, None]:
        """A worker takes connection ``conn`` at its accept and blocks in recv
        until its first request, serves it, then gives the connection to the loop."""
        env = self.env
        process = self.process_of(conn)
        pool = self.pools[process]
        gil = self.cpu.gil(process)
        worker = pool.take()
        if worker < 0:
            worker = yield pool.wait()
        i = self._first.pop(conn, -1)
        if i < 0:
            ready = simpy.Event(env)
            self._reader[conn] = ready
            yield ready | env.timeout(FIRST_READ_WAIT_S)
            if not ready.triggered:
                # Silent for the whole wait: the worker hands the connection to
                # the poller and takes its next job; the first request, when it
                # comes, is the loop's like any other.
                del self._reader[conn]
                self._unread.discard(conn)
                pool.give(worker)
                return
            i = ready.value  # type: ignore[assignment] # the request's index
        self.admit[i] = env.now
        self.start[i] = env.now
        self.worker[i] = worker
        self.process[i] = process
        demand = self.demand[i] + self._fixed + self._parse
        cpu = yield from self.on_thread(i, gil, demand, paid=self._cs_paid, process=process)
        self.cpu_time[i] = cpu
        pool.give(worker)
        self.finish(i, cpu + self.io_time[i])
        nxt = self.next_on_slot(conn)
        if nxt is None:
            del self.active[conn]
        else:
            yield from self.session(nxt, conn)

    def route(self, i: int, conn: int) -> None:
        # An open arrival on an idle connection of a quick session: what
        # ``Model.route`` and ``start_session`` would do (no first read waits
        # for it, no overload dynamics see it), in one call.
        if self.arriving and self._quick and conn not in self.active and not self._unread:
            self.active[conn] = None
            # One process: every connection is its (what ``process_of`` says, uncalled).
            self._quick_begin(i, conn, 0 if self._single else self.process_of(conn))
            return
        super().route(i, conn)

    def start_session(self, i: int, conn: int) -> None:
        if not self._quick:
            super().start_session(i, conn)
            return
        if self.arriving:
            # Sent by an open arrival: the urgent start would be the very next
            # event (``OpenArrivals._arrive``), so its step runs now, one
            # event fewer a request. Nothing else is scheduled at this instant
            # in between: no neighbour's CPU (a free-running CPU has no cores
            # to share) and no overload dynamics (``_quick``).
            self._quick_begin(i, conn, self.process_of(conn))
            return
        # What ``env.process`` would schedule (SimPy's own urgent Initialize
        # event), calling the session's first step instead of a generator.
        Initialize(self.env, Step(partial(self._quick_start, i, conn)))  # type: ignore[arg-type]

    def _quick_start(self, i: int, conn: int, _event: simpy.Event) -> None:
        self._quick_session(i, conn, self.process_of(conn), BEGIN, -1, 0.0)

    def _quick_handed(self, i: int, conn: int, process: int, event: simpy.Event) -> None:
        # The server a ``Pool`` hands over.
        worker: int = event.value  # type: ignore[assignment]
        self._quick_session(i, conn, process, SERVE, worker, 0.0)

    def _quick_begin(self, i: int, conn: int, process: int) -> None:
        """``_quick_session`` from BEGIN in its usual case, straight through: a
        persistent connection, a free worker and a request that takes time.

        The DES's hottest step (every open arrival at a quick session runs
        it): the same assignments in the same order as the general step, without
        its stage dispatch, and its timeout calls ``_quick_done`` directly."""
        free = self.pools[process].free
        if self._short or not free:
            self._quick_session(i, conn, process, BEGIN, -1, 0.0)
            return
        now = self.env.now
        worker = free.pop()
        self.admit[i] = now
        self.start[i] = now
        self.worker[i] = worker
        self.process[i] = process
        demand = self.demand[i] + self._fixed
        cpu = 0.0
        if demand > 0 or self._cs_paid:
            cpu = demand + self._switch
            busy = self.cpu
            busy.busy_start.append(now)
            busy.busy_dur.append(cpu)
        held = cpu + self.io_time[i]
        if held > 0:
            done = partial(self._quick_done, i, conn, process, worker, cpu)
            Due(self.env, held, done)
            return
        self._quick_session(i, conn, process, DONE, worker, cpu)

    def _quick_done(
        self, i: int, conn: int, process: int, worker: int, cpu: float, _event: simpy.Event
    ) -> None:
        """``_quick_session`` from DONE on a persistent connection, straight
        through: ``finish`` and ``_done`` inlined (``_quick`` rules out the
        overload dynamics they would call); the connection's next request, if
        one is queued, goes through the general step."""
        if self._short:
            self._quick_session(i, conn, process, DONE, worker, cpu)
            return
        self.cpu_time[i] = cpu
        self.pools[process].give(worker)
        # ``finish(i, service)``: the same sums, in the same order.
        self.end[i] = self.env.now + 0.0
        self.service[i] = 0.0 + self._loop_cost + cpu + self.io_time[i] + 0.0
        self.outcome[i] = COMPLETED
        self.in_system -= 1
        if self._closed:
            self._after(self._think[i] + 0.0, self.connection[i])
        q = self.active[conn]
        if not q:
            del self.active[conn]
            return
        self._quick_session(q.popleft(), conn, process, BEGIN, -1, 0.0)

    def _quick_session(  # noqa: PLR0917 - a step resumes where the session waited
        self, i: int, conn: int, process: int, stage: int, worker: int, cpu: float
    ) -> None:
        """``_lean_session`` with no loop phase on a free-running CPU, as callbacks.

        The same steps and the same events in the same order (a session waits
        for a worker, then for one timeout), without a generator: it spares the
        SimPy process's end, an event that nobody waits for. ``stage`` says
        where the session resumes."""
        pool, short = self.pools[process], self._short
        now = self.env.now  # a step runs at one instant
        while True:
            if stage == BEGIN:
                if short:
                    self.connect(conn)
                self.admit[i] = now
                worker = pool.take()
                backlog = self.arch.backlog
                if worker < 0 and backlog is not None and pool.queued >= backlog:
                    self.drop(i)  # the work queue is full: answer 503
                    stage = NEXT
                elif worker < 0:
                    pool.wait().callbacks.append(partial(self._quick_handed, i, conn, process))
                    return
                else:
                    stage = SERVE
            if stage == SERVE:
                self.start[i] = now
                self.worker[i] = worker
                self.process[i] = process
                demand = self.demand[i] + self._fixed
                cpu = 0.0
                if demand > 0 or self._cs_paid:
                    cpu = demand + self._switch
                    self.cpu.busy_start.append(now)
                    self.cpu.busy_dur.append(cpu)
                if cpu + self.io_time[i] > 0:
                    done = partial(self._quick_done, i, conn, process, worker, cpu)
                    Due(self.env, cpu + self.io_time[i], done)
                    return
                stage = DONE
            if stage == DONE:
                self.cpu_time[i] = cpu
                pool.give(worker)
                self.finish(i, 0.0 + self._loop_cost + cpu + self.io_time[i] + 0.0)
            if short:
                self.answered(conn)
            q = self.active[conn]
            if not q:
                del self.active[conn]
                return
            i, stage = q.popleft(), BEGIN

    def session(self, i: int, conn: int) -> Generator[simpy.Event, Any, None]:
        # Without the overload options and slow clients a request takes the
        # lean path: the same events, in the same order, with fewer calls.
        if self.ov is None and not self._slow:
            return self._lean_session(i, conn)
        return self._session(i, conn)

    def _lean_session(self, i: int, conn: int) -> Generator[simpy.Event, Any, None]:
        """``_session`` without the overload options and slow clients: the DES's
        hot path. A worker's phase on a free-running CPU and its backend wait
        are one timeout, as ``on_thread`` makes them."""
        env = self.env
        process = self.process_of(conn)
        loop, pool = self.loops[process], self.pools[process]
        cpu_of = self.cpu
        gil = cpu_of.gil(process)
        backlog = self.arch.backlog
        loop_cost, fixed, paid = self._loop_cost, self._fixed, self._cs_paid
        short = self.workload.requests_per_connection is not None
        calls = self.workload.calls
        free = cpu_of.free_running
        switch = (1 + calls) * cpu_of.cs
        active = self.active
        demand_of, io_of = self.demand, self.io_time
        while True:
            if short:
                self.connect(conn)
            self.admit[i] = env.now
            if loop_cost > 0:
                yield from cpu_of.run(gil, loop_cost, 0, process, lock=loop, loop=True)
            worker = pool.take()
            if worker < 0 and backlog is not None and pool.queued >= backlog:
                self.drop(i)  # the work queue is full: answer 503
            else:
                if worker < 0:
                    worker = yield pool.wait()
                self.start[i] = env.now
                self.worker[i] = worker
                self.process[i] = process
                demand = demand_of[i] + fixed
                if free:
                    cpu = 0.0
                    if demand > 0 or paid:
                        cpu = demand + switch
                        cpu_of.busy_start.append(env.now)
                        cpu_of.busy_dur.append(cpu)
                    if cpu + io_of[i] > 0:
                        yield env.timeout(cpu + io_of[i])
                else:
                    cpu = yield from self.on_thread(i, gil, demand, paid=paid, process=process)
                self.cpu_time[i] = cpu
                pool.give(worker)
                self.finish(i, 0.0 + loop_cost + cpu + io_of[i] + 0.0)
            if short:
                self.answered(conn)
            q = active[conn]
            if not q:
                del active[conn]
                return
            i = q.popleft()

    def _session(self, i: int, conn: int) -> Generator[simpy.Event, Any, None]:
        env = self.env
        process = self.process_of(conn)
        loop, pool = self.loops[process], self.pools[process]
        gil = self.cpu.gil(process)
        backlog = self.arch.backlog
        nxt: int | None = i
        while nxt is not None:
            i = nxt
            self.connect(conn)
            # The loop reads a slow client's request as it trickles in; no
            # thread waits for it, only its bytes do.
            sent = yield from self.client_sends(i)
            self.admit[i] = env.now
            if self._loop_cost > 0:
                yield from self.cpu.run(gil, self._loop_cost, 0, process, lock=loop, loop=True)
            # The overload limit answers 503 before the request is handed on.
            shed = self.ov is not None and self.ov.shed(i)
            worker = -1 if shed else pool.take()
            if shed:
                pass
            elif worker < 0 and backlog is not None and pool.queued >= backlog:
                self.drop(i)  # the work queue is full: answer 503
            else:
                if worker < 0:
                    worker = yield pool.wait()
                if self.ov is not None and self.ov.expired(i, self.admit[i]):
                    pool.give(worker)  # waited past the queue deadline: dropped unserved
                    self.answered(conn)
                    nxt = self.next_on_slot(conn)
                    continue
                self.start[i] = env.now
                self.worker[i] = worker
                self.process[i] = process
                demand = self.demand[i] + self._fixed
                cpu = yield from self.on_thread(i, gil, demand, paid=self._cs_paid, process=process)
                self.cpu_time[i] = cpu
                pool.give(worker)
                if self._slow:
                    self.let_go[i] = env.now
                # The loop writes the answer out as the client reads it.
                read = yield from self.client_reads(i)
                self.finish(i, sent + self._loop_cost + cpu + self.io_time[i] + read)
            self.answered(conn)
            nxt = self.next_on_slot(conn)
        del self.active[conn]

    # ----------------------------------------------------------------- maths

    @classmethod
    def units(cls, workload: Workload, arch: Architecture, in_flight: int) -> Units:
        threads, copies = cls.preforked(arch)
        return Units(
            **copies_units(copies, workload.calls),
            thread=threads,
            connection=workload.connections if workload.persistent else in_flight,
            task=in_flight,
            # Each worker keeps its own backend connection once it has used it.
            backend_conn=arch.workers * arch.processes if workload.calls else 0,
            served=arch.workers * arch.processes,  # each worker, once it has served
        )

    @classmethod
    def offered_load(
        cls, workload: Workload, platform: Platform, arch: Architecture, deal: Deal
    ) -> dict[str, float]:
        if workload.rate is None:
            return {}
        cost = cls.request_cost(workload)
        loop = cost.loop_s(platform)
        fixed, cs = cost.thread_s(platform), cost.switch_s(platform)
        worker_cpu = workload.cpu.mean + fixed + cs
        svc = loads.service(workload, fixed + cs, call_latency=platform.call_latency_us * 1e-6)
        top_share = deal.busiest(workload.connections, arch.processes)
        out = loads.cpu_loads(
            workload,
            platform,
            arch,
            deal,
            total=loop + worker_cpu,
            per_process_gil=loop + worker_cpu,
        )
        out["loop"] = workload.rate * top_share * loop
        out["workers"] = workload.rate * top_share * svc.mean / arch.workers
        out["client"] = client_load(workload, loop + svc.mean)
        return out

    @classmethod
    def analytic(
        cls, workload: Workload, platform: Platform, arch: Architecture, deal: Deal
    ) -> Analytic | str:
        blocker = loads.reduction_blocker(workload, platform, arch, queue="work queue")
        if blocker is not None:
            return blocker
        if arch.first_read == "worker":
            return "workers blocked in new connections' first reads (gthread) are not a queue"
        cost = cls.request_cost(workload)
        if cost.loop_s(platform) > 0:
            return "the loop's parse and dispatch phase is a second queue in tandem"
        svc = loads.service(
            workload,
            cost.thread_s(platform) + cost.switch_s(platform),
            call_latency=platform.call_latency_us * 1e-6,
        )
        return loads.mgc_reference(
            workload, arch, deal, svc, servers=arch.workers, extra_latency=platform.rtt_us * 1e-6
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
        w, p, a = workload, platform, arch
        assert w.rate is not None
        offered = cls.offered_load(w, p, a, deal)
        busiest = deal.busiest(w.connections, a.processes)
        held, method = composition.held_on_thread(w, p, offered, busiest, s, parse=0.0)
        lam = w.rate * busiest
        loop_cost = cls.request_cost(w).loop_s(p)
        pl, ml = composition.mgc_wait(lam, loop_cost, 0.0, 1)
        pw, mw = composition.mgc_wait(lam, float(held.mean()), composition.scv(held), a.workers)
        wait = composition.mixture(s.u_pool, s.e_pool, pw, mw) + composition.mixture(
            s.u_loop, s.e_loop, pl, ml
        )
        return (
            wait + loop_cost + held + s.rtt + s.send + s.recv,
            f"M/G/{a.workers} workers per process (Erlang C, Allen-Cunneen) + {method}",
        )

    @classmethod
    def _fast_limits(cls, workload: Workload, platform: Platform, arch: Architecture) -> str | None:
        if arch.first_read == "worker":
            return "a worker blocked in a new connection's first read (gthread) is not FCFS"
        return None
