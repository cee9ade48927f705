"""``async``: one event loop per process runs everything; a backend wait holds nothing.

The second generation (asyncio, Node.js, Go's netpoller seen from a single
thread, Vert.x): a request is a task, a backend call is a pending await,
and only CPU phases (parse, task creation, the request's own CPU, issuing
and reading its calls) queue for the loop. So each loop is M/G/1 over CPU
demand (Pollaczek-Khinchine), whatever the backend latency, and one thread
per process is enough. ``--processes`` runs N loops (SO_REUSEPORT).
``--loops L`` runs L loops in each process, each on its own thread (the
notes' "one process, several threads, coroutines on each thread"): a
process's connections are dealt among its loops, and under a GIL the loops
of one process take turns on it, so that they use one core between them.
``backlog`` bounds the requests in flight per process, as uvicorn's
``--limit-concurrency`` does: one more is answered 503 (dropped).
With ``loop_passes`` (a calibrated cpython profile's 3) a loop runs in
passes as asyncio does (``Passes``): an answer waits for the rest of its
pass, a backend reply for whole passes of other requests' CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import simpy

from simlab.footprint import Units, copies_units
from simlab.models import composition, loads
from simlab.models.base import Analytic, FastMode, Model, RequestCost, client_load
from simlab.models.composition import Sampler
from simlab.models.pool import Pool
from simlab.params import Architecture, Platform, Workload
from simlab.streams import Deal

__all__ = ["Async", "Passes"]


class Async(Model):
    name = "async"
    busy_on_cpu = True
    fast_mode = FastMode.LOOP
    multi_loop = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fixed = self.request_cost(self.workload).thread_s(self.platform)
        per = self.arch.loops
        self.loops = [Pool(self.env, 1, first_id=k) for k in range(self.arch.processes * per)]
        self.in_flight = [0] * self.arch.processes
        # Loops run in passes (``Platform.loop_passes``): one driver a loop,
        # each asleep from the start. The overload options that change a
        # request's path keep the queue of phases (``_overloaded``).
        self.passes: list[Passes] | None = None
        if self.platform.loop_passes > 0:
            gil = [self.cpu.gil(k // per) if per > 1 else None for k in range(len(self.loops))]
            self.passes = [Passes(self, k // per, gil[k]) for k in range(len(self.loops))]

    @classmethod
    def request_cost(cls, workload: Workload) -> RequestCost:
        # Everything runs on the loop, the request's only thread: parsing, its
        # task, and issuing and reading its calls, in one phase.
        return RequestCost(
            loop={},
            thread={"parse_us": 1, "task_us": 1, "call_us": workload.calls},
            switches=0,
            phases=1,
            on_loop=True,
        )

    def session(self, i: int, conn: int) -> Generator[simpy.Event, Any, None]:
        env = self.env
        process = self.process_of(conn)
        per = self.arch.loops
        # One loop per process (the default) is the process's only thread: its
        # GIL is never contended. With several, a connection stays on one loop
        # of its process, and the loops share the process's GIL.
        k = process * per + conn % per if per > 1 else process
        loop = self.loops[k]
        gil = self.cpu.gil(process) if per > 1 else None
        backlog = self.arch.backlog
        nxt: int | None = i
        while nxt is not None:
            i = nxt
            self.connect(conn)
            # The loop reads a slow client's request as it trickles in.
            sent = yield from self.client_sends(i)
            self.admit[i] = env.now
            if backlog is not None and self.in_flight[process] >= backlog:
                self.drop(i)
            elif self.ov is not None and self.ov.shed(i):
                pass  # answered 503 by the overload limit
            elif self.ov is not None and (self.ov.on_loop or self.ov.needs_calls):
                yield from self._overloaded(i, process, loop)
            elif self.passes is not None:
                yield from self._in_passes(i, process, k, sent)
            else:
                self.in_flight[process] += 1
                demand = self.demand[i] + self._fixed
                cpu = 0.0
                if demand > 0:
                    cpu, self.start[i] = yield from self.cpu.run(
                        gil, demand, 0, process, lock=loop, loop=True
                    )
                else:
                    self.start[i] = env.now
                self.worker[i] = k
                self.process[i] = process
                self.cpu_time[i] = cpu
                io = self.io_time[i]
                self.backend_busy()
                if io > 0:
                    yield env.timeout(io)
                self.in_flight[process] -= 1
                read = yield from self.client_reads(i)
                self.finish(i, sent + cpu + io + read)
            self.answered(conn)
            nxt = self.next_on_slot(conn)
        del self.active[conn]

    def _in_passes(
        self, i: int, process: int, k: int, sent: float
    ) -> Generator[simpy.Event, Any, None]:
        """Request ``i`` on loop ``k`` run in passes (``Passes``): its read,
        its task's step (its whole CPU, its calls issued), its backend
        replies each ``loop_passes`` passes from their read to the task, and
        the done callback that writes its answer, each in a pass of its own."""
        passes = self.passes
        assert passes is not None
        self.in_flight[process] += 1
        self.worker[i] = k
        self.process[i] = process
        answered = self.env.event()
        yield from passes[k].request(i, self.demand[i] + self._fixed, answered)
        self.in_flight[process] -= 1
        read = yield from self.client_reads(i)
        self.finish(i, sent + self.cpu_time[i] + self.io_time[i] + read)

    def _overloaded(self, i: int, process: int, loop: Pool) -> Generator[simpy.Event, Any, None]:
        """One request with the overload options that change its path: a turn
        on the loop that may be refused (queue deadline) or held by a blocking
        call, then its backend calls one by one (``simlab.overload.des``)."""
        ov = self.ov
        assert ov is not None
        self.in_flight[process] += 1
        demand = self.demand[i] + self._fixed
        blocking = 0.0
        if ov.on_loop:
            turn = yield from ov.loop_phase(i, process, loop, demand)
            if turn is None:
                self.in_flight[process] -= 1
                return
            cpu, self.start[i], blocking = turn
        elif demand > 0:
            cpu, self.start[i] = yield from self.cpu.run(
                None, demand, 0, process, lock=loop, loop=True
            )
        else:
            cpu, self.start[i] = 0.0, self.env.now
        self.worker[i] = process
        self.process[i] = process
        self.cpu_time[i] = cpu
        self.backend_busy()
        io = (yield from ov.io(i)) if ov.needs_calls else self.io_time[i]
        if not ov.needs_calls and io > 0:
            yield self.env.timeout(io)
        if ov.mix_blocks:
            # The task resumes after its await only when the loop is free: a
            # blocking call elsewhere holds up the answers that came meanwhile.
            yield from ov.resume(loop)
        self.in_flight[process] -= 1
        self.finish(i, cpu + blocking + io)

    def base_levels(self) -> dict[str, int]:
        w = self.workload
        extra = self.ov.extra_threads() if self.ov is not None else 0
        return self.levels(extra, w.connections if w.persistent else 0)

    # ----------------------------------------------------------------- maths

    @classmethod
    def _loop_cpu(cls, workload: Workload, platform: Platform) -> float:
        """Loop CPU seconds per request, its own demand included."""
        return workload.cpu.mean + cls.request_cost(workload).thread_s(platform)

    @classmethod
    def threads_per_process(cls, arch: Architecture) -> int:
        return arch.loops

    @staticmethod
    def _queues(platform: Platform, arch: Architecture) -> Architecture:
        """The independent M/G/1 queues the maths sees: one per process under a
        GIL (a process's loops take turns on it, so its requests share one
        server), one per loop without it (an approximation: connections are
        dealt to processes, then to loops, where the maths deals them at once)."""
        if arch.loops == 1 or platform.gil:
            return arch
        return Architecture(
            workers=arch.workers, processes=arch.processes * arch.loops, backlog=arch.backlog
        )

    @classmethod
    def units(cls, workload: Workload, arch: Architecture, in_flight: int) -> Units:
        threads, copies = cls.preforked(arch)
        return Units(
            **copies_units(copies, workload.calls),
            thread=threads,
            connection=workload.connections if workload.persistent else in_flight,
            task=in_flight,
            # One multiplexed backend connection per loop.
            backend_conn=arch.processes * arch.loops if workload.calls else 0,
            served=arch.processes * arch.loops,  # each loop's thread, once it has served
        )

    @classmethod
    def offered_load(
        cls, workload: Workload, platform: Platform, arch: Architecture, deal: Deal
    ) -> dict[str, float]:
        if workload.rate is None:
            return {}
        loop_cpu = cls._loop_cpu(workload, platform)
        shared = loop_cpu if arch.loops > 1 else None  # several loops contend for the GIL
        out = loads.cpu_loads(
            workload, platform, arch, deal, total=loop_cpu, per_process_gil=shared
        )
        arch = cls._queues(platform, arch)
        busiest = deal.busiest(workload.connections, arch.processes)
        out["loop"] = workload.rate * busiest * loop_cpu
        io_mean = loads.io_moments(workload, platform.call_latency_us * 1e-6)[0]
        out["client"] = client_load(workload, loop_cpu + io_mean)
        return out

    @classmethod
    def analytic(
        cls, workload: Workload, platform: Platform, arch: Architecture, deal: Deal
    ) -> Analytic | str:
        if workload.rate is None:
            return "closed or replayed arrivals have no textbook reduction here"
        arch = cls._queues(platform, arch)
        if platform.cores is not None and platform.cores < arch.processes:
            return "more loops than cores: loops contend for the CPU"
        if arch.backlog is not None:
            return "a bound on requests in flight drops some, which these formulas do not model"
        if platform.loop_passes > 0:
            return "a loop run in passes answers at the end of a pass, which M/G/1 does not model"
        fixed = cls.request_cost(workload).thread_s(platform)
        cpu = loads.service(workload, fixed, with_io=False)
        io_mean = loads.io_moments(workload, platform.call_latency_us * 1e-6)[0]
        if cpu.mean == 0:
            return "requests use no CPU, so nothing ever queues for the loop"
        return loads.mgc_reference(
            workload,
            arch,
            deal,
            cpu,
            servers=1,
            extra_latency=io_mean + platform.rtt_us * 1e-6,
            extra_fixed=workload.calls == 0 or workload.io.cv == 0,
            busy_mean=cpu.mean,
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
        w, p = workload, platform
        assert w.rate is not None
        arch = cls._queues(platform, arch)
        us = 1e-6
        lam = w.rate * deal.busiest(w.connections, arch.processes)
        loop = s.cpu + (p.loop_parse_us + p.task_us) * us + w.calls * p.call_us * us
        pw, mw = composition.mgc_wait(lam, float(loop.mean()), composition.scv(loop), 1)
        wait = composition.mixture(s.u_loop, s.e_loop, pw, mw)
        method = "M/G/1 loop per process (Pollaczek-Khinchine)"
        if p.loop_passes > 0:
            # The waits for the rest of a pass are not in it: simulation adds them.
            method += "; its passes (loop_passes) left to the simulation"
        return wait + loop + s.io + s.rtt + s.send + s.recv, method

    @classmethod
    def _fast_limits(cls, workload: Workload, platform: Platform, arch: Architecture) -> str | None:
        if arch.loops > 1:
            return "several loops per process (the fast engine runs one per process)"
        return None

    @classmethod
    def fast_events(cls, workload: Workload, platform: Platform, arch: Architecture) -> bool:
        # One loop per process is its process's only thread: its GIL is never
        # contended, and with a core per loop no phase waits for one.
        more_loops = platform.cores is not None and platform.cores < arch.processes
        quiet = platform.wake_us == 0 and platform.loop_wake_us == 0
        # Passes (``Passes``) are only in the compiled event loop.
        return more_loops or not quiet or platform.loop_passes > 0


class Passes:
    """One event loop run in passes, as asyncio's ``run_once`` runs it
    (``Platform.loop_passes``).

    A pass runs every callback ready when it starts, in order: first those
    scheduled (``call_soon``) during the pass before, then the I/O the poll
    found ready at its start; what a callback schedules waits for the next
    pass. A request's bytes are I/O: their read creates its task, whose step
    (the request's whole CPU, its backend calls issued) runs a pass later,
    and whose done callback, a pass after that, writes the answer. A backend
    reply is I/O too: its task resumes ``loop_passes`` passes after the
    reply is read (asyncio's reader's step and the task's wake-up, one more
    to gather parallel calls), then its done callback in the next. So an
    answer waits for the rest of its pass, and a reply for whole passes of
    other requests' CPU, where a queue of phases answers each at its own
    end. Only a step that wakes the loop from its poll pays the wake-up
    (``Cpu.run``'s ``loop``): the loop stays awake through its passes.
    """

    __slots__ = ("asleep", "cpu", "env", "gil", "hops", "io", "model", "process", "soon", "wake")

    def __init__(self, model: Async, process: int, gil: Pool | None) -> None:
        self.model = model
        self.env = model.env
        self.cpu = model.cpu
        self.process = process
        self.gil = gil
        self.hops = int(model.platform.loop_passes)
        # Callbacks for the next pass; I/O found ready at its start. Each a
        # (CPU seconds, what to do then with its start and the CPU it took).
        self.soon: list[tuple[float, Callable[[float, float], None]]] = []
        self.io: list[tuple[float, Callable[[float, float], None]]] = []
        self.wake: simpy.Event | None = None
        self.asleep = True
        self.env.process(self._run())

    def ready_io(self, then: Callable[[float, float], None], demand: float = 0.0) -> None:
        self.io.append((demand, then))
        self._kick()

    def call_soon(self, then: Callable[[float, float], None], demand: float = 0.0) -> None:
        self.soon.append((demand, then))
        self._kick()

    def _kick(self) -> None:
        if self.wake is not None and not self.wake.triggered:
            self.wake.succeed()

    def _run(self) -> Generator[simpy.Event, Any, None]:
        env, cpu, process = self.env, self.cpu, self.process
        while True:
            if not self.soon and not self.io:
                self.asleep = True
                self.wake = env.event()
                yield self.wake
                self.wake = None
            batch = self.soon + self.io
            self.soon, self.io = [], []
            for demand, then in batch:
                started, used = env.now, 0.0
                if demand > 0:
                    # Awake, the loop is no phase's to wake: its process is
                    # held active meanwhile, as a queue of phases holds it.
                    awake = not self.asleep
                    if awake:
                        cpu.active[process] += 1
                    used, started = yield from cpu.run(self.gil, demand, 0, process, loop=True)
                    if awake:
                        cpu.active[process] -= 1
                    self.asleep = False
                then(started, used)

    def request(
        self, i: int, demand: float, answered: simpy.Event
    ) -> Generator[simpy.Event, Any, None]:
        """Request ``i``'s path through the passes; returns once it is answered."""
        m = self.model
        w = m.workload
        io = float(m.io_time[i])
        parallel = w.fanout == "parallel" and w.calls > 1
        rounds = 1 if parallel or w.calls == 0 else w.calls
        hops = self.hops + (1 if parallel else 0)
        left = [rounds]

        def done(_t: float, _used: float) -> None:
            answered.succeed()

        def resumed() -> None:
            left[0] -= 1
            if left[0] > 0:
                self._call(io / rounds, hops, resumed)
            else:
                self.call_soon(done)

        def step(started: float, used: float) -> None:
            m.start[i] = started
            m.cpu_time[i] = used
            m.backend_busy()
            if io > 0:
                self._call(io / rounds, hops, resumed)
            else:
                self.call_soon(done)

        self.ready_io(lambda _t, _u: self.call_soon(step, demand))
        yield answered

    def _call(self, wait: float, hops: int, resumed: Callable[[], None]) -> None:
        """A backend call answered ``wait`` from now, its reply read as I/O
        and handed on through ``hops`` passes to ``resumed``."""

        def hop(n: int) -> Callable[[float, float], None]:
            def run(_t: float, _u: float) -> None:
                if n <= 1:
                    resumed()
                else:
                    self.call_soon(hop(n - 1))

            return run

        self.env.timeout(wait).callbacks.append(lambda _ev: self.ready_io(hop(hops)))
