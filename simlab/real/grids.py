"""What the lab runs to calibrate and to validate: the calibration grid and the held-out cases.

Both are plans of real runs of real servers: which server (a model's real
twin or a peer), with which workload and knobs, for how long. The
calibration grid is chosen to separate the costs it fits; the held-out
cases differ from it in every respect (other rates, connection counts,
latencies, fan-outs, worker and process counts), so that validation tests
the profile on configurations it never saw.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from simlab.distributions import RESEND_AT_ONCE, Exponential, Fixed
from simlab.params import Architecture, Fanout, Platform, Workload
from simlab.real.options import SERVER_MODELS
from simlab.real.peers import PEERS, REGISTRY

if TYPE_CHECKING:
    from simlab.real.measure import MeasureOptions

__all__ = [
    "RUNTIMES",
    "Case",
    "Run",
    "Runtime",
    "grid",
    "held_out",
    "measure_options",
    "runtime_cases",
    "runtime_grid",
]


@dataclass(frozen=True)
class Run:
    """One real run of the calibration grid."""

    target: str
    workload: Workload
    arch: Architecture
    # What the run is for (``grid``'s docstring lists each): "cpu", "batch",
    # "threads", "saturate", "convoy", "fork", "spawn", "memory", "structure",
    # "copies", "peer_request", "beside", "siblings".
    role: str
    duration: float = 6.0
    warmup: float = 1.5
    # The server's switch interval (ms; None: Python's default, as the
    # profile's ``gil_interval_us``): set only where the GIL's waiters'
    # wake-ups are to be told apart (``Platform.gil_poll_us``).
    switch_interval_ms: float | None = None

    def label(self) -> str:
        w, a = self.workload, self.arch
        rate = f"{w.rate:g}/s" if w.rate is not None else f"closed x{w.connections}"
        if self.role == "saturate":
            rate += " saturated"
        switch = f" switch={self.switch_interval_ms:g}ms" if self.switch_interval_ms else ""
        return (
            f"{self.target} N={w.connections} {rate} cpu={w.cpu.mean * 1e3:g}ms "
            f"calls={w.calls} W={a.workers} P={a.processes}{switch}"
        )

    def platform(self, platform: Platform) -> Platform:
        """``platform`` as this run's server ran: at its switch interval."""
        if self.switch_interval_ms is None or not platform.gil:
            return platform
        return platform.with_(gil_interval_us=self.switch_interval_ms * 1e3)


def _holder_connections(target: str, workers: int, wanted: int) -> int:
    # Holder servers serve only as many persistent connections as they have
    # threads; more would starve and measure nothing useful here.
    if target == "iterative":
        return 1
    if target == "thread-pool":
        return min(wanted, workers)
    return wanted


def grid(quick: bool) -> list[Run]:
    """The calibration grid: runs chosen so that each fitted cost moves something
    no other cost moves.

    - ``cpu``: every server at a light load, with 0, 1 and 4 backend calls
      (the per-call costs), and at a heavier one (the process rarely idle);
    - ``batch``: the loop servers in a closed loop of 1 to 64 clients with no
      think time, so that a loop wakes with 1 to 64 ready connections: what a
      request costs once the cost of waking is shared (batching); and the
      same loops against the peers that are one loop (``PEER_LOOPS``), for
      their own loop costs;
    - ``threads``: the same offered load on 8 to 2,048 threads (does the CPU
      a request costs grow with the threads that exist?);
    - ``saturate``: thread-per-connection in a closed loop with no think time
      on 8 to 300 threads, so that nearly every thread waits for the GIL:
      what a request costs the bottleneck as the runnable threads grow
      (switch contention);
    - ``convoy``: thread-per-connection in an open loop at about the GIL's
      capacity, at 5 and 50 ms switch intervals (the full grid only): a
      server that falls behind keeps all its connections' threads waiting;
    - ``fork`` and ``spawn``: a process or a thread made per connection, at
      rising rates (creation cost under load, copy-on-write);
    - ``memory``: the same servers holding few and many connections, with
      and without backend calls (memory per unit, user and kernel);
    - ``structure``: the peers idle at 1 and 2 processes (their own machinery);
    - ``copies``: simlab's pre-forking servers under the same light load at 1
      and 2 processes (a pre-forked copy's own growth, ``copy_kib``);
    - ``peer_request``: gunicorn's workers light (the full grid only), for the
      CPU a request their own code costs beyond the model's (``parse_us``);
    - ``beside``: threads saturating their GIL in an open loop, its load
      generator busy beside them (the full grid only): how often a GIL
      hand-off waits for that neighbour's core (``gil_neighbour_share``);
    - ``siblings``: two pre-forked copies of a threaded server saturated in
      an open loop (the full grid only): how often a GIL hand-off in one
      waits for the core the other holds (``gil_sibling_share``).
    """
    length = 4.0 if quick else 6.0
    return [
        *_cost_runs(quick, length),
        *_load_runs(quick, length),
        *_memory_runs(quick),
        *structure_runs(),
        # Last, so that the runs before them keep their places (their seeds).
        *_peer_loop_runs(quick, length),
        *_saturated_thread_runs(quick, length),
        *_convoy_runs(quick),
        *_copies_runs(COPIES_SERVERS[quick]),
        *_peer_request_runs(quick, PEER_REQUESTS),
        *_copies_runs(() if quick else LATER_COPIES),
        *_beside_runs(quick, length),
        *_peer_request_runs(quick, LATER_PEER_REQUESTS),
        *_sibling_runs(quick, length),
    ]


