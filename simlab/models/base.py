"""The shared base of every server model: arrivals, clients, the run loop and recording,
and the class-level knowledge every caller asks a model for.

A model adds only its own process logic (``session``) and its own maths. For
itself, each model class says:

- ``request_cost``: what a request costs on a platform besides its own CPU,
  and on which thread (a loop's phase, the worker's thread, switches);
- ``units``: the threads, processes, connections and sockets it holds, which
  ``simlab.footprint`` turns into memory;
- ``offered_load`` and ``explain_overload``: how loaded each of its
  resources is, and why an overloaded one makes it unstable;
- ``bottleneck`` (through ``queue_of``): the resource slowest to reach
  steady state, as a queue, whose relaxation time sizes warm-ups and runs;
- ``analytic``: the textbook queue it reduces to, or why there is none;
- ``latency_draws``: its latency composed from its queues (the planner);
- ``fast_reason`` and ``fast_mode``: whether the fast engine reproduces it;
- ``sized``: the smallest architecture that holds the workload's connections.

The DES side gives it:

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

import enum
import math
from array import array
from collections import deque
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from heapq import heappush
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import simpy
from simpy.events import NORMAL, Initialize, Timeout

from simlab import theory
from simlab.distributions import Distribution
from simlab.errors import UserError
from simlab.footprint import Units
from simlab.models.pool import BACKEND, CLIENT, PROBE, Cpu, Pool
from simlab.overload.policy import fast_blocker, in_play
from simlab.params import Architecture, Platform, Workload
from simlab.streams import Deal, Dealer, RacingDealer, Streams

if TYPE_CHECKING:
    from simlab.overload.des import Dynamics

__all__ = [
    "BATCH",
    "COMPLETED",
    "DROPPED",
    "PENDING",
    "Analytic",
    "Bottleneck",
    "Due",
    "FastMode",
    "Model",
    "Record",
    "RequestCost",
    "Step",
    "draw_io",
]

COMPLETED, DROPPED, PENDING = 0, 1, 2
# Random numbers are drawn this many requests at a time, by request index, in
# the DES and the fast engine alike: the batch is part of the stream layout.
BATCH = 8192
_NAN = float("nan")
US = 1e-6
# The lab's probe waits this long after each sample (``simlab.real.probe``).
PROBE_INTERVAL = 0.1
# The CPU a runnable thread gets before the kernel may switch to another
# (EEVDF's base slice, 0.75 ms x (1 + log2 2 cores)).
PROBE_SLICE = 1.5e-3
# The order in which per-request costs are summed: part of the result in floating point.
COST_TERMS = ("parse_us", "task_us", "dispatch_us", "call_us")


class FastMode(enum.IntEnum):
    """How the fast engine's kernel runs a model (``fast_kernel.recurse``)."""

    POOL_OWNS_CONNECTION = 0  # thread-pool, one request per connection: M/G/W over connections
    LOOP_THEN_POOL = 1  # reactor-pool: the loop's phase, then M/G/W over requests
    THREAD_PER_CONNECTION = 2  # a thread per persistent connection: M/G/inf
    LOOP = 3  # async: M/G/1 over CPU per loop, then a pure delay
    TWO_TIER = 4  # two-tier: a front loop's phase, a hop, the back pool, back, the front again


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


@dataclass(frozen=True)
class Bottleneck:
    """One resource seen as a queue: ``servers`` servers at utilisation ``rho``,
    each request holding one for ``service_s`` seconds on average (squared cv
    ``scv``), fed by Poisson arrivals."""

    resource: str
    rho: float
    servers: int
    service_s: float
    scv: float

    @property
    def relaxation_s(self) -> float:
        """How long this queue takes to forget its start (``theory.relaxation_time``)."""
        return theory.relaxation_time(self.rho, self.service_s, self.servers, scv=self.scv)


