"""The shared base of every server model: arrivals, clients, the run loop and recording.

A model adds only its own process logic (``session``) and its own maths
(``offered_load``, ``analytic``). The base gives it:

- arrivals: open Poisson, closed with think time, or a replayed trace;
- clients: each connection is one HTTP/1.1 client with one request
  outstanding at a time, so requests queue per connection (``next_on_slot``);
- per-request columns, preallocated and filled by index (no object per request);
- interval records for the levels that change at run time (short-lived
  connections, threads spawned per connection, forked children).

Idle connections cost no events: only a connection with a request in flight
has any state (an entry in ``active``), and persistent connections count
toward memory and threads as a constant.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import simpy

from simlab.models.pool import Cpu, Pool
from simlab.params import Architecture, Platform, Workload

__all__ = ["COMPLETED", "DROPPED", "PENDING", "Analytic", "Model", "Record", "draw_io"]

COMPLETED, DROPPED, PENDING = 0, 1, 2
_BATCH = 8192
_NAN = float("nan")


@dataclass(frozen=True)
class Analytic:
    """A textbook reference for one configuration.

    ``queue`` names the queue it reduces to, ``exact`` says whether the
    formula is exact there (otherwise an approximation, named in ``note``),
    and ``values`` maps summary keys (``latency_mean_ms``, ...) to numbers.
    """

    queue: str
    exact: bool
    values: dict[str, float]
    note: str = ""


@dataclass
class Record:
    """Everything one replication produced, as numpy arrays (times in seconds)."""

    model: str
    replication: int
    seed: int
    window: tuple[float, float]
    horizon: float
    columns: dict[str, np.ndarray]
    intervals: dict[str, tuple[np.ndarray, np.ndarray]]
    base: dict[str, int]
    busy_on_cpu: bool
    overloaded: bool
    truncated: bool
    extra: dict[str, Any] = field(default_factory=dict)


class Model:
    """Base of the six server models. Subclasses define ``session``."""

    name: ClassVar[str]
    # Threads busy with a request are those in [start, end); for ``async`` only
    # the loop's CPU phase [start, start + cpu) occupies a thread.
    busy_on_cpu: ClassVar[bool] = False
    # A forked child per connection (process-per-connection): its memory grows
    # once it serves a request (copy-on-write of the pages it touches).
    own_process: ClassVar[bool] = False
    max_requests: ClassVar[int] = 2_000_000
    max_in_system: ClassVar[int] = 250_000

    def __init__(
        self,
        env: simpy.Environment,
        workload: Workload,
        platform: Platform,
        architecture: Architecture,
        *,
        seed: np.random.SeedSequence,
        stop: float,
    ) -> None:
        self.env = env
        self.workload = workload
        self.platform = platform
        self.arch = architecture
        self.stop = stop  # no request is sent at or after this time
        # Children by index: adding a stream later leaves the first ones unchanged.
        streams = [np.random.default_rng(s) for s in seed.spawn(6)]
        self._rng_arrival, self._rng_conn, self._rng_cpu, self._rng_io, self._rng_think = streams[
            :5
        ]
        self._rng_slack = streams[5]
        # Salt for dealing connections to processes: a fresh deal per replication.
        self.salt = int(seed.generate_state(1, np.uint64)[0])
        self.cpu = Cpu(env, platform, architecture.processes)
        self._call_latency = platform.call_latency()
        self._call_cpu = platform.call_us * 1e-6

        self.n = 0
        self._capacity = 0
        self.arrival: array[float] = array("d")
        self.admit: array[float] = array("d")
        self.start: array[float] = array("d")
        self.end: array[float] = array("d")
        self.service: array[float] = array("d")
        self.cpu_time: array[float] = array("d")
        self.connection: array[int] = array("q")
        self.worker: array[int] = array("q")
        self.process: array[int] = array("q")
        self.outcome: array[int] = array("b")
        self._grow()

        # Per-request random demand, drawn in batches by request index so that
        # request k gets the same demand whatever the architecture (common
        # random numbers across configurations).
        self.demand: list[float] = []  # CPU seconds the request itself asks for
        self.io_time: list[float] = []  # seconds spent in backend calls
        self._think: list[float] = []

        # Connection -> requests queued behind the one in flight (None: none yet).
        # A connection is in ``active`` exactly while it has state worth keeping.
        self.active: dict[int, deque[int] | None] = {}
        # Connections whose owning thread sits blocked in recv for the next request.
        self.idle: dict[int, simpy.Event] = {}
        self.in_system = 0
        self.overloaded = False
        self.truncated = False
        self.intervals: dict[str, tuple[array[float], array[float]]] = {
            k: (array("d"), array("d")) for k in ("connections", "threads", "forks")
        }
        # Short-lived connections on a loop: connection -> [interval handle, requests answered].
        self._open: dict[int, list[int]] = {}

    # ----------------------------------------------------------------- hooks

    def session(self, i: int, conn: int) -> Generator[simpy.Event, Any, None]:
        """Serve connection ``conn`` starting with request ``i`` until it has nothing queued."""
        raise NotImplementedError

    def admit_slot(self, i: int, conn: int) -> bool:
        """Called when an idle connection gets a request; False if it needs no session."""
        return True

    def base_levels(self) -> dict[str, int]:
        """Constant parts of the levels: threads, forks, connections."""
        raise NotImplementedError

    def preforked(
        self, threads_per_process: int, connections: int, forks: int = 0
    ) -> dict[str, int]:
        """Levels of ``processes`` copies of a server.

        One process serves alone; with P > 1 a master forks P copies and only
        waits for them, so it adds one thread, and each copy is a fork.
        """
        p = self.arch.processes
        copies = p if p > 1 else 0
        return {
            "threads": p * threads_per_process + (1 if p > 1 else 0),
            "forks": copies + forks,
            "copies": copies,
            "connections": connections,
        }

    @classmethod
    def check_request_cap(cls, workload: Workload, stop: float) -> None:
        """Refuse a run that would send more requests per replication than the cap."""
        if workload.rate is not None and workload.rate * stop > cls.max_requests:
            raise ValueError(
                f"rate(={workload.rate:g}/s) x (warmup + duration)(={stop:g} s) would send "
                f"{workload.rate * stop:,.0f} requests per replication, over the limit of "
                f"{cls.max_requests:,}: shorten duration"
            )

    @classmethod
    def offered_load(
        cls, workload: Workload, platform: Platform, arch: Architecture
    ) -> dict[str, float]:
        """Utilisation of each resource implied by the offered load (open arrivals)."""
        raise NotImplementedError

    @classmethod
    def analytic(cls, workload: Workload, platform: Platform, arch: Architecture) -> Analytic | str:
        """The textbook queue this configuration reduces to, or why there is none."""
        raise NotImplementedError

    @classmethod
    def explain_overload(
        cls, resource: str, rho: float, workload: Workload, arch: Architecture
    ) -> str:
        """Why a resource with rho >= 1 makes the configuration unstable, in words."""
        return f"{resource} rho = {rho:.3g} >= 1"

    # --------------------------------------------------------------- clients

    def start_arrivals(self) -> None:
        w = self.workload
        if w.kind == "open":
            self.env.process(self._open_arrivals())
        elif w.kind == "trace":
            self.env.process(self._trace_arrivals())
        else:
            assert w.think is not None
            first = w.think.sample(self._rng_think, w.connections).tolist()
            for conn, delay in enumerate(first):
                self._after(delay, conn)

    def _open_arrivals(self) -> Generator[simpy.Event, Any, None]:
        w = self.workload
        assert w.rate is not None
        env, stop, timeout = self.env, self.stop, self.env.timeout
        mean_gap = 1.0 / w.rate
        while True:
            gaps = self._rng_arrival.exponential(mean_gap, _BATCH).tolist()
            conns = self._rng_conn.integers(0, w.connections, _BATCH).tolist()
            for gap, conn in zip(gaps, conns, strict=True):
                yield timeout(gap)
                if env.now >= stop or self.overloaded:
                    return
                self.send(conn)

    def _trace_arrivals(self) -> Generator[simpy.Event, Any, None]:
        trace = self.workload.trace
        assert trace is not None
        env = self.env
        for t, conn in zip(trace.times, trace.connections, strict=True):
            if t >= self.stop or self.overloaded:
                return
            if t > env.now:
                yield env.timeout(t - env.now)
            self.send(conn)

    def _after(self, delay: float, conn: int) -> None:
        """Closed loop: the client on ``conn`` sends again after ``delay`` of thinking."""
        ev = self.env.timeout(delay)
        ev.callbacks.append(lambda _ev: self._closed_send(conn))

    def _closed_send(self, conn: int) -> None:
        if self.env.now < self.stop and not self.overloaded:
            self.send(conn)

    # -------------------------------------------------------------- requests

    def send(self, conn: int) -> None:
        """A client sends a request on connection ``conn`` now."""
        i = self.n
        if i >= self.max_requests:
            self.truncated = True
            self.overloaded = True
            return
        if i >= self._capacity:
            self._grow()
        if i >= len(self.demand):
            self._draw()
        self.n = i + 1
        self.arrival[i] = self.env.now
        self.connection[i] = conn
        self.outcome[i] = PENDING
        self.in_system += 1
        if self.in_system > self.max_in_system:
            # The queue is running away: stop offering load rather than let
            # the run eat the machine's memory; the verdict will be unstable.
            self.overloaded = True
        active = self.active
        if conn not in active:
            if self.admit_slot(i, conn):
                active[conn] = None
                self.env.process(self.session(i, conn))
            return
        waiter = self.idle.pop(conn, None)
        if waiter is not None:
            waiter.succeed(i)
            return
        q = active[conn]
        if q is None:
            active[conn] = deque((i,))
        else:
            q.append(i)

    def next_on_slot(self, conn: int) -> int | None:
        """The next request queued on ``conn``, or None (the connection stays active)."""
        q = self.active[conn]
        return q.popleft() if q else None

    def finish(self, i: int, service: float) -> None:
        self.end[i] = self.env.now
        self.service[i] = service
        self.outcome[i] = COMPLETED
        self._done(i)

    def drop(self, i: int) -> None:
        self.end[i] = self.env.now
        self.outcome[i] = DROPPED
        self._done(i)

    def _done(self, i: int) -> None:
        self.in_system -= 1
        if self.workload.think is not None:
            self._after(self._think[i], self.connection[i])

    def _grow(self) -> None:
        extra = max(_BATCH, self._capacity)
        nan_block = array("d", [_NAN]) * extra
        for col in (self.arrival, self.admit, self.start, self.end, self.service, self.cpu_time):
            col.extend(nan_block)
        minus = array("q", [-1]) * extra
        for icol in (self.connection, self.worker, self.process):
            icol.extend(minus)
        self.outcome.extend(array("b", [PENDING]) * extra)
        self._capacity += extra

    def _draw(self) -> None:
        w = self.workload
        self.demand.extend(w.cpu.sample(self._rng_cpu, _BATCH).tolist())
        self.io_time.extend(draw_io(w, self._call_latency, self._rng_io, self._rng_slack).tolist())
        if w.think is not None:
            self._think.extend(w.think.sample(self._rng_think, _BATCH).tolist())

    def connect(self, conn: int) -> None:
        """A loop-based model reads a request on ``conn``: open the connection if it is closed.

        With persistent connections there is nothing to do; with k requests
        per connection, the client connects before its first request and the
        connection stays open, idle on the loop (memory only), between them.
        """
        if self.workload.requests_per_connection is not None and conn not in self._open:
            self._open[conn] = [self.open_interval("connections"), 0]

    def answered(self, conn: int) -> None:
        """Count a request answered on ``conn``; the k-th closes the connection."""
        k = self.workload.requests_per_connection
        if k is not None:
            state = self._open[conn]
            state[1] += 1
            if state[1] == k:
                self.close_interval("connections", state[0])
                del self._open[conn]

    def on_thread(
        self, i: int, gil: Pool | None, demand: float, *, paid: bool, process: int | None
    ) -> Generator[simpy.Event, Any, float]:
        """A request's CPU and backend calls on a thread; returns its CPU time.

        ``demand`` is the request's own CPU plus what this thread pays for it
        (``_fixed``). Without a shared GIL the per-call costs are charged in one
        phase before the calls, which uses the same CPU and costs fewer events.
        Under a GIL each answer from the backend wakes the thread, which must
        win the GIL back (behind whoever holds it) before it can read the
        answer: the GIL hand-offs that stretch threaded Python servers' latency
        under CPU load. Then every call gets its own short phase.
        """
        w = self.workload
        calls = w.calls
        io = self.io_time[i]
        split = gil is not None and calls > 0
        cpu = 0.0
        if not split and self.cpu.free_running:
            # Nothing to wait for: the CPU phase and the backend wait are one
            # stretch of time, so one event serves both (the same times as two).
            if demand > 0 or paid:
                cpu = self.cpu.charge(demand, 1 + calls)
            if cpu + io > 0:
                yield self.env.timeout(cpu + io)
            return cpu
        first = demand - calls * self._call_cpu if split else demand
        if first > 0 or paid or self.cpu.wake > 0:
            cpu += (yield from self.cpu.run(gil, first, 1 if split else 1 + calls, process))[0]
        if not split:
            if io > 0:
                yield self.env.timeout(io)
            return cpu
        rounds = calls if w.fanout == "sequential" else 1
        per_round = io / rounds
        cost = self._call_cpu * calls / rounds
        for _ in range(rounds):
            yield self.env.timeout(per_round)
            cpu += (yield from self.cpu.run(gil, cost, 1, process))[0]
        return cpu

    def open_interval(self, kind: str) -> int:
        """Record the start of a connection, thread or fork; returns its handle."""
        starts, ends = self.intervals[kind]
        starts.append(self.env.now)
        ends.append(math.inf)
        return len(starts) - 1

    def close_interval(self, kind: str, handle: int) -> None:
        self.intervals[kind][1][handle] = self.env.now

    # ---------------------------------------------------------------- output

    def record(self, *, replication: int, seed: int, window: tuple[float, float]) -> Record:
        n = self.n

        def col(a: array[Any], dtype: type) -> np.ndarray:
            return np.frombuffer(a, dtype=dtype, count=n).copy()

        columns = {
            name: col(getattr(self, name), np.float64)
            for name in ("arrival", "admit", "start", "end", "service", "cpu_time")
        }
        for name in ("connection", "worker", "process"):
            columns[name] = col(getattr(self, name), np.int64)
        columns["outcome"] = col(self.outcome, np.int8)
        intervals = {
            k: (
                np.frombuffer(s, dtype=np.float64).copy(),
                np.frombuffer(e, dtype=np.float64).copy(),
            )
            for k, (s, e) in self.intervals.items()
        }
        starts = np.frombuffer(self.cpu.busy_start, dtype=np.float64).copy()
        intervals["cpu"] = (starts, starts + np.frombuffer(self.cpu.busy_dur, dtype=np.float64))
        return Record(
            model=self.name,
            replication=replication,
            seed=seed,
            window=window,
            horizon=self.env.now,
            columns=columns,
            intervals=intervals,
            base=self.base_levels(),
            busy_on_cpu=self.busy_on_cpu,
            overloaded=self.overloaded,
            truncated=self.truncated,
            extra={
                "calls": self.workload.calls,
                "own_process": self.own_process,
                "worker_is_thread_handle": self.worker_is_thread_handle(),
            },
        )

    def worker_is_thread_handle(self) -> bool:
        """True when the ``worker`` column indexes the ``threads`` intervals (a
        thread created for one connection), so a worker's life ends with it."""
        return False