ARCH = Architecture(workers=8)
# Servers whose own costs this fit has no columns for: two-tier's front and hop
# (front_us, hop_us, ...) belong to a fit of their own, from the nginx peers.
UNFITTED = ("two-tier",)


def _cost_runs(quick: bool, length: float) -> list[Run]:
    """Every server light and heavier, with 0, 1 and 4 calls."""
    runs = []
    for target in SERVER_MODELS:
        if target in UNFITTED:
            continue
        for calls in (0, 1) if quick else (0, 1, 4):
            n = _holder_connections(target, 8, 50)
            rate = 30.0 if target == "iterative" else 100.0
            w = Workload(connections=n, rate=rate, cpu=Fixed(0.001), io=Fixed(0.005), calls=calls)
            runs.append(Run(target, w, ARCH, "cpu", duration=length))
        if target == "iterative":
            continue
        n = _holder_connections(target, 8, 200)
        for rate in (320.0,) if quick else (250.0, 340.0):
            w = Workload(connections=n, rate=rate, cpu=Fixed(0.002), io=Fixed(0.005), calls=1)
            runs.append(Run(target, w, ARCH, "cpu", duration=length))
    return runs


def _load_runs(quick: bool, length: float) -> list[Run]:
    """Batching, many threads, and a thread or process made per connection."""
    runs = []
    # A closed loop with (almost) no think time keeps every client's request
    # ready: a loop that wakes finds them all.
    for target in LOOP_SERVERS:
        for clients in LOOP_CLIENTS[quick]:
            w = Workload(connections=clients, think=RESEND_AT_ONCE, cpu=Fixed(0.001), calls=0)
            runs.append(Run(target, w, ARCH, "batch", duration=length))
    for threads in (8, 512) if quick else (8, 64, 512, 2048):
        # The same offered load whatever the threads: think N / THREADS_RATE each,
        # exponential, as the load generator's clients think.
        think = Exponential(threads / THREADS_RATE)
        w = Workload(connections=threads, think=think, cpu=Fixed(0.001), io=Fixed(0.005))
        runs.append(Run("thread-per-connection", w, ARCH, "threads", duration=length))
    for target, role, rates in (
        ("process-per-connection", "fork", (20.0, 120.0) if quick else (20.0, 60.0, 120.0)),
        ("thread-per-connection", "spawn", (50.0, 300.0) if quick else (50.0, 150.0, 300.0)),
    ):
        for rate in rates:
            w = Workload(
                connections=10_000,
                rate=rate,
                cpu=Fixed(0.001),
                io=Fixed(0.005),
                requests_per_connection=1,
            )
            runs.append(Run(target, w, ARCH, role, duration=length))
    return runs


def _saturated_thread_runs(quick: bool, length: float) -> list[Run]:
    """Thread-per-connection saturated on 8 to 300 threads: a closed loop with
    no think time keeps every thread's next request ready, so all but the
    few in a backend call queue for the GIL."""
    runs = []
    for threads in SATURATED_THREADS[quick]:
        w = Workload(
            connections=threads, think=RESEND_AT_ONCE, cpu=Fixed(0.001), io=Fixed(0.005), calls=1
        )
        runs.append(Run("thread-per-connection", w, ARCH, "saturate", duration=length))
    # The most threads again, and as often at ten times Python's switch
    # interval: its waiters wake a tenth as often, and what a request costs
    # the GIL falls by what their wake-ups cost its holder
    # (``Platform.gil_poll_us``); no other cost in the model depends on the
    # interval here (each request's 1 ms of CPU is under either). Repeated,
    # so that the pair's contrast has its own noise to be judged by.
    w = runs[-1].workload
    repeats = PAIR_REPEATS[quick]
    default = Run("thread-per-connection", w, ARCH, "saturate", duration=length)
    slow = replace(default, switch_interval_ms=SLOW_SWITCH_MS)
    return runs + [default] * (repeats - 1) + [slow] * repeats


def _convoy_runs(quick: bool) -> list[Run]:
    """Thread-per-connection in an open loop at about the GIL's capacity on
    250 persistent connections, at Python's switch interval and at ten times
    it (the full grid only), twelve times each. A server that falls behind an
    open loop keeps its connections' threads waiting for the GIL, up to all
    250, where a closed loop's accepting thread, itself waiting, holds about
    120 (``calibrate.as_held``); their timed wake-ups come ten times as often
    at 5 ms. By hand on 4 December this load served 385/s at 5 ms and 490/s
    at 50 ms (1.14 and 0.95 busy cores), and a held-out case of the same
    kind (N=300 420/s cpu=1.8ms) 321 and 334/s against 417 and 425/s: what
    the saturated closed loops do not show. At 5 ms the server slides into
    that regime in some runs and not in others (and the model, more slowly,
    in long ones), so a few runs cannot tell its pace: with six a side the
    fit's bootstrap still drew sets of runs that all kept up (``gil_poll_us``
    3 µs, [0, 4]), so twelve, fixed before they were measured."""
    if quick:
        return []
    w = Workload(connections=250, rate=480.0, cpu=Fixed(0.0015), io=Fixed(0.005), calls=1)
    default = Run("thread-per-connection", w, ARCH, "convoy", duration=8.0, warmup=2.0)
    slow = replace(default, switch_interval_ms=SLOW_SWITCH_MS)
    return [default, slow] * CONVOY_REPEATS