@dataclass(frozen=True)
class RequestCost:
    """What one request costs a server besides its own CPU demand, and on which thread.

    Each cost is a count of a platform cost field (``parse_us``, ``call_us``...),
    so calibration reads its design matrix from the same place the models
    charge from:

    - ``loop``: paid on a single thread every request passes first (a
      reactor's loop parsing and handing off); async has no such step: its
      loop *is* the request's thread;
    - ``thread``: paid on the thread that runs the request;
    - ``switches``: thread wake-ups on that thread, each ``context_switch_us``;
    - ``phases``: CPU phases a request runs (each may find its process
      asleep and pay ``wake_us``); ``always_wakes`` when every phase does
      (a forked child sleeps between requests). ``call_phases`` of them
      read the calls' answers, which a thread runs as phases of their own
      only under a GIL (``on_thread``'s split): without one, its CPU and
      its backend wait are one stretch, and it wakes once;
    - ``accept``: paid by the accepting thread once per connection (spawning
      a thread or forking a process for it);
    - ``on_loop``: the ``thread`` part runs on an event loop (async's loop is
      its request's thread), so that, like ``loop``, it parses at the
      platform's ``loop_parse_us``.
    """

    loop: Mapping[str, float]
    thread: Mapping[str, float]
    switches: int
    phases: int
    accept: Mapping[str, float] = field(default_factory=dict)
    always_wakes: bool = False
    on_loop: bool = False
    call_phases: int = 0

    @staticmethod
    def _seconds(terms: Mapping[str, float], platform: Platform, *, loop: bool) -> float:
        total = 0.0
        for name in COST_TERMS:
            if name in terms:
                n = terms[name]
                each = (
                    platform.loop_parse_us
                    if loop and name == "parse_us"
                    else float(getattr(platform, name))
                )
                total += each if n == 1 else n * each
        return total * US

    def loop_s(self, platform: Platform) -> float:
        return self._seconds(self.loop, platform, loop=True)

    def thread_s(self, platform: Platform) -> float:
        return self._seconds(self.thread, platform, loop=self.on_loop)

    def switch_s(self, platform: Platform) -> float:
        return self.switches * platform.context_switch_us * US

    def accept_s(self, platform: Platform) -> float:
        return sum(float(getattr(platform, k)) * n for k, n in self.accept.items()) * US

    def terms(self, busy: float, *, gil: bool = True) -> dict[str, float]:
        """Counts of each CPU cost per request, at ``busy`` cores of load: the row of
        calibration's design matrix. A phase finds its process idle, and pays
        ``wake_us``, with probability about 1 - busy (Poisson arrivals see time
        averages), capped so that a saturated run still separates the cost.
        Without a ``gil`` the calls' phases are not phases of their own."""
        row = dict.fromkeys(("parse_us", "task_us", "dispatch_us", "call_us"), 0.0)
        for part in (self.loop, self.thread):
            for k, n in part.items():
                row[k] += n
        row["context_switch_us"] = float(self.switches)
        idle = 1.0 - min(max(busy, 0.0), MAX_BUSY_SEEN)
        phases = self.phases if gil else self.phases - self.call_phases
        row["wake_us"] = phases * (1.0 if self.always_wakes else idle)
        return row


# Calibration never treats a process as busier than this when it prices the
# chance of a wake-up: a run at 100% would otherwise carry no information on it.
MAX_BUSY_SEEN = 0.95


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
    calls: int
    own_process: bool
    # The ``worker`` column indexes the ``threads`` intervals (a thread made for
    # one connection), so a worker's life ends with its thread.
    worker_is_thread_handle: bool
    salt: int
    engine: str = "des"
    # Counts of the overload options' own events (hedged calls, throttled
    # retries); None when none is set (``simlab.overload``).
    overload: dict[str, float] | None = None
    # KiB a slow client's request and answer hold in socket buffers while they trickle.
    buffers_kib: tuple[float, float] = (0.0, 0.0)
    # The requests answered, in the order their ends were written, so with
    # their ends in order (the fast engine's event loop writes it): the
    # summary then reads the ends in time order without sorting them. None:
    # not recorded (the ends are sorted).
    end_order: np.ndarray | None = None


class Due(Timeout):
    """SimPy's ``Timeout`` of ``delay`` with its one callback from the start.

    The DES's commonest events (each open arrival, each quick session's
    service) are made in one call: ``Timeout.__init__``'s assignments and its
    ``Environment.schedule`` inlined, the callback list made with the callback
    in it rather than appended to. It is a ``Timeout`` on the same queue, with
    the same time, priority and id order, so every event keeps its place.
    Only for delays >= 0 (``Timeout`` checks; these never are negative).
    """

    def __init__(self, env: simpy.Environment, delay: float, callback: Any) -> None:
        self.env = env
        self.callbacks = [callback]
        self._value = None
        self._delay = delay
        self._ok = True
        heappush(env._queue, (env._now + delay, NORMAL, next(env._eid), self))


class Step:
    """What ``simpy.events.Initialize`` calls back in place of a process: a step
    of a process written as callbacks (its ``_resume``)."""

    __slots__ = ("_resume",)

    def __init__(self, step: Any) -> None:
        self._resume = step


