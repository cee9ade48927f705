"""A FIFO pool of identical servers, and the CPU they contend for.

``Pool`` is a lean stand-in for ``simpy.Resource``: a free server is taken
without creating any event, so an uncontended acquire costs two list
operations, and the release hands the server straight to the oldest waiter
(no barging, strict FCFS). It also names the server it hands out, which gives
the per-request ``worker`` column for free. simpy.Resource would cost a
Request and a Release event per use and an O(capacity) list removal on each
release, which matters with thousands of workers.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Generator
from typing import Any

import numpy as np
import simpy

from simlab.params import Platform
from simlab.streams import HandOffs

__all__ = ["Cpu", "Gil", "Pool"]

# A holder whose step ends within this of a waiter's timer drops the GIL: the
# step was cut to that timer, and adding its length to the clock may round.
DROP_SLACK = 1e-12

# The processes beside the server in the lab, each one thread on the cores
# (``Cpu.background``): the load generator, the backend, the probe.
CLIENT, BACKEND, PROBE = range(3)
NEIGHBOURS = len((CLIENT, BACKEND, PROBE))


class Pool:
    """``capacity`` servers numbered ``first_id`` upward, granted in FIFO order."""

    __slots__ = ("capacity", "env", "free", "waiters")

    def __init__(self, env: simpy.Environment, capacity: int, first_id: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity(={capacity}) must be >= 1")
        self.env = env
        self.capacity = capacity
        # Reversed so that pop() hands out the lowest id first: traces read naturally.
        self.free: list[int] = list(range(first_id + capacity - 1, first_id - 1, -1))
        self.waiters: deque[simpy.Event] = deque()

    def take(self) -> int:
        """A free server's id, or -1 when all are busy (then ``yield wait()``)."""
        return self.free.pop() if self.free else -1

    def wait(self) -> simpy.Event:
        """An event that fires with a server id once one is handed over."""
        ev = simpy.Event(self.env)
        self.waiters.append(ev)
        return ev

    def give(self, server: int) -> None:
        if self.waiters:
            self.waiters.popleft().succeed(server)
        else:
            self.free.append(server)

    @property
    def queued(self) -> int:
        return len(self.waiters)


class Gil(Pool):
    """A GIL whose hand-off is not first-come-first-served.

    CPython's GIL (``Python/ceval_gil.h``) is a mutex and a condition
    variable: a thread that drops it signals the condition, and whichever
    waiting thread the OS wakes first takes it, unless a thread that has just
    come back from its I/O takes it before any sleeper wakes. So the oldest
    waiter is not served first: of the threads waiting, any may be next. A
    waiter's only guarantee is the switch interval, and only against a thread
    that holds the GIL that long after its request (``Cpu._drop_at``): a stream of short phases
    switching among the others voids its timeouts, and it waits on (the
    convoy effect, Beazley 2010). Here a hand-off goes to the oldest waiter
    with probability ``fifo`` (the platform's ``gil_fifo_share``), else to
    one of them drawn uniformly (``HandOffs``: one uniform per hand-off with
    two or more waiters, which every process's GIL reads in turn).
    """

    __slots__ = ("draws",)

    def __init__(self, env: simpy.Environment, draws: HandOffs) -> None:
        super().__init__(env, 1)
        self.draws = draws

    def give(self, server: int) -> None:
        waiters = self.waiters
        if len(waiters) > 1:
            k = self.draws.pick(len(waiters))
            if k:
                chosen = waiters[k]
                del waiters[k]
                chosen.succeed(server)
                return
        super().give(server)