# Each interval's convoy runs (interleaved, so that a drift of the machine's
# speed falls on both alike).
CONVOY_REPEATS = 12
# 300 threads, as a held-out case has at saturation; more would hold each
# request for seconds in a closed loop, longer than a run.
SATURATED_THREADS = {True: (8, 300), False: (8, 64, 300)}
# Ten times CPython's default switch interval (5 ms).
SLOW_SWITCH_MS = 50.0
# Runs of the most threads saturated at each of the two intervals.
PAIR_REPEATS = {True: 1, False: 3}


# A closed loop's clients: a loop that wakes finds 1 to 64 requests ready.
LOOP_CLIENTS = {True: (1, 4, 16), False: (1, 4, 16, 64)}
# Closed loops beyond the loops' (``runtime_grid``, ``Runtime.saturates``):
# a switch's cost as the runnable threads grow (``Platform.switch_contention``).
CONTENTION_CLIENTS = (256, 1024)
# Open loops beyond the cores at a longer burn (``CROWDING_BURN`` s), on 100
# and 1,000 connections opened before they send (a closed loop's clients
# connect as they send, and java-threads' acceptor, one thread among
# hundreds runnable, let 388 of 1,024 in): a cost that grows with the burn
# as the runnable threads grow is a phase slowed by the threads queued
# beside it (``Platform.crowding``), one that does not is a switch's
# (``switch_contention``). Twice each, so that the bootstrap sees their noise.
CROWDING_CLIENTS = (100, 1000)
CROWDING_BURN = 0.004
CROWDING_RATE = 560.0
CROWDING_REPEATS = 2
# A closed loop's clients and backend calls a request, for a call's own cost.
CALL_LOOP = (64, 4)


def _peer_loop_runs(quick: bool, length: float) -> list[Run]:
    """The closed loops of the loop servers, against the peers that are one
    loop per process (``PEER_LOOPS``, one process): their own loop costs."""
    runs = []
    for target in PEER_LOOPS:
        for clients in LOOP_CLIENTS[quick]:
            w = Workload(connections=clients, think=RESEND_AT_ONCE, cpu=Fixed(0.001), calls=0)
            runs.append(Run(target, w, ARCH, "batch", duration=length))
    return runs


def _memory_runs(quick: bool) -> list[Run]:
    """The same servers holding few and many connections, with and without calls."""
    runs = []
    if not quick:
        # Backend connections and copy-on-write: most of the connections served.
        for target, n, rate in (
            ("thread-per-connection", 600, 150.0),
            ("process-per-connection", 100, 60.0),
        ):
            for calls in (0, 1):
                w = Workload(
                    connections=n, rate=rate, cpu=Fixed(0.0005), io=Fixed(0.002), calls=calls
                )
                runs.append(Run(target, w, ARCH, "memory"))
    sizes = {
        "async": (200, 2000 if quick else 4000),
        "reactor-pool": (200, 2000),
        "thread-per-connection": (100, 1000 if quick else 2000),
        "process-per-connection": (50, 200 if quick else 400),
    }
    for target, counts in sizes.items():
        for n in counts:
            w = Workload(connections=n, rate=20.0, cpu=Fixed(0.0005), io=Fixed(0.002), calls=1)
            runs.append(Run(target, w, ARCH, "memory", duration=2.0, warmup=1.0))
    return runs


def _copies_runs(servers: tuple[str, ...]) -> list[Run]:
    """simlab's servers that the validation runs pre-forked, each under one
    light load at 1 process and at 2 (a master and two copies), with and
    without a backend call: what a copy holds beyond its fork and its first
    service is the pair's difference less the model's
    (``simlab.calibrate.fit_copies``). By hand on 5 December (N=200 100/s,
    0.5 ms of CPU, a 2 ms call) a copy held 4.8 to 6.1 MiB more than the
    one process did, where the model's fork and first service are 2.3; in
    these runs' first measurement a copy that calls held 0.2 (async) to 1.6
    MiB (iterative) more than one that does not, so both are run."""
    runs = []
    for target in servers:
        for calls in (0, 1):
            n = 2 if target == "iterative" else _holder_connections(target, 8, 200)
            w = Workload(
                connections=n,
                rate=30.0 if target == "iterative" else 100.0,
                cpu=Fixed(0.0005),
                io=Fixed(0.002),
                calls=calls,
                # One connection at a time each: a copy of its own for each.
                requests_per_connection=1 if target == "iterative" else None,
            )
            for processes in (1, 2):
                arch = replace(ARCH, processes=processes)
                runs.append(Run(target, w, arch, "copies", duration=3.0, warmup=1.0))
    return runs


def _beside_runs(quick: bool, length: float) -> list[Run]:
    """Threads at their GIL's capacity in an open loop over it (``BESIDE``),
    each ``BESIDE_REPEATS`` times (a bootstrap within a configuration needs
    more than two runs to draw from): the load generator, sending on its
    timers, spends about 0.45 ms of a core a request beside them (0.09 in a
    closed loop), and the server serves less than in a closed loop at the
    same CPU a request. By hand on 5 December thread-pool N=16 W=16 (2 ms of CPU, a
    2 ms call) served 403 to 405/s at 0.93 cores in an open loop at 500
    and 600/s, and 425/s at 0.99 cores in a closed loop, 2.3 ms of CPU a
    request in all. What the GIL's time a request (1/served) is beyond the
    model's, with each run's neighbours at their measured CPU, is fitted as
    ``gil_neighbour_share`` (``simlab.calibrate.fit_neighbour_share``)."""
    if quick:
        return []
    runs = []
    for target, n, rate, cpu, io, workers in BESIDE:
        w = Workload(connections=n, rate=rate, cpu=Fixed(cpu), io=Fixed(io), calls=1)
        run = Run(target, w, Architecture(workers=workers), "beside", duration=length)
        runs += [run] * BESIDE_REPEATS
    return runs