class OpenArrivals:
    """``Model._open_arrivals``' state: the batch of gaps and connections it reads."""

    __slots__ = ("at", "conns", "env", "gaps", "mean_gap", "model", "n_conns", "stop")

    def __init__(self, model: Model) -> None:
        w = model.workload
        assert w.rate is not None
        self.model = model
        self.env = model.env
        self.stop = model.stop
        self.mean_gap = 1.0 / w.rate
        self.n_conns = w.connections
        self.gaps: list[float] = []
        self.conns: list[int] = []
        self.at = 0
        # Started as ``env.process`` starts a process: an urgent event now.
        Initialize(self.env, Step(self._first))  # type: ignore[arg-type]

    def _draw(self) -> None:
        streams = self.model.streams
        self.gaps = streams.arrival.exponential(self.mean_gap, BATCH).tolist()
        self.conns = streams.connection.integers(0, self.n_conns, BATCH).tolist()
        self.at = 0

    def _first(self, _event: simpy.Event) -> None:
        self._draw()
        Due(self.env, self.gaps[0], self._arrive)

    def _arrive(self, _event: simpy.Event) -> None:
        model = self.model
        if self.env.now >= self.stop or model.overloaded:
            return
        conn = self.conns[self.at]
        self.at += 1
        if self.at == BATCH:
            self._draw()
        # The next arrival's timeout is created before the send, where the
        # process created it after: the send schedules nothing but urgent
        # starts at this instant, which no timeout to come can tie with, so
        # every event keeps its place. What the started session then
        # schedules comes after this timeout, as it did; so a model may run
        # a session's first step inside the send (``arriving``) instead of
        # scheduling its start.
        Due(self.env, self.gaps[self.at], self._arrive)
        model.arriving = True
        model.send(conn)
        model.arriving = False