class Cpu:
    """P cores shared by the whole machine, and one GIL per process when the
    platform has one.

    A CPU phase takes its process's GIL, then a core, runs, and releases both.
    With a GIL and a switch interval (``gil_interval_us``), a phase that holds
    the GIL is made to drop it as CPython's forced switch does
    (``Python/ceval_gil.h``): the timer is the *waiter's*. A thread that finds
    the GIL held waits on a condition for one interval; if the GIL has not
    changed hands meanwhile it asks the holder to drop it, and the holder
    does at its next check (here: at once), gives up its core and queues
    again. If the GIL did change hands, the waiter's timed wait starts again
    where the last one ended. So the holder is asked to drop at the earliest
    time one of its waiters ends a whole interval that began after the holder
    took the GIL (``_drop_at``): an interval after a newcomer arrived, and
    one to two intervals after the take for a thread already waiting then.
    A phase that had to wait for its GIL holds it idle for ``gil_handoff_us``
    before it takes a core, and so does a holder that queued again after a
    forced switch: the waiter CPython's dropping thread signals must be
    woken and scheduled before it takes the GIL, time the GIL serves no one
    and no core spends on the server.
    Without an interval, a phase keeps the GIL to its end (FCFS), which
    leaves the mean wait unchanged (work conserving) but narrows its spread
    for long phases.

    A phase that follows ``switches`` thread wake-ups costs, on top of its
    demand, ``switches * cs * (1 + contention * runnable)`` where ``runnable`` is
    the number of threads queued for the GIL or a core when it starts (see
    ``Platform``). A phase that finds its process idle (nothing running or
    waiting in it) also pays ``wake_us``: the process had gone to sleep in
    the kernel and must be woken, its caches cold. Under load the process
    stays awake and this cost is amortised away, which is why CPU per request
    falls as a server nears saturation. Every phase is recorded as a busy
    interval, and so is the CPU of the GIL's waiters' wake-ups beside a
    phase, where a core is free for it (``gil_wake_us``): one interval from
    the phase's start, which holds no core (so with several processes the
    busy level may briefly exceed the cores: an approximation of wake-ups
    too short to keep a core from anyone).

    Processes beside the server on the same machine (a load generator, a
    backend) take cores too (``background``): they queue for a core like a
    phase, and are not the server's CPU, so they are not recorded. While one
    runs, a phase handed its GIL after a wait finds its thread woken on that
    neighbour's core with probability ``gil_neighbour_share`` (the kernel
    wakes a thread where it chooses, often the core it last ran on, and a
    woken thread does not always preempt what runs there at once): it waits
    until that neighbour blocks, the GIL idle meanwhile, though the core the
    GIL's last holder left may be free, and then runs on that core. With a
    share above 0 each neighbour is one thread, whose runs come one after
    another on the core it holds until it has none left (its busy period; a
    neighbour busier than a core would never block, which the lab's are
    not); at 0 its runs queue for cores each on its own, as they did before
    the share. A
    server at its GIL's capacity beside an open-loop load generator loses
    that time from such hand-offs (``simlab.calibrate.fit_neighbour_share``).
    """

    __slots__ = (
        "active",
        "busy_dur",
        "busy_start",
        "contention",
        "core_placed",
        "core_process",
        "cores",
        "crowding",
        "cs",
        "env",
        "gil_wake",
        "gils",
        "handoff",
        "interval",
        "lane_core",
        "lanes",
        "loop_wake",
        "neighbour_share",
        "neighbours",
        "place",
        "placed",
        "poll",
        "sibling_share",
        "since",
        "wake",
    )

    def __init__(
        self,
        env: simpy.Environment,
        platform: Platform,
        processes: int,
        rng: np.random.Generator | None,
        place: np.random.Generator | None = None,
    ) -> None:
        self.env = env
        self.cores = Pool(env, platform.cores) if platform.cores is not None else None
        self.gils: list[Pool] | None = None
        if platform.gil:
            fifo = platform.gil_fifo_share
            # A hand-off other than first-come-first-served draws from ``rng``.
            if fifo < 1 and rng is None:
                raise ValueError("a GIL handed out of order needs a random stream")
            draws = HandOffs(rng, fifo) if fifo < 1 and rng is not None else None
            self.gils = [
                Gil(env, draws) if draws is not None else Pool(env, 1) for _ in range(processes)
            ]
        self.cs = platform.context_switch_us * 1e-6
        self.contention = platform.switch_contention
        self.crowding = platform.crowding
        self.wake = platform.wake_us * 1e-6
        self.loop_wake = platform.loop_wake_us * 1e-6
        self.interval = platform.gil_interval_us * 1e-6 if platform.gil else 0.0
        # What each thread waiting for the GIL slows its holder by: its timed
        # wake-ups, one an interval (``Platform.gil_poll_us``).
        self.poll = platform.gil_poll
        # And the share of a core each waiter's wake-ups take (``gil_wake_us``).
        self.gil_wake = platform.gil_wake
        self.handoff = platform.gil_handoff_us * 1e-6 if platform.gil else 0.0
        # A GIL waiter woken on a neighbour's core (``gil_neighbour_share``):
        # the neighbours' runs on a core now, and where the draws come from.
        self.neighbour_share = platform.gil_neighbour_share if platform.gil else 0.0
        if self.neighbour_share > 0 and place is None:
            raise ValueError("a GIL waiter placed beside neighbours needs a random stream")
        self.place = place
        # Each neighbour's runs, one at a time, and the core it holds (-1:
        # none); the neighbours holding a core now.
        self.lanes = [Pool(env, 1) for _ in range(NEIGHBOURS)]
        self.lane_core = [-1] * NEIGHBOURS
        self.neighbours: list[int] = []
        # The waiters woken on each neighbour's core: the first takes that
        # core when the neighbour blocks (``background``).
        self.placed: dict[int, list[simpy.Event]] = {}
        # A GIL waiter woken on a core another process of the server runs on
        # (``gil_sibling_share``): which process's GIL holder runs on each
        # core (-1: none, or a phase without a GIL), and the waiters placed
        # on each core, the first taking it when that phase gives it up.
        self.sibling_share = (
            platform.gil_sibling_share
            if platform.gil and processes > 1 and self.cores is not None
            else 0.0
        )
        if self.sibling_share > 0 and place is None:
            raise ValueError("a GIL waiter placed beside another process needs a random stream")
        self.core_process = [-1] * (platform.cores or 0)
        self.core_placed: dict[int, list[simpy.Event]] = {}
        # When each thread waiting for a GIL began its wait (the forced
        # switch's timer), while there is a switch interval.
        self.since: dict[simpy.Event, float] = {}
        self.active = [0] * processes
        self.busy_start: array[float] = array("d")
        self.busy_dur: array[float] = array("d")

    @property
    def free_running(self) -> bool:
        """True when a phase can never wait or pay a wake-up: no cores to queue
        for, no GIL, no wake cost. Then a phase is only a duration to record."""
        return self.cores is None and self.gils is None and self.wake == 0

    def charge(self, demand: float, switches: int) -> float:
        """A phase's duration on a free-running CPU, recorded as busy from now
        (``free_running`` must hold): what ``run`` would take, without the event."""
        duration = demand + switches * self.cs if switches else demand
        self.busy_start.append(self.env.now)
        self.busy_dur.append(duration)
        return duration

    def gil(self, process: int) -> Pool | None:
        return self.gils[process] if self.gils is not None else None

    def background(self, duration: float, who: int) -> Generator[simpy.Event, Any, None]:
        """A run of neighbour ``who`` (``CLIENT``, ``BACKEND``, ``PROBE``): its
        CPU on one of the machine's cores (not the server's)."""
        cores = self.cores
        if cores is None or duration <= 0:
            return
        if not self.neighbour_share:
            # No hand-off waits for a neighbour: its runs are only cores taken.
            core = cores.take()
            if core < 0:
                core = yield cores.wait()
            yield self.env.timeout(duration)
            cores.give(core)
            return
        # Each neighbour is one thread: its runs come one after another, and
        # it keeps its core from one to the next until it has nothing left
        # to run (its busy period), as a thread that never blocks keeps its
        # core under the kernel's run-to-parity scheduling.
        lane = self.lanes[who]
        if lane.take() < 0:
            yield lane.wait()
        core = self.lane_core[who]
        if core < 0:
            core = cores.take()
            if core < 0:
                core = yield cores.wait()
            self.lane_core[who] = core
            self.neighbours.append(who)
        yield self.env.timeout(duration)
        more = bool(lane.waiters)  # its next run keeps the core
        lane.give(0)
        if more:
            return
        self.lane_core[who] = -1
        self.neighbours.remove(who)
        placed = self.placed.pop(who, None)
        if placed:
            # The thread woken on this core runs on it as the neighbour blocks:
            # the core goes to it, not to the core's queue. Another woken on
            # the same core (another process's GIL) queues for a core.
            placed[0].succeed(core)
            for later in placed[1:]:
                later.succeed(-1)
        else:
            cores.give(core)

    # The DES's hot path: every CPU phase of every request passes here, so it
    # stays one function (no helper calls per event), branches and all.
    def run(  # noqa: PLR0912, PLR0915
        self,
        gil: Pool | None,
        demand: float,
        switches: int,
        process: int | None,
        lock: Pool | None = None,
        *,
        loop: bool = False,
    ) -> Generator[simpy.Event, Any, tuple[float, float]]:
        """Run one phase of ``process`` (None: a process of its own, such as a
        forked child, that sleeps between requests); returns the CPU time it
        took, overheads included, and when it started running.

        ``lock`` is a single thread the phase must have first (an event loop,
        an accepting thread); waiting for it keeps the process awake.
        ``loop``: the phase runs on an event loop. The loop takes every event
        ready when it wakes and runs them before it sleeps again, so only the
        phase that wakes it pays its wake-up (``loop_wake_us``): the others
        share it (batching).
        """
        if process is None:
            woke = self.wake > 0
        else:
            woke = self.active[process] == 0
            self.active[process] += 1
        if lock is not None and lock.take() < 0:
            yield lock.wait()
        core = -1
        if gil is not None and gil.take() < 0:
            if self.interval:
                ev = gil.wait()
                self.since[ev] = self.env.now
                yield ev
                del self.since[ev]
            else:
                yield gil.wait()
            if self.handoff:
                yield self.env.timeout(self.handoff)
            if self.neighbours and self.neighbour_share:
                core = yield from self._beside_neighbour()
            if core < 0 and self.sibling_share and process is not None:
                core = yield from self._beside_sibling(process)
        cores = self.cores
        if cores is not None and core < 0:
            core = cores.take()
            if core < 0:
                core = yield cores.wait()
        if self.sibling_share:
            self.core_process[core] = process if gil is not None and process is not None else -1
        duration = demand
        if self.crowding and cores is not None and cores.waiters:
            # The threads queued behind it share the cores with it in the
            # kernel's slices: its CPU runs slower (``Platform.crowding``).
            duration *= 1.0 + self.crowding * len(cores.waiters)
        if switches:
            runnable = (len(gil.waiters) if gil is not None else 0) + (
                len(cores.waiters) if cores is not None else 0
            )
            duration += switches * self.cs * (1.0 + self.contention * runnable)
        if woke:
            duration += self.wake + self.loop_wake if loop else self.wake
        env = self.env
        started = env.now
        if gil is not None and gil.waiters and (self.poll or self.gil_wake):
            waiters = len(gil.waiters)
            share = self.gil_wake * waiters
            if share and cores is not None and not cores.free:
                # No core is free for the waiters' wake-ups: they run on the
                # cores the holder needs, which the kernel shares among them
                # (the holder preempted while it holds the GIL): its phase
                # takes their CPU too.
                duration *= 1.0 + (self.poll + self.gil_wake) * waiters
            else:
                duration *= 1.0 + self.poll * waiters
                if share:
                    # A free core (or unlimited ones) runs them beside the
                    # holder: the server's CPU, in slices too short to keep
                    # a core from anyone.
                    self.busy_start.append(started)
                    self.busy_dur.append(duration * share)
        if self.interval and gil is not None and duration > self.interval:
            core = yield from self._sliced(gil, duration, core, process)
        else:
            self.busy_start.append(started)
            self.busy_dur.append(duration)
            if duration > 0:
                yield env.timeout(duration)
        if cores is not None:
            if self.sibling_share:
                self._give_core(core)
            else:
                cores.give(core)
        if gil is not None:
            gil.give(0)
        if lock is not None:
            lock.give(0)
        if process is not None:
            self.active[process] -= 1
        return duration, started

    def _beside_neighbour(self) -> Generator[simpy.Event, Any, int]:
        """A GIL just handed to a waiter while neighbours run: with probability
        ``gil_neighbour_share`` its thread was woken on one of their cores
        (drawn uniformly), waits holding the GIL until that neighbour blocks
        (the end of its busy period), and runs on that core; returns the core
        (-1: none yet, take one as usual)."""
        place = self.place
        assert place is not None
        if place.random() >= self.neighbour_share:
            return -1
        who = self.neighbours[int(place.integers(len(self.neighbours)))]
        woken = self.env.event()
        self.placed.setdefault(who, []).append(woken)
        core: int = yield woken
        return core

    def _beside_sibling(self, process: int) -> Generator[simpy.Event, Any, int]:
        """A GIL just handed to a waiter of ``process`` while another process
        of the server runs its GIL's holder on a core: with probability
        ``gil_sibling_share`` the kernel woke the waiter on that core (drawn
        uniformly among such cores), where it waits, holding its GIL, until
        that holder gives the core up, and runs there; returns the core (-1:
        none yet, take one as usual)."""
        held = [k for k, p in enumerate(self.core_process) if p >= 0 and p != process]
        if not held:
            return -1
        place = self.place
        assert place is not None
        if place.random() >= self.sibling_share:
            return -1
        # A uniform scaled, not ``integers``: the compiled loop reads the same
        # uniforms drawn ahead (``simlab.fast_events``), and this arithmetic.
        k = held[min(int(place.random() * len(held)), len(held) - 1)] if len(held) > 1 else held[0]
        woken = self.env.event()
        self.core_placed.setdefault(k, []).append(woken)
        core: int = yield woken
        return core

    def _give_core(self, core: int) -> None:
        """Give up ``core``: to the first waiter the kernel woke on it
        (``gil_sibling_share``), if any (the others queue for a core), else
        to the cores' queue."""
        self.core_process[core] = -1
        placed = self.core_placed.pop(core, None)
        if placed:
            placed[0].succeed(core)
            for later in placed[1:]:
                later.succeed(-1)
            return
        assert self.cores is not None
        self.cores.give(core)

    def _drop_at(self, gil: Pool, acquired: float) -> float:
        """When CPython asks the holder that took ``gil`` at ``acquired`` to
        drop it: the earliest end of a waiter's timed wait that began at or
        after ``acquired`` (one that spans the take ends, sees the switch,
        and waits a whole interval again)."""
        interval, since = self.interval, self.since
        drop = math.inf
        for ev in gil.waiters:
            began = since[ev]
            if began < acquired:
                began += interval * (math.floor((acquired - began) / interval) + 1)
            drop = min(drop, began + interval)
        return drop

    def _sliced(
        self, gil: Pool, duration: float, core: int, process: int | None = None
    ) -> Generator[simpy.Event, Any, int]:
        """Run ``duration`` of CPU holding ``gil``, giving the GIL (and the
        core) up whenever a waiter's timed wait asks for it (``_drop_at``) and
        queueing again; returns the core held at the end. The holder looks at
        least once an interval, so that a newcomer's timer is never missed."""
        env, cores = self.env, self.cores
        left = duration
        acquired = env.now
        while True:
            step = min(left, self.interval)
            if gil.waiters:
                step = min(step, self._drop_at(gil, acquired) - env.now)
            self.busy_start.append(env.now)
            self.busy_dur.append(step)
            yield env.timeout(step)
            left -= step
            if left <= 0:
                return core
            if gil.waiters and self._drop_at(gil, acquired) - env.now <= DROP_SLACK:
                if cores is not None:
                    self._give_core(core)
                gil.give(0)
                ev = gil.wait()
                self.since[ev] = env.now
                yield ev
                del self.since[ev]
                if self.handoff:
                    yield env.timeout(self.handoff)
                core = -1
                if self.neighbours and self.neighbour_share:
                    core = yield from self._beside_neighbour()
                if core < 0 and self.sibling_share and process is not None:
                    core = yield from self._beside_sibling(process)
                if cores is not None and core < 0:
                    core = cores.take()
                    if core < 0:
                        core = yield cores.wait()
                if self.sibling_share and process is not None:
                    self.core_process[core] = process
                acquired = env.now