# The ``beside`` runs: server, connections, offered rate (about 1.15 and 1.25
# times what its GIL serves), CPU and call (s), workers.
BESIDE = (
    ("thread-per-connection", 12, 700.0, 0.0012, 0.003, 8),
    ("thread-pool", 24, 420.0, 0.0025, 0.001, 24),
)
BESIDE_REPEATS = 4


def _sibling_runs(quick: bool, length: float) -> list[Run]:
    """Two copies of a threaded server, each with its own GIL, saturated by an
    open loop on 2 cores (``SIBLINGS``), ``SIBLING_REPEATS`` times each,
    interleaved. By hand on 6 December thread-per-connection N=2000 at
    800/s (2.5 ms of CPU, a 10 ms call, 2 copies) served 516 and 544/s at a
    50 ms switch interval with 1.58 to 1.6 cores of the server busy, and
    727/s on 2 with each copy pinned to a core of its own (``taskset``): a
    hand-off woken on the core the other copy holds waits there while the
    core its GIL's last holder left idles. What their served rate says
    beyond the model's is fitted as ``gil_sibling_share``
    (``simlab.calibrate.fit_sibling_share``). At ten times Python's switch
    interval, so that the GIL's waiters' timed wake-ups, whose cost grows
    with the hundreds waiting (``gil_poll_us``, fitted on one process),
    leave the copies' race for the cores to show: at 5 ms the same load
    cost 4.3 ms of CPU a request against 2.9 at 50 ms."""
    if quick:
        return []
    runs = []
    for target, n, rate, cpu, io, workers in SIBLINGS:
        w = Workload(connections=n, rate=rate, cpu=Fixed(cpu), io=Fixed(io), calls=1)
        arch = Architecture(workers=workers, processes=2)
        run = Run(target, w, arch, "siblings", duration=length, switch_interval_ms=SLOW_SWITCH_MS)
        runs.append(run)
    return [run for _ in range(SIBLING_REPEATS) for run in runs]


# The ``siblings`` runs: server, connections, offered rate (about 1.3 times
# what two copies' cores serve), CPU and call (s), workers; two copies each.
SIBLINGS = (
    ("thread-per-connection", 400, 900.0, 0.002, 0.005, 32),
    ("thread-pool", 32, 900.0, 0.002, 0.001, 16),
)
SIBLING_REPEATS = 3


def _peer_request_runs(quick: bool, peers: dict[str, PeerLight]) -> list[Run]:
    """The peers whose request path is their own Python (``peers``:
    gunicorn's parser, its WSGI environ, its worker loop), light, at their
    rates, with and without a backend call, as the validation runs them:
    what a request costs their CPU beyond the model they resemble
    (``simlab.calibrate.fit_peer_requests``). On the 5 December report
    gunicorn's sync workers spent 1.66 to 1.94 ms of CPU a request where
    the model (simlab's iterative server) spends 1.23."""
    if quick:
        return []
    runs = []
    for peer, (n, rates, arch, k) in peers.items():
        for rate in rates:
            for calls in (0, 1):
                w = Workload(
                    connections=n,
                    rate=rate,
                    cpu=Fixed(0.001),
                    io=Fixed(0.005),
                    calls=calls,
                    requests_per_connection=k,
                )
                runs.append(Run(peer, w, arch, "peer_request", duration=6.0, warmup=1.5))
    return runs


# Each peer's light runs: connections, rates, its workers and processes, and
# requests a connection (gunicorn's sync workers close after each answer).
PeerLight = tuple[int, tuple[float, ...], Architecture, int | None]
PEER_REQUESTS: dict[str, PeerLight] = {
    "gunicorn-sync": (4, (40.0, 80.0), Architecture(workers=1, processes=4), 1),
    "gunicorn-gthread": (60, (60.0, 120.0), Architecture(workers=6, processes=1), None),
}
# More of gthread's, at the grid's end (the runs before keep their places):
# on 6 December its four runs put it 85 to 285 us a request over the model,
# a t interval from -0.2 to 295 us; twelve runs can bound that spread.
LATER_PEER_REQUESTS: dict[str, PeerLight] = {
    "gunicorn-gthread": (60, (30.0, 45.0, 90.0, 100.0), Architecture(workers=6, processes=1), None),
}


# simlab's servers whose copies serve, which the validation runs with
# pre-forked copies (its P=2 cases); process-per-connection's copies only
# accept, and its children have their own costs (``fit_forks``).
COPIES_SERVERS = {
    True: ("async", "thread-pool"),
    False: ("async", "reactor-pool", "thread-pool", "iterative"),
}
# Added to the full grid after the peers' light runs (at its end, so that the
# runs before them keep their places and seeds).
LATER_COPIES = ("thread-per-connection",)


# The pool size of the peers' structure runs (their threads per process).
STRUCTURE_WORKERS = 4


def structure_runs() -> list[Run]:
    """The peers idle at 1 and 2 processes, and holding 1,000 connections."""
    runs = []
    for target in PEERS:
        shapes = [(1, 1), (2, 2)]
        if REGISTRY[target].keep_alive:  # one that closes every connection holds none
            shapes.append((1, 1000))
        for processes, n in shapes:
            w = Workload(connections=n, rate=20.0, cpu=Fixed(0.0005), io=Fixed(0.002))
            arch = Architecture(workers=STRUCTURE_WORKERS, processes=processes)
            runs.append(Run(target, w, arch, "structure", duration=2.0, warmup=1.0))
    return runs