class Model:
    """Base of the server models. Subclasses define ``session`` and their own maths."""

    name: ClassVar[str]
    # Threads busy with a request are those in [start, end); for ``async`` only
    # the loop's CPU phase [start, start + cpu) occupies a thread.
    busy_on_cpu: ClassVar[bool] = False
    # A forked child per connection (process-per-connection): its memory grows
    # once it serves a request (copy-on-write of the pages it touches).
    own_process: ClassVar[bool] = False
    # A thread (or child) owns a connection while it is open, idle or not, so
    # each served connection's thread opens its own backend connection.
    holds_connection: ClassVar[bool] = False
    # The pool size (``workers``) is a knob of this model.
    pooled: ClassVar[bool] = False
    fast_mode: ClassVar[FastMode | None] = None
    # Several event loops per process (``Architecture.loops``) are a knob of this model.
    multi_loop: ClassVar[bool] = False
    # Where a new connection's first request is read (``Architecture.first_read``)
    # is a knob of this model.
    first_read_knob: ClassVar[bool] = False
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
        if architecture.loops != 1 and not self.multi_loop:
            raise UserError(f"loops(={architecture.loops}): {self.name} has no event loops to add")
        if architecture.first_read != "loop" and not self.first_read_knob:
            raise UserError(
                f"first_read(={architecture.first_read!r}): {self.name} has no loop to read on"
            )
        self.env = env
        self.workload = workload
        self.platform = platform
        self.arch = architecture
        self.stop = stop  # no request is sent at or after this time
        # True while an open arrival sends (``OpenArrivals``): a session started
        # then may run its first step at once, with nothing to come between.
        self.arriving = False
        self.streams = Streams.of(seed)
        self.salt = self.streams.salt
        self.process_of: Dealer | RacingDealer = (
            RacingDealer(
                architecture.processes,
                self.salt,
                architecture.accept_shares,
                architecture.accept_map,
            )
            if architecture.accept == "race"
            else Dealer(architecture.processes, self.salt)
        )
        self.cpu = Cpu(env, platform, architecture.processes, self.streams.gil, self.streams.place)
        self._call_latency = platform.call_latency()
        self._call_cpu = platform.call_us * US
        self._lab_client, self._lab_backend, self._probe = _neighbours(workload, platform)

        self.n = 0
        self._capacity = 0
        self.arrival: array[float] = array("d")
        self.admit: array[float] = array("d")
        self.start: array[float] = array("d")
        self.end: array[float] = array("d")
        self.service: array[float] = array("d")
        self.cpu_time: array[float] = array("d")
        # When a loop model's worker let the request go, if before its end (a
        # slow client still reading the answer); NaN: at its end.
        self.let_go: array[float] = array("d")
        self.connection: array[int] = array("q")
        self.worker: array[int] = array("q")
        self.process: array[int] = array("q")
        self.outcome: array[int] = array("b")
        self.ov: Dynamics | None = None
        self._grow()

        # Per-request random demand, drawn in batches by request index so that
        # request k gets the same demand whatever the architecture (common
        # random numbers across configurations).
        self.demand: list[float] = []  # CPU seconds the request itself asks for
        self.io_time: list[float] = []  # seconds spent in backend calls
        self._think: list[float] = []
        # Slow clients: seconds to send each request and to read its answer.
        self.send_time: list[float] = []
        self.recv_time: list[float] = []
        self._slow = workload.slow_clients

        # Connection -> requests queued behind the one in flight (None: none yet).
        # A connection is in ``active`` exactly while it has state worth keeping.
        self.active: dict[int, deque[int] | None] = {}
        # Connections whose owning thread sits blocked in recv for the next request.
        self.idle: dict[int, simpy.Event] = {}
        self.in_system = 0
        self.overloaded = False
        self.truncated = False
        self.intervals: dict[str, tuple[array[float], array[float]]] = {
            k: (array("d"), array("d"))
            for k in ("connections", "threads", "forks", "send_buffers", "recv_buffers")
        }
        # Short-lived connections on a loop: connection -> [interval handle, requests answered].
        self._open: dict[int, list[int]] = {}
        if in_play(workload, architecture):
            # Overload dynamics live apart; without them nothing below changes.
            from simlab.overload.des import Dynamics  # noqa: PLC0415

            self.ov = Dynamics(self)

    # ------------------------------------------------------- what a model is

    @classmethod
    def request_cost(cls, workload: Workload) -> RequestCost:
        """What a request costs besides its own CPU demand, and on which thread."""
        raise NotImplementedError

    @classmethod
    def threads_per_process(cls, arch: Architecture) -> int:
        """Threads each server process runs before any connection arrives."""
        return 1

    @classmethod
    def units(cls, workload: Workload, arch: Architecture, in_flight: int) -> Units:
        """The units held at the expected peak with ``in_flight`` requests in flight."""
        raise NotImplementedError

    @classmethod
    def preforked(cls, arch: Architecture) -> tuple[int, int]:
        """(threads, copies) of ``processes`` copies of a server before any connection.

        One process serves alone; with P > 1 a master forks P copies and only
        waits for them, so it adds one thread, and each copy is a fork.
        """
        p = arch.processes
        copies = p if p > 1 else 0
        return p * cls.threads_per_process(arch) + (1 if p > 1 else 0), copies

    @classmethod
    def sized(cls, workload: Workload, arch: Architecture, deal: Deal) -> Architecture:
        """The architecture, grown where it must be to hold the workload's connections."""
        return arch

    @classmethod
    def serves_at_most(cls, workload: Workload, arch: Architecture) -> int | None:
        """The most persistent connections this model can serve with ``arch.processes``
        however it is sized, or None when memory is the only bound."""
        return None

    @classmethod
    def check_request_cap(cls, workload: Workload, stop: float) -> None:
        """Refuse a run that would send more requests per replication than the cap."""
        if workload.schedule is not None:
            expected = workload.schedule.expected(0.0, stop)
            if expected > cls.max_requests:
                raise UserError(
                    f"the rate schedule would send {expected:,.0f} requests in "
                    f"(warmup + duration)(={stop:g} s) per replication, over the limit of "
                    f"{cls.max_requests:,}: shorten duration"
                )
            return
        if workload.rate is not None and workload.rate * stop > cls.max_requests:
            raise UserError(
                f"rate(={workload.rate:g}/s) x (warmup + duration)(={stop:g} s) would send "
                f"{workload.rate * stop:,.0f} requests per replication, over the limit of "
                f"{cls.max_requests:,}: shorten duration"
            )

    @classmethod
    def offered_load(
        cls, workload: Workload, platform: Platform, arch: Architecture, deal: Deal
    ) -> dict[str, float]:
        """Utilisation of each resource implied by the offered load (open arrivals),
        for the busiest process of the replications ``deal`` describes."""
        raise NotImplementedError

    @classmethod
    def analytic(
        cls, workload: Workload, platform: Platform, arch: Architecture, deal: Deal
    ) -> Analytic | str:
        """The textbook queue this configuration reduces to, or why there is none."""
        raise NotImplementedError

    @classmethod
    def start_warnings(
        cls, workload: Workload, platform: Platform, arch: Architecture, warmup: float
    ) -> list[str]:
        """What this model's start-up holds that the warm-up may not cover."""
        return []

    @classmethod
    def steady_platform(cls, workload: Workload, platform: Platform) -> Platform:
        """The platform whose run starts in this model's steady state: what a
        planner sizes for, where ``simulate`` starts cold as a real run does."""
        return platform

    @classmethod
    def explain_overload(
        cls, resource: str, rho: float, workload: Workload, arch: Architecture, deal: Deal
    ) -> str:
        """Why a resource with rho >= 1 makes the configuration unstable, in words."""
        return f"{resource} rho = {rho:.3g} >= 1"

    @classmethod
    def bottleneck(
        cls, workload: Workload, platform: Platform, arch: Architecture, deal: Deal
    ) -> Bottleneck | None:
        """The resource that takes longest to reach steady state, as a queue.

        Not simply the most loaded one: a single loop at rho = 0.9 settles
        more slowly than 100 workers at 0.95 (``theory.relaxation_time``).
        None for closed or replayed arrivals, for a saturated configuration
        (it never settles), and when no resource queues.
        """
        if workload.rate is None:
            return None
        offered = cls.offered_load(workload, platform, arch, deal)
        if any(v >= 1 for v in offered.values()):
            return None
        queues = [
            q
            for resource, rho in offered.items()
            if rho > 0
            and (
                q := cls.queue_of(
                    resource, rho, workload=workload, platform=platform, arch=arch, deal=deal
                )
            )
            is not None
        ]
        return max(queues, key=lambda q: q.relaxation_s, default=None)

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
        """``resource`` (a key of ``offered_load`` at utilisation ``rho``) as a queue.

        Its servers, and the arrival rate lam_r that reaches one copy of it
        (the busiest process's share for a per-process resource), give the
        mean service time rho c / lam_r. A CPU resource serves the requests'
        CPU phases (cv of the CPU demand); a pool of workers and a client's
        connection hold a request for its CPU and backend time.
        """
        assert workload.rate is not None
        lam = workload.rate
        busiest = deal.busiest(workload.connections, arch.processes)
        per_connection = 1.0 / (workload.requests_per_connection or 1)
        table: dict[str, tuple[int | None, float, bool]] = {
            # resource: (servers, arrival rate at one copy, holds the backend time)
            "cores": (platform.cores, lam, False),
            "gil": (1, lam * busiest, False),
            "loop": (1, lam * busiest, False),
            "acceptor": (1, lam * busiest * per_connection, False),
            "workers": (arch.workers, lam * busiest, True),
            "client": (1, lam / workload.connections, True),
        }
        if resource not in table:
            return None
        servers, rate, held = table[resource]
        if servers is None or rate <= 0:
            return None
        scv = _request_scv(workload) if held else workload.cpu.cv**2
        return Bottleneck(resource, rho, servers, rho * servers / rate, scv)

    @classmethod
    def latency_draws(
        cls,
        workload: Workload,
        platform: Platform,
        arch: Architecture,
        deal: Deal,
        sampler: Any,
    ) -> tuple[np.ndarray, str]:
        """Per-request latencies composed from this model's queues (the planner's
        Monte Carlo; ``simlab.models.composition``), and the method's name."""
        raise NotImplementedError

    @classmethod
    def fast_reason(cls, workload: Workload, platform: Platform, arch: Architecture) -> str | None:
        """None when the fast engine reproduces the DES here, else why not."""
        if cls.fast_mode is None:
            return f"{cls.name} is not a first-come-first-served pool"
        if workload.kind == "closed":
            return "closed-loop arrivals feed back on the answers (fast needs --rate or a trace)"
        if arch.backlog is not None:
            return "a bounded backlog drops requests (fast needs --backlog unbounded)"
        overload = fast_blocker(workload, arch)
        if overload is not None:
            return overload
        if workload.slow_clients:
            return "slow clients hold threads or buffers (fast needs no --client-send/recv-ms)"
        return cls._fast_limits(workload, platform, arch)

    @classmethod
    def fast_events(cls, workload: Workload, platform: Platform, arch: Architecture) -> bool:
        """True when the fast engine runs its compiled event loop here instead of
        the recursion: a CPU phase can wait (for a core, a GIL) or pay to wake
        its process, so its times depend on everything else in flight."""
        quiet = platform.wake_us == 0 and platform.loop_wake_us == 0
        return not (platform.cores is None and not platform.gil and quiet)

    @classmethod
    def fast_servers(cls, arch: Architecture) -> int:
        """Servers per process in the fast engine's pools (0: not a pool)."""
        return arch.workers if cls.pooled else 0

    @classmethod
    def fast_front(
        cls, workload: Workload, platform: Platform, arch: Architecture
    ) -> tuple[int, float, float, float, float]:
        """A buffering front before the workers, for the fast engine: (front loops,
        their CPU seconds in and out, the hop's seconds there and back); none here."""
        return 0, 0.0, 0.0, 0.0, 0.0

    def fast_owners(self, connections: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(worker, process) owning each persistent connection for the whole run,
        worker -1 for one never served; None when owners change at run time."""
        return None

    @classmethod
    def _fast_limits(cls, workload: Workload, platform: Platform, arch: Architecture) -> str | None:
        """This model's own conditions for the fast engine, or None."""
        return None

    # ----------------------------------------------------------------- hooks

    def session(self, i: int, conn: int) -> Generator[simpy.Event, Any, None]:
        """Serve connection ``conn`` starting with request ``i`` until it has nothing queued."""
        raise NotImplementedError

    def start_session(self, i: int, conn: int) -> None:
        """Start serving connection ``conn`` with request ``i``: its ``session``
        as a SimPy process (a model may start a leaner equivalent)."""
        self.env.process(self.session(i, conn))

    def admit_slot(self, i: int, conn: int) -> bool:
        """Called when an idle connection gets a request; False if it needs no session."""
        return True

    def base_levels(self) -> dict[str, int]:
        """Constant parts of the levels: threads, forks, copies, connections."""
        raise NotImplementedError

    def levels(self, threads: int, connections: int, forks: int = 0) -> dict[str, int]:
        """Base levels of this run: the pre-forked copies plus what the model holds."""
        base_threads, copies = self.preforked(self.arch)
        return {
            "threads": base_threads + threads,
            "forks": copies + forks,
            "copies": copies,
            "connections": connections,
        }

    def worker_is_thread_handle(self) -> bool:
        """True when the ``worker`` column indexes the ``threads`` intervals (a
        thread created for one connection), so a worker's life ends with it."""
        return False

    # --------------------------------------------------------------- clients

    def start_arrivals(self) -> None:
        w = self.workload
        if self._probe is not None:
            self.env.process(self._probe_samples())
        if w.kind == "open" and self.ov is not None and w.schedule is not None:
            self.env.process(self.ov.arrivals())
        elif w.kind == "open":
            self._open_arrivals()
        elif w.kind == "trace":
            self.env.process(self._trace_arrivals())
        else:
            assert w.think is not None
            first = w.think.sample(self.streams.think, w.connections).tolist()
            for conn, delay in enumerate(first):
                self._after(delay, conn)

    def _probe_samples(self) -> Generator[simpy.Event, Any, None]:
        """The lab's probe beside the server (``simlab.real.probe``): a sample
        of the process tree on a core, then ``PROBE_INTERVAL``, for the whole
        run. A sample costs ``probe_us`` plus ``probe_process_us`` per process
        alive then: the first process, the copies and children the model holds
        throughout (``base_levels``), and the children alive for a connection."""
        assert self._probe is not None
        base, per_process = self._probe
        held = 1 + self.base_levels()["forks"]
        forks = self.intervals["forks"][1]
        while True:
            alive = held + sum(1 for end in forks if end == math.inf)
            left = base + per_process * alive
            # The kernel shares a core among runnable threads in slices: a
            # sample queues for each slice behind the server's phases, so on
            # saturated cores it takes its share, not a core (measured: a
            # 30 ms sample beside 200 busy children ran 15 times in 10 s).
            while left > 0:
                step = min(left, PROBE_SLICE)
                yield from self.cpu.background(step, PROBE)
                left -= step
            yield self.env.timeout(PROBE_INTERVAL)

    def _open_arrivals(self) -> None:
        """Poisson arrivals: wait a gap, send on a random connection, again.

        Written as a chain of callbacks rather than a SimPy process: the same
        events in the same order (an urgent start at time 0, then one timeout
        per gap, each created right after the send before it), without the
        generator's resume on every arrival or the process's end event, which
        nobody waits for. This is the DES's hottest path after the sessions."""
        OpenArrivals(self)

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
        if self._lab_client:
            self.env.process(self.cpu.background(self._lab_client, CLIENT))
        self.arrival[i] = self.env.now
        self.connection[i] = conn
        self.outcome[i] = PENDING
        self.in_system += 1
        if self.in_system > self.max_in_system:
            # The queue is running away: stop offering load rather than let
            # the run eat the machine's memory; the verdict will be unstable.
            self.overloaded = True
        if self.ov is not None:
            conn = self.ov.on_send(i, conn)
        self.route(i, conn)

    def route(self, i: int, conn: int) -> None:
        """Request ``i`` goes out on connection ``conn``: it starts a session, wakes
        the thread waiting on the connection, or waits behind the one in flight."""
        active = self.active
        if conn not in active:
            if self.admit_slot(i, conn):
                active[conn] = None
                if self.ov is not None:
                    self.ov.on_sent(conn, i)
                self.start_session(i, conn)
            return
        waiter = self.idle.pop(conn, None)
        if waiter is not None:
            if self.ov is not None:
                self.ov.on_sent(conn, i)
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
        nxt = q.popleft() if q else None
        if self.ov is not None and nxt is not None:
            self.ov.on_sent(conn, nxt)
        return nxt

    def finish(self, i: int, service: float, later: float = 0.0) -> None:
        """Request ``i`` is answered ``later`` seconds from now (the rest of a slow
        read that the socket buffers carry after its thread has let go)."""
        self.end[i] = self.env.now + later
        self.service[i] = service
        self.outcome[i] = COMPLETED
        self._done(i, later)

    def drop(self, i: int) -> None:
        self.end[i] = self.env.now
        self.outcome[i] = DROPPED
        self._done(i)

    def _done(self, i: int, later: float = 0.0) -> None:
        self.in_system -= 1
        if self.ov is not None:
            self.ov.done(i)
        if self.workload.think is not None:
            self._after(self._think[i] + later, self.connection[i])

    def _grow(self) -> None:
        extra = max(BATCH, self._capacity)
        nan_block = array("d", [_NAN]) * extra
        for col in (
            self.arrival,
            self.admit,
            self.start,
            self.end,
            self.service,
            self.cpu_time,
            self.let_go,
        ):
            col.extend(nan_block)
        minus = array("q", [-1]) * extra
        for icol in (self.connection, self.worker, self.process):
            icol.extend(minus)
        self.outcome.extend(array("b", [PENDING]) * extra)
        self._capacity += extra
        if self.ov is not None:
            self.ov.grow(extra)

    def _draw(self) -> None:
        w, s = self.workload, self.streams
        self.demand.extend(w.cpu.sample(s.cpu, BATCH).tolist())
        if self.ov is not None and self.ov.needs_calls:
            self.io_time.extend(self.ov.draw_calls(w.io, w.calls, w.fanout, self._call_latency))
        else:
            self.io_time.extend(draw_io(w, self._call_latency, s.io, s.slack).tolist())
        if w.think is not None:
            self._think.extend(w.think.sample(s.think, BATCH).tolist())
        if self.ov is not None:
            self.ov.draw_mix(self.demand)
        if self._slow:
            slow = s.slow
            assert slow is not None
            self.send_time.extend(w.client_send.sample(slow, BATCH).tolist())
            self.recv_time.extend(w.client_recv.sample(slow, BATCH).tolist())

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
            # A connection its client walked away from (a timeout) closes too.
            gone = self.ov is not None and conn in self.ov.closed
            if state[1] == k or gone:
                self.close_interval("connections", state[0])
                del self._open[conn]

    def client_sends(
        self, i: int, since: float | None = None
    ) -> Generator[simpy.Event, Any, float]:
        """A slow client trickles request ``i`` in; returns its send time.

        Whoever waits here is held for it: a thread that reads its own socket,
        or nothing but the request's bytes in a socket buffer when a loop or a
        front reads it (recorded as ``send_buffers`` memory either way). The
        client started sending at ``since`` (default now): what it sent while
        its connection waited to be accepted is already in the kernel's buffer,
        so only the rest is waited for here.
        """
        if not self._slow:
            return 0.0
        t = self.send_time[i]
        if t > 0:
            start = self.env.now if since is None else since
            starts, ends = self.intervals["send_buffers"]
            starts.append(start)
            ends.append(start + t)
            left = start + t - self.env.now
            if left > 0:
                yield self.env.timeout(left)
        return t

    def read_split(self, i: int) -> tuple[float, float]:
        """(held, rest) of a slow read of answer ``i`` by the thread that writes it.

        A blocking write returns once all but what the socket buffers take
        (``socket_buffer_kib``: the server's send buffer and the client's
        receive buffer) has been read; the client reads at an even pace, so
        the writer is held for the share of the read beyond the buffers, and
        the buffers carry the rest.
        """
        if not self._slow:
            return 0.0, 0.0
        t = self.recv_time[i]
        if t <= 0:
            return 0.0, 0.0
        held = t * read_held_share(self.workload, self.platform)
        return held, t - held

    def client_reads(self, i: int) -> Generator[simpy.Event, Any, float]:
        """A slow client reads the answer to request ``i`` through a small receive
        buffer; returns how long it took (the answer's bytes wait meanwhile)."""
        if not self._slow:
            return 0.0
        t = self.recv_time[i]
        if t > 0:
            self._buffered("recv_buffers", t)
            yield self.env.timeout(t)
        return t

    def _buffered(self, kind: str, t: float) -> None:
        starts, ends = self.intervals[kind]
        starts.append(self.env.now)
        ends.append(self.env.now + t)

    def on_thread(
        self, i: int, gil: Pool | None, demand: float, *, paid: bool, process: int | None
    ) -> Generator[simpy.Event, Any, float]:
        """A request's CPU and backend calls on a thread; returns its CPU time.

        ``demand`` is the request's own CPU plus what this thread pays for it
        (``request_cost``). Without a shared GIL the per-call costs are charged
        in one phase before the calls, which uses the same CPU and costs fewer
        events. Under a GIL each answer from the backend wakes the thread,
        which must win the GIL back (behind whoever holds it) before it can
        read the answer: the GIL hand-offs that stretch threaded Python
        servers' latency under CPU load. Then every call gets its own short phase.
        """
        w = self.workload
        calls = w.calls
        io = self.io_time[i]
        split = gil is not None and calls > 0
        cpu = 0.0
        if self.ov is not None and self.ov.thread_io:
            return (yield from self._on_thread_calls(i, gil, demand, paid=paid, process=process))
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
        self.backend_busy()
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

    def _on_thread_calls(
        self, i: int, gil: Pool | None, demand: float, *, paid: bool, process: int | None
    ) -> Generator[simpy.Event, Any, float]:
        """``on_thread`` when the overload options shape the calls (a backend
        pool, a deadline, hedging, a blocking call): the CPU phase, the calls
        one by one (``Dynamics.io``), and under a GIL the calls' reads in one
        phase after them (their hand-offs merged: a simplification)."""
        assert self.ov is not None
        calls = self.workload.calls
        split = gil is not None and calls > 0
        first = demand - calls * self._call_cpu if split else demand
        cpu = 0.0
        if first > 0 or paid or self.cpu.wake > 0:
            cpu += (yield from self.cpu.run(gil, first, 1 if split else 1 + calls, process))[0]
        self.backend_busy()
        yield from self.ov.io(i)
        if split:
            cpu += (yield from self.cpu.run(gil, self._call_cpu * calls, calls, process))[0]
        return cpu

    def backend_busy(self) -> None:
        """The backend serves this request's calls: its CPU takes a core meanwhile."""
        if self._lab_backend:
            self.env.process(self.cpu.background(self._lab_backend, BACKEND))

    def open_interval(self, kind: str) -> int:
        """Record the start of a connection, thread or fork; returns its handle."""
        starts, ends = self.intervals[kind]
        starts.append(self.env.now)
        ends.append(math.inf)
        return len(starts) - 1

    def close_interval(self, kind: str, handle: int) -> None:
        self.intervals[kind][1][handle] = self.env.now

    def accepted_at(self, kind: str, handle: int) -> None:
        """Move the start of an interval opened earlier to now (its place in
        the record, the order of opening, stays as it was)."""
        self.intervals[kind][0][handle] = self.env.now

    # ---------------------------------------------------------------- output

    def record(self, *, replication: int, seed: int, window: tuple[float, float]) -> Record:
        n = self.n

        def col(a: array[Any], dtype: type) -> np.ndarray:
            return np.frombuffer(a, dtype=dtype, count=n).copy()

        columns = {
            name: col(getattr(self, name), np.float64)
            for name in ("arrival", "admit", "start", "end", "service", "cpu_time", "let_go")
        }
        for name in ("connection", "worker", "process"):
            columns[name] = col(getattr(self, name), np.int64)
        columns["outcome"] = col(self.outcome, np.int8)
        if self.ov is not None:
            columns.update(self.ov.columns(n))
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
            calls=self.workload.calls,
            own_process=self.own_process,
            worker_is_thread_handle=self.worker_is_thread_handle(),
            salt=self.salt,
            overload=self.ov.stats() if self.ov is not None else None,
            buffers_kib=(self.workload.request_kib, self.workload.response_kib),
        )