_MASK = (1 << 64) - 1


def draw_io(
    workload: Workload,
    call_latency: Any,
    rng_io: np.random.Generator,
    rng_slack: np.random.Generator,
) -> np.ndarray:
    """One batch (``_BATCH`` requests) of time spent in backend calls.

    Every call also takes the platform's ``call_latency`` on top of its delay;
    calls add up one after another, or the slowest sets the time in parallel.
    The DES and the fast engine both draw through here, so they see the same
    numbers from the same streams.
    """
    w = workload
    if w.calls == 0:
        return np.zeros(_BATCH)
    calls = w.io.sample(rng_io, (_BATCH, w.calls))
    if call_latency.mean > 0:
        calls = calls + call_latency.sample(rng_slack, (_BATCH, w.calls))
    out: np.ndarray = calls.sum(axis=1) if w.fanout == "sequential" else calls.max(axis=1)
    return out


def process_of(conn: int, processes: int, salt: int = 0) -> int:
    """The process a connection lands on, when there are several.

    The kernel spreads connections over pre-forked accepters (and hashes
    them over SO_REUSEPORT sockets) unevenly, so round-robin would flatter
    the design: a splitmix64 hash of the connection id, salted per
    replication, stands in for it: deterministic for a seed, and across
    replications as uneven as chance.
    """
    if processes == 1:
        return 0
    z = ((conn ^ salt) + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return (z ^ (z >> 31)) % processes


def thread_cpu_overhead(
    workload: Workload, platform: Platform, *, parse: bool
) -> tuple[float, int]:
    """Fixed CPU seconds a threaded request pays on its own thread, and its wake-ups.

    The thread wakes once for the request and once per backend call; each
    call costs ``call_us``. Where the calls' CPU is spent (before the calls,
    or after each answer under a GIL) is ``Model.on_thread``'s business.
    """
    fixed = (platform.parse_us if parse else 0.0) + workload.calls * platform.call_us
    return fixed * 1e-6, 1 + workload.calls


def client_load(workload: Workload, service: float) -> float:
    """Utilisation of one client's connection: it sends rate/N requests/s,
    each holding the connection for at least ``service`` seconds."""
    assert workload.rate is not None
    return workload.rate / workload.connections * service