# The servers whose requests all pass one loop (where batching happens).
LOOP_SERVERS = ("async", "reactor-pool")
# Peers that are one event loop per process and whose own code sets what the
# loop costs per request: uvicorn parses with httptools (C) and runs its own
# protocol class, simlab's async server parses with h11 (Python). Their
# closed loops fit their own loop costs (``simlab.calibrate.fit_peer_loops``),
# the machine's costs staying shared.
PEER_LOOPS = ("uvicorn",)
THREADS_RATE = 150.0


@dataclass(frozen=True)
class Case:
    target: str
    workload: Workload
    arch: Architecture
    duration: float = 8.0
    warmup: float = 2.0

    def config(self) -> str:
        w, a = self.workload, self.arch
        io = f"{w.calls}x{w.io.mean * 1e3:g}ms {w.fanout[:3]}" if w.calls else "no calls"
        k = "" if w.persistent else f" k={w.requests_per_connection}"
        slow = (
            f" slow={w.client_send.mean * 1e3:g}/{w.client_recv.mean * 1e3:g}ms"
            if w.slow_clients
            else ""
        )
        return (
            f"N={w.connections} {w.rate:g}/s cpu={w.cpu.mean * 1e3:g}ms {io} "
            f"W={a.workers} P={a.processes}{k}{slow}"
        )


def _w(
    n: int,
    rate: float,
    cpu_ms: float,
    io_ms: float,
    calls: int = 1,
    *,
    fanout: Fanout = "sequential",
    k: int | None = None,
    exp: bool = False,
) -> Workload:
    cpu = Exponential(cpu_ms / 1e3) if exp else Fixed(cpu_ms / 1e3)
    return Workload(
        connections=n,
        rate=rate,
        cpu=cpu,
        io=Fixed(io_ms / 1e3),
        calls=calls,
        fanout=fanout,
        requests_per_connection=k,
    )


def held_out(quick: bool) -> list[Case]:
    """Configurations the calibration never ran: every model and peer, light
    and loaded, a third of them at or beyond saturation (rho 0.9 to 1.5, where
    what a server serves is the model's prediction and not its input), and
    some whose threads change during the run (a thread or a process made per
    connection, gthread's lazy threads). Pools are sized so that the
    kernel's deal of connections to processes cannot starve one by chance."""
    a = Architecture
    short = 4.0  # the quick set's runs, so that make test stays in its budget
    quick_cases = [
        Case("async", _w(3000, 300, 1.5, 30, 2, fanout="parallel"), a(), short, 1.0),
        Case("async", _w(500, 500, 2.4, 0, 0), a(), short, 1.0),  # rho about 1.3
        Case("reactor-pool", _w(200, 200, 1, 30), a(workers=4), short, 1.0),  # workers 1.6
        Case("thread-per-connection", _w(9_000, 100, 1, 10, k=1), a(), short, 1.0),
        Case("process-per-connection", _w(120, 80, 1, 15), a(), short, 1.0),
        Case("thread-pool", _w(16, 160, 1, 20), a(workers=16), short, 1.0),
        Case("iterative", _w(100, 90, 2, 8, k=1), a(), short, 1.0),  # rho about 0.96
        Case("uvicorn", _w(300, 120, 1, 20), a(processes=2), short, 1.0),
    ]
    if quick:
        return quick_cases
    return [
        # async: one loop, then two.
        Case("async", _w(3000, 300, 1.5, 30, 2, fanout="parallel"), a()),
        Case("async", _w(8000, 500, 1, 40), a()),
        Case("async", _w(1000, 350, 2, 10, 3, exp=True), a(processes=2)),
        Case("async", _w(500, 380, 2.4, 5), a()),  # rho about 1.0
        Case("async", _w(500, 500, 2.4, 0, 0), a()),  # rho about 1.3
        Case("async", _w(1000, 900, 2, 0, 0), a(processes=2)),  # rho about 1.15 per loop
        # reactor-pool
        Case("reactor-pool", _w(500, 150, 1, 20, 2), a(workers=12)),
        Case("reactor-pool", _w(2000, 300, 1, 10, 4, fanout="parallel"), a(workers=6)),
        Case("reactor-pool", _w(300, 200, 1.5, 25, 1, exp=True), a(workers=4, processes=2)),
        Case("reactor-pool", _w(200, 200, 1, 30), a(workers=4)),  # workers at 1.6
        Case("reactor-pool", _w(400, 450, 1.5, 5), a(workers=16)),  # GIL about 1.0
        Case("reactor-pool", _w(500, 550, 1, 5), a(workers=8)),  # GIL about 1.0
        # thread-per-connection
        Case("thread-per-connection", _w(1500, 150, 1, 15), a()),
        Case("thread-per-connection", _w(400, 250, 2, 10, 2), a()),
        Case("thread-per-connection", _w(800, 120, 1, 20), a(processes=2)),
        Case("thread-per-connection", _w(300, 420, 1.8, 5), a()),  # GIL about 1.0
        Case(
            "thread-per-connection", _w(9_000, 100, 1, 10, k=1), a()
        ),  # a thread each; and a backend socket each, under 20,000 files
        # process-per-connection
        Case("process-per-connection", _w(120, 80, 1, 15), a()),
        Case("process-per-connection", _w(300, 150, 2, 10), a()),
        Case("process-per-connection", _w(10_000, 60, 1, 10, k=1), a()),  # a fork each
        Case("process-per-connection", _w(200, 700, 2, 0, 0), a()),  # both cores full
        # thread-pool
        Case("thread-pool", _w(16, 160, 1, 20), a(workers=16)),
        Case("thread-pool", _w(24, 300, 1, 10, 2), a(workers=20, processes=2)),
        Case("thread-pool", _w(10_000, 80, 1, 20, k=1), a(workers=2)),  # holders about 0.9
        # iterative
        Case("iterative", _w(1, 25, 2, 8), a()),
        Case("iterative", _w(2, 30, 1, 5, k=1), a(processes=2)),
        Case("iterative", _w(100, 90, 2, 8, k=1), a()),  # rho about 0.96
        # peers, as the models they resemble
        Case("uvicorn", _w(300, 120, 1, 20), a(processes=2)),
        Case("uvicorn", _w(1000, 300, 1, 10, 2, fanout="parallel"), a()),
        Case("uvicorn", _w(300, 500, 2, 0, 0), a()),  # rho about 1.2
        Case("gunicorn-gthread", _w(60, 100, 1, 20), a(workers=6, processes=2)),
        Case("gunicorn-gthread", _w(200, 150, 1, 15), a(workers=8)),
        Case("gunicorn-sync", _w(4, 60, 1, 15, k=1), a(workers=1, processes=4)),
        # Appended (a case's seeds follow its place, so the cases above keep
        # their arrivals), each at or beyond saturation: rho about 1.05 to
        # 1.15 on the profile of 5 December. None is a fork, a uvicorn loop or
        # a short connection on a fixed set of threads, whose sets the
        # mechanism tests pin with their runs (tests/models/test_mechanisms.py).
        Case("thread-pool", _w(16, 500, 2, 2), a(workers=16)),  # the GIL
        Case("thread-pool", _w(24, 750, 2, 2), a(workers=20, processes=2)),  # the cores
        Case("gunicorn-gthread", _w(200, 400, 2.5, 10), a(workers=8)),  # the GIL
        Case("gunicorn-sync", _w(8, 135, 1, 30, k=1), a(workers=1, processes=4)),  # the workers
        Case("async", _w(2000, 800, 2.5, 10), a(processes=2)),  # both loops
        Case("async", _w(4000, 480, 2, 20, 2, fanout="parallel"), a()),  # the loop
        Case("thread-per-connection", _w(1000, 400, 2.5, 10), a()),  # the GIL
        Case("thread-per-connection", _w(2000, 800, 2.5, 10), a(processes=2)),  # the cores
        Case("reactor-pool", _w(800, 440, 1, 40), a(workers=16)),  # the workers
    ]