def _neighbours(
    workload: Workload, platform: Platform
) -> tuple[float, float, tuple[float, float] | None]:
    """The lab's neighbours on the same cores, when the platform says there
    are any and cores are scarce: the load generator's CPU per request (in
    an open loop with its second's share at the offered rate, or in a
    closed loop), the
    backend's per request (all its calls), and the probe's per sample of the
    server's process tree (fixed, and per process in the tree), in seconds."""
    if platform.cores is None:
        return 0.0, 0.0, None
    probing = platform.probe_us > 0 or platform.probe_process_us > 0
    probe = (platform.probe_us * US, platform.probe_process_us * US) if probing else None
    client = platform.client_cpu_us
    if workload.rate is not None and workload.rate > 0:
        # An open loop's own second (its timers, its loop), shared by the
        # requests it sends in that second.
        client += platform.client_cpu_us_per_s / workload.rate
    if workload.rate is None and workload.trace is None and platform.client_closed_cpu_us > 0:
        client = platform.client_closed_cpu_us  # a closed loop's sends ride on its reads
    return client * US, workload.calls * platform.backend_cpu_us * US, probe


def draw_io(
    workload: Workload,
    call_latency: Distribution,
    rng_io: np.random.Generator,
    rng_slack: np.random.Generator,
) -> np.ndarray:
    """One batch (``BATCH`` requests) of time spent in backend calls.

    Every call also takes the platform's ``call_latency`` on top of its delay;
    calls add up one after another, or the slowest sets the time in parallel.
    The DES and the fast engine both draw through here, so they see the same
    numbers from the same streams.
    """
    w = workload
    if w.calls == 0:
        return np.zeros(BATCH)
    calls = w.io.sample(rng_io, (BATCH, w.calls))
    if call_latency.mean > 0:
        calls = calls + call_latency.sample(rng_slack, (BATCH, w.calls))
    out: np.ndarray = calls.sum(axis=1) if w.fanout == "sequential" else calls.max(axis=1)
    return out


def _request_scv(workload: Workload) -> float:
    """Squared cv of a request's CPU demand plus its backend time."""
    # loads builds on this module; it is imported here, when first needed.
    from simlab.models.loads import io_moments  # noqa: PLC0415

    io_mean, io_var = io_moments(workload)
    mean = workload.cpu.mean + io_mean
    var = (workload.cpu.cv * workload.cpu.mean) ** 2 + io_var
    return var / mean**2 if mean > 0 else 1.0


def read_held_share(workload: Workload, platform: Platform) -> float:
    """The share of a slow read that holds the thread writing the answer: the
    part of the answer beyond the socket buffers (``Model.read_split``)."""
    size = workload.response_kib
    if size <= 0:
        return 0.0
    return max(0.0, size - platform.socket_buffer_kib) / size


def client_load(workload: Workload, service: float) -> float:
    """Utilisation of one client's connection: it sends rate/N requests/s,
    each holding the connection for at least ``service`` seconds."""
    assert workload.rate is not None
    return workload.rate / workload.connections * service