# ----------------------------------------------------------------- runtimes


@dataclass(frozen=True)
class Runtime:
    """A runtime calibrated from its own real peers (``simlab calibrate --runtime``).

    ``reference`` is the peer whose process the profile's ``process_kib``
    describes (the plain server of that runtime); another peer's own
    machinery (Tomcat's classes and threads beyond a plain JVM) is recorded
    as its offset. ``os_threads`` is False where the model's threads are not
    the OS threads the probe counts (Go's goroutines). ``fronts`` is the
    front loops a two-tier peer runs (nginx: one worker per core).
    ``served_growth`` fits ``Platform.thread_served_kib``, what a thread
    per connection holds once it has served beyond the idle record's: Go's
    goroutine stacks grow past their idle size and net/http keeps buffers
    per connection; a Java platform thread that has served holds its own
    allocation buffer in the heap's young generation and a grown stack.
    The runtime's grid then has a run with most of its connections served
    (``runtime_grid``), without which that growth and the process's own
    memory moved together (fitted so, the JVM's process memory was not
    identified and java-threads was over-predicted; held at 0, its user
    memory came out 43% low).
    ``loop`` is True where a peer is one event loop per process (Node's): its
    grid then has closed loops of 1 to 64 clients, as cpython's loop servers
    have. From 4 clients on the loop never sleeps, so they set a request's
    own cost (``parse_us``) apart from the wake-up a request pays when it
    finds the loop asleep (``wake_us``, at 1 - busy). Without them the
    busiest run kept the loop about 80% busy, the two costs were nearly
    collinear, and two calibrations of one morning held one or the other
    at the preset's value (``simlab.calibrate_runtime._fit_cpu``).
    ``saturates`` gives the same closed loops to a runtime that is not one
    loop but whose process a closed loop keeps from sleeping (Go's
    scheduler, whose idle threads spin and park). Paced by the timer (6
    December) Go's open runs spent 0.9 ms of CPU a request beyond the burn
    at 60/s and 0.1 ms at 600/s: fitted from the open runs alone (the
    busiest under 1 core of 2) the wake-up and a request's own cost came
    out 57 and 389 us, and the saturated cases were predicted 12 to 15%
    under the rate they served. The JVM's likewise (java-threads 1.8 ms at
    60/s, 0.5 ms at 560/s; its wake-up not identified, held at 0).
    """

    name: str
    peers: tuple[str, ...]
    reference: str
    os_threads: bool = True
    two_tier: bool = False
    served_growth: bool = False
    loop: bool = False
    saturates: bool = False


CORES = os.cpu_count() or 1
RUNTIMES = {
    "jvm": Runtime(
        "jvm", ("java-threads", "tomcat-nio"), "java-threads", served_growth=True, saturates=True
    ),
    "go": Runtime("go", ("go",), "go", os_threads=False, served_growth=True, saturates=True),
    "node": Runtime("node", ("node",), "node", loop=True),
    "php": Runtime("php", ("nginx-php-fpm",), "nginx-php-fpm", two_tier=True),
}
# Run lengths of the runtimes' grids and held-out cases: short, so that one
# runtime's calibration and validation take about ten minutes of real runs.
RUNTIME_SECONDS, RUNTIME_WARMUP = 4.0, 1.5


def _peer_arch(runtime: Runtime, workers: int, processes: int = 1) -> Architecture:
    if runtime.two_tier:
        # PHP-FPM children run one request each: P processes of one thread.
        return Architecture(workers=1, processes=processes, fronts=CORES)
    return Architecture(workers=workers)


def runtime_grid(name: str) -> list[Run]:
    """Each peer of runtime ``name`` light with 0, 1 and 4 backend calls (the
    per-request and per-call costs, the wall-clock overheads), busier (a
    process rarely idle: the wake-up cost), and holding few and many
    connections (memory per connection, and per back process for two-tier,
    whose pool size changes between them); where a thread per connection
    grows once it has served (``Runtime.served_growth``), also most of
    1,000 connections served (that growth apart from the process's own);
    where a peer is one loop (``Runtime.loop``), closed loops of 1 to 64
    clients with no think time (a loop that wakes finds them all ready), and
    likewise where a closed loop keeps the process awake
    (``Runtime.saturates``), where also closed loops of 256 and 1,024
    clients (role "threads": the switch contention) and one of 64 clients
    with four backend calls a request (a call's own cost)."""
    runtime = RUNTIMES[name]
    d, wu = RUNTIME_SECONDS, RUNTIME_WARMUP
    runs = []
    for peer in runtime.peers:
        arch = _peer_arch(runtime, 16, 8)
        for calls in (0, 1, 4):
            w = Workload(connections=50, rate=100.0, cpu=Fixed(0.001), io=Fixed(0.005), calls=calls)
            runs.append(Run(peer, w, arch, "cpu", d, wu))
        w = Workload(connections=200, rate=320.0, cpu=Fixed(0.002), io=Fixed(0.005), calls=1)
        runs.append(Run(peer, w, _peer_arch(runtime, 32, 16), "cpu", d, wu))
        for n, processes in ((200, 4), (3000, 12)):
            w = Workload(connections=n, rate=40.0, cpu=Fixed(0.0005), io=Fixed(0.002), calls=1)
            runs.append(Run(peer, w, _peer_arch(runtime, 16, processes), "memory", 2.0, wu))
        if runtime.served_growth:
            # About 140 requests reach the two runs above: as many served
            # threads at 200 and 3,000 connections, so what serving adds and
            # the process's own memory move together there. Here about three
            # in four of 1,000 connections have served (1,400 requests).
            w = Workload(connections=1000, rate=400.0, cpu=Fixed(0.0005), io=Fixed(0.002), calls=1)
            runs.append(Run(peer, w, _peer_arch(runtime, 16), "memory", 2.0, wu))
        if runtime.loop or runtime.saturates:
            for clients in LOOP_CLIENTS[False]:
                w = Workload(connections=clients, think=RESEND_AT_ONCE, cpu=Fixed(0.001), calls=0)
                runs.append(Run(peer, w, arch, "batch", d, wu))
        if runtime.saturates:
            # The same closed loop with many more clients: as many threads
            # (goroutines) runnable at once on a thread per connection, at
            # most the pool's on Tomcat's, the same connections on both.
            for clients in CONTENTION_CLIENTS:
                w = Workload(connections=clients, think=RESEND_AT_ONCE, cpu=Fixed(0.001), calls=0)
                runs.append(Run(peer, w, arch, "threads", d, wu))
            # Appended 6 December: java-threads' requests on 1,000 threads
            # cost 0.08 ms more than on 100 with a 1 ms burn, 0.3-0.4 ms
            # more with 4 ms, in the request threads' own CPU.
            for clients in CROWDING_CLIENTS:
                w = Workload(
                    connections=clients, rate=CROWDING_RATE, cpu=Fixed(CROWDING_BURN), calls=0
                )
                runs.extend(Run(peer, w, arch, "threads", d, wu) for _ in range(CROWDING_REPEATS))
            # And the loop of 64 with four backend calls of 1 ms a request:
            # the cores still full, so that against the loop without calls
            # only the calls' own cost differs (``call_us``), not a wake-up.
            # From the light runs alone (one run each at 0, 1 and 4 calls,
            # about 15% of a core) Go's came out 205 us on one morning and
            # not identified on the next.
            w = Workload(
                connections=CALL_LOOP[0], think=RESEND_AT_ONCE, cpu=Fixed(0.001),
                io=Fixed(0.001), calls=CALL_LOOP[1],
            )  # fmt: skip
            runs.append(Run(peer, w, arch, "batch", d, wu))
    return runs


def _slow(w: Workload, seconds: float) -> Workload:
    return w.with_(client_send=Fixed(seconds), client_recv=Fixed(seconds))


def runtime_cases(name: str) -> list[Case]:
    """Held-out configurations of runtime ``name``'s peers: none is in its
    grid (other rates, connections, latencies, fan-outs, pools), some at or
    beyond saturation (rho 0.9 to 1.5: a pool too small for its load, or the
    cores or one loop full), two with slow clients (100 ms and 300 ms each
    way)."""
    d, wu = RUNTIME_SECONDS, RUNTIME_WARMUP
    a = Architecture
    cases = {
        "jvm": [
            Case("tomcat-nio", _w(400, 150, 1, 20, 2), a(workers=12), d, wu),
            Case(
                "tomcat-nio", _w(1500, 250, 1.5, 10, 3, fanout="parallel"), a(workers=3), d, wu
            ),  # the pool at 1.1,
            Case("tomcat-nio", _w(300, 220, 1, 20), a(workers=4), d, wu),  # the pool at 1.2
            Case("tomcat-nio", _slow(_w(300, 60, 1, 10), 0.1), a(workers=8), d, wu),
            Case("java-threads", _w(800, 120, 1, 15), a(), d, wu),
            Case("java-threads", _w(2500, 200, 2, 10, 2), a(), d, wu),
            Case("java-threads", _w(300, 560, 2.5, 5), a(), d, wu),  # the cores near 1
            Case("java-threads", _slow(_w(400, 60, 1, 20), 0.3), a(), d, wu),
            # Appended (a case's seeds follow its place): the cores beyond 1
            # on a thousand threads.
            Case("java-threads", _w(1000, 500, 4, 10), a(), d, wu),
        ],
        "go": [
            Case("go", _w(400, 150, 1, 20, 2), a(), d, wu),
            Case("go", _w(3000, 250, 1.5, 10, 3, fanout="parallel"), a(), d, wu),
            Case("go", _w(1000, 300, 2, 30, 1, exp=True), a(), d, wu),
            Case("go", _w(6000, 100, 1, 40), a(), d, wu),
            Case("go", _w(300, 560, 3, 5), a(), d, wu),  # the cores near 1
            Case("go", _w(300, 660, 3, 0, 0), a(), d, wu),  # the cores beyond 1
            Case("go", _slow(_w(300, 60, 1, 10), 0.1), a(), d, wu),
            Case("go", _slow(_w(500, 80, 1, 20), 0.3), a(), d, wu),
            # Appended (a case's seeds follow its place): the cores beyond 1
            # on many connections, their calls in parallel.
            Case("go", _w(2000, 520, 4, 10, 2, fanout="parallel"), a(), d, wu),
            # Appended 6 December: with its burn no longer locked to a thread
            # Go's request costs less, and the model put the case at 560/s
            # at 0.85 of the cores; two more beyond 1 (1.1 and 1.0).
            Case("go", _w(1000, 720, 3, 5), a(), d, wu),
            Case("go", _w(800, 500, 4, 10, 2), a(), d, wu),
        ],
        "node": [
            Case("node", _w(400, 150, 1, 20, 2), a(), d, wu),
            Case("node", _w(3000, 250, 1, 10, 3, fanout="parallel"), a(), d, wu),
            Case("node", _w(1000, 200, 1.5, 30, 1, exp=True), a(), d, wu),
            Case("node", _w(6000, 100, 1, 40), a(), d, wu),
            Case("node", _w(300, 360, 2.5, 5), a(), d, wu),  # the loop near 1
            Case("node", _w(300, 460, 2.5, 0, 0), a(), d, wu),  # the loop beyond 1
            Case("node", _slow(_w(300, 60, 1, 10), 0.1), a(), d, wu),
            Case("node", _slow(_w(500, 80, 1, 20), 0.3), a(), d, wu),
            # Appended (a case's seeds follow its place): the loop beyond 1
            # on many connections, its calls in parallel.
            Case("node", _w(2000, 250, 4.5, 20, 2, fanout="parallel"), a(), d, wu),
        ],
        "php": [
            Case(
                "nginx-php-fpm", _w(400, 150, 1, 20, 2), _peer_arch(RUNTIMES["php"], 1, 10), d, wu
            ),
            Case("nginx-php-fpm", _w(2000, 100, 1.5, 40), _peer_arch(RUNTIMES["php"], 1, 6), d, wu),
            Case(
                "nginx-php-fpm", _w(1000, 200, 1, 10, 3), _peer_arch(RUNTIMES["php"], 1, 20), d, wu
            ),
            Case("nginx-php-fpm", _w(300, 200, 1, 20), _peer_arch(RUNTIMES["php"], 1, 4), d, wu),
            Case("nginx-php-fpm", _w(300, 300, 1, 5, 1), _peer_arch(RUNTIMES["php"], 1, 2), d, wu),
            Case(
                "nginx-php-fpm",
                _w(500, 120, 2, 15, exp=True),
                _peer_arch(RUNTIMES["php"], 1, 8),
                d,
                wu,
            ),
            Case(
                "nginx-php-fpm",
                _slow(_w(300, 60, 1, 10), 0.1),
                _peer_arch(RUNTIMES["php"], 1, 4),
                d,
                wu,
            ),
            Case(
                "nginx-php-fpm",
                _slow(_w(500, 80, 1, 20), 0.3),
                _peer_arch(RUNTIMES["php"], 1, 4),
                d,
                wu,
            ),
            # Appended: three children for 800 connections, the pool at about 1.
            Case("nginx-php-fpm", _w(800, 180, 1, 15, 1), _peer_arch(RUNTIMES["php"], 1, 3), d, wu),
        ],
    }
    return cases[name]


def measure_options(run: Run | Case, seed: int) -> MeasureOptions:
    """How a grid's ``run`` (calibration's or validation's) is measured with
    ``seed``, unsaved: the one place its fields become a measurement's."""
    from simlab.real.measure import MeasureOptions  # noqa: PLC0415 - the lab loads on use

    return MeasureOptions(
        run.target,
        run.workload,
        run.arch,
        duration=run.duration,
        warmup=run.warmup,
        seed=seed,
        save=False,
        switch_interval_ms=run.switch_interval_ms if isinstance(run, Run) else None,
    )
