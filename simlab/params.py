"""The three parameter objects: what clients do, what the machine costs, how the server is built.

Each is a frozen dataclass validated in ``__post_init__``; an error names the
field and the value, e.g. ``workers(=0) must be >= 1``. Times are in seconds
and memory in KiB unless a field name says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from simlab.distributions import Distribution, Fixed, LogNormal
from simlab.errors import UserError
from simlab.overload.policy import Backend, Clients, Limits, Mix
from simlab.overload.schedule import Schedule

__all__ = ["LAB_KEYS", "SCENARIOS", "Architecture", "Platform", "Trace", "Workload"]

Fanout = Literal["sequential", "parallel"]
Hop = Literal["per-request", "kept-alive"]
FirstRead = Literal["loop", "worker"]
Accept = Literal["dealt", "race"]


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def _finite_nonneg(name: str, value: float) -> None:
    _require(
        isinstance(value, int | float) and math.isfinite(value) and value >= 0,
        f"{name}(={value!r}) must be a finite number >= 0",
    )


@dataclass(frozen=True)
class Trace:
    """Replayed arrivals: request ``k`` is sent at ``times[k]`` on connection ``connections[k]``."""

    times: tuple[float, ...]
    connections: tuple[int, ...]

    def __post_init__(self) -> None:
        _require(len(self.times) > 0, "trace must hold at least one request")
        _require(
            len(self.times) == len(self.connections),
            f"trace times ({len(self.times)}) and connections "
            f"({len(self.connections)}) differ in length",
        )
        for k, t in enumerate(self.times):
            _require(math.isfinite(t) and t >= 0, f"trace times[{k}](={t!r}) must be >= 0")
            _require(k == 0 or t >= self.times[k - 1], f"trace times[{k}] goes back in time")
        for k, c in enumerate(self.connections):
            _require(c >= 0, f"trace connections[{k}](={c!r}) must be >= 0")


@dataclass(frozen=True)
class Workload:
    """What the clients do.

    ``connections`` clients each hold one HTTP/1.1 connection and send one
    request at a time (no pipelining): a request for a client whose previous
    request is still outstanding waits at the client, and that wait counts in
    its latency, because latency runs from the intended send time.

    Arrivals are exactly one of: ``rate`` (open, Poisson, total requests/s,
    each request from a uniformly chosen client), ``think`` (closed: each
    client thinks, sends, waits for the answer, thinks again) or ``trace``.

    A request burns ``cpu`` on a thread, then makes ``calls`` backend calls,
    each taking ``io``, one after another or all at once (``fanout``).
    ``requests_per_connection`` None means persistent connections, opened at
    time 0 and never closed; k means a connection closes after k requests and
    the client reconnects for its next one.

    Overload dynamics (``simlab.overload``; all None, the default, changes
    nothing): ``schedule`` makes the open arrivals' rate vary with time
    (``rate`` is then its mean); ``clients`` gives up and retries;
    ``backend`` bounds the backend and gives a fan-out a deadline or hedges;
    ``mix`` makes a share of the requests heavy or blocking.

    Slow clients: ``client_send`` is the time a client takes to send its
    request of ``request_kib`` (a slow link trickles it), ``client_recv`` the
    time it takes to read the answer of ``response_kib``. A server whose
    thread reads and writes the socket itself is held for both; an event loop
    or a buffering front absorbs them and holds only the bytes meanwhile.
    """

    connections: int = 10_000
    rate: float | None = None
    think: Distribution | None = None
    trace: Trace | None = None
    cpu: Distribution = field(default_factory=lambda: Fixed(0.001))
    io: Distribution = field(default_factory=lambda: Fixed(0.050))
    calls: int = 1
    fanout: Fanout = "sequential"
    requests_per_connection: int | None = None
    schedule: Schedule | None = None
    clients: Clients | None = None
    backend: Backend | None = None
    mix: Mix | None = None
    client_send: Distribution = field(default_factory=lambda: Fixed(0.0))
    client_recv: Distribution = field(default_factory=lambda: Fixed(0.0))
    request_kib: float = 1.0
    response_kib: float = 4.0

    def __post_init__(self) -> None:
        _require(
            isinstance(self.connections, int) and self.connections >= 1,
            f"connections(={self.connections!r}) must be an integer >= 1",
        )
        given = [n for n in ("rate", "think", "trace") if getattr(self, n) is not None]
        _require(
            len(given) == 1, f"give exactly one of rate, think or trace (got {given or 'none'})"
        )
        if self.rate is not None:
            _require(
                math.isfinite(self.rate) and self.rate > 0, f"rate(={self.rate!r}) must be > 0"
            )
        if self.think is not None:
            _require(self.think.mean > 0, f"think(mean={self.think.mean!r}) must be > 0")
        if self.trace is not None:
            top = max(self.trace.connections)
            _require(
                top < self.connections,
                f"trace uses connection {top} but connections(={self.connections}) is smaller",
            )
        _require(
            isinstance(self.calls, int) and self.calls >= 0,
            f"calls(={self.calls!r}) must be an integer >= 0",
        )
        _require(
            self.fanout in ("sequential", "parallel"),
            f"fanout(={self.fanout!r}) must be 'sequential' or 'parallel'",
        )
        k = self.requests_per_connection
        _require(
            k is None or (isinstance(k, int) and k >= 1),
            f"requests_per_connection(={k!r}) must be an integer >= 1 or None (persistent)",
        )
        _require(
            self.schedule is None or self.rate is not None,
            "a rate schedule is an open arrival process: give it as the rate",
        )
        _require(
            self.clients is None or not self.clients.active or self.think is None,
            "client timeouts and retries need open arrivals (a rate or a trace), not a think time",
        )
        _finite_nonneg("request_kib", self.request_kib)
        _finite_nonneg("response_kib", self.response_kib)

    @property
    def slow_clients(self) -> bool:
        """True when a client takes time to send its request or read its answer."""
        return self.client_send.mean > 0 or self.client_recv.mean > 0

    @property
    def persistent(self) -> bool:
        return self.requests_per_connection is None

    @property
    def kind(self) -> Literal["open", "closed", "trace"]:
        if self.rate is not None:
            return "open"
        return "closed" if self.think is not None else "trace"

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "connections": self.connections,
            "arrivals": self.kind,
            "rate_rps": self.rate,
            "think": repr(self.think) if self.think is not None else None,
            "trace_requests": len(self.trace.times) if self.trace is not None else None,
            "cpu": repr(self.cpu),
            "io": repr(self.io),
            "calls": self.calls,
            "fanout": self.fanout,
            "requests_per_connection": self.requests_per_connection,
        }
        # Keys of the overload options appear only when one is set, so that
        # every output without them stays as it was.
        for key in ("schedule", "clients", "backend", "mix"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value.describe()
        if self.slow_clients:
            # Only then: a workload without slow clients describes itself as before.
            out["client_send"] = repr(self.client_send)
            out["client_recv"] = repr(self.client_recv)
            out["request_kib"] = self.request_kib
            out["response_kib"] = self.response_kib
        return out

    def with_(self, **changes: Any) -> Workload:
        return replace(self, **changes)


@dataclass(frozen=True)
class Architecture:
    """The server's knobs.

    ``workers`` is the pool size (per process) of ``thread-pool`` and
    ``reactor-pool``; ``processes`` pre-forked copies each run their own threads
    or loop; ``backlog`` bounds the accept or work queue (None: unbounded),
    and whatever overflows it is dropped and counted.

    ``two-tier`` reads them as its back pool: ``processes`` back processes of
    ``workers`` threads each behind one listen queue of ``backlog``; ``fronts``
    is its number of front event loops and ``hop`` whether the front opens a
    connection to the back per request or keeps them alive. ``loops`` is the
    event loops per process of ``async``, each on its own thread (the notes'
    "one process, several threads, coroutines on each thread"). ``limits`` are
    the server's overload controls (``simlab.overload.policy.Limits``).

    ``first_read`` is where ``reactor-pool`` reads a new connection's first
    request: on its loop (``loop``), or on a worker thread that takes the
    connection when it is accepted and blocks in its first read
    (``worker``, as gunicorn's gthread worker does): that worker is held
    from the accept until the first request is served, and only then does the
    connection go to the loop.

    ``accept`` is how pre-forked copies share the persistent connections that
    open together at the start: ``dealt``, each to a copy at random (a hash
    of the connection), so each copy gets about N/P; or ``race``, as
    gunicorn's gthread workers take them, each copy accepting in its own
    loop whenever it runs: which copy takes the next connection depends on
    which took the last (it is awake), so the copies' shares are themselves
    random, drawn per run (a Polya urn's: Dirichlet(1, ..., 1)). Modelled
    with ``first_read='worker'`` only, where it was measured.
    ``accept_shares`` (with ``race``) are the copies' shares as a real run
    measured them (``connections.per_process``), in place of the draw;
    ``accept_map`` which copy took each connection, as a real run measured
    it (``connections.per_connection``), in place of the hashed deal.
    """

    workers: int = 32
    processes: int = 1
    backlog: int | None = None
    limits: Limits | None = None
    loops: int = 1
    fronts: int = 1
    hop: Hop = "per-request"
    first_read: FirstRead = "loop"
    accept: Accept = "dealt"
    accept_shares: tuple[float, ...] | None = None
    accept_map: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        _require(
            isinstance(self.workers, int) and self.workers >= 1,
            f"workers(={self.workers!r}) must be an integer >= 1",
        )
        _require(
            isinstance(self.processes, int) and self.processes >= 1,
            f"processes(={self.processes!r}) must be an integer >= 1",
        )
        _require(
            self.backlog is None or (isinstance(self.backlog, int) and self.backlog >= 0),
            f"backlog(={self.backlog!r}) must be an integer >= 0 or None (unbounded)",
        )
        _require(
            isinstance(self.fronts, int) and self.fronts >= 1,
            f"fronts(={self.fronts!r}) must be an integer >= 1",
        )
        _require(
            self.hop in ("per-request", "kept-alive"),
            f"hop(={self.hop!r}) must be 'per-request' or 'kept-alive'",
        )
        _require(
            isinstance(self.loops, int) and self.loops >= 1,
            f"loops(={self.loops!r}) must be an integer >= 1",
        )
        _require(
            self.first_read in ("loop", "worker"),
            f"first_read(={self.first_read!r}) must be 'loop' or 'worker'",
        )
        _require(
            self.accept in ("dealt", "race"),
            f"accept(={self.accept!r}) must be 'dealt' or 'race'",
        )
        _require(
            self.accept == "dealt" or self.first_read == "worker",
            f"accept(={self.accept!r}) is modelled with first_read='worker' (gthread) only",
        )
        shares = self.accept_shares
        _require(
            shares is None
            or (
                self.accept == "race"
                and len(shares) == self.processes
                and all(math.isfinite(x) and x >= 0 for x in shares)
                and abs(sum(shares) - 1) < 1e-9
            ),
            f"accept_shares(={shares!r}) must be one share per process, >= 0 and summing "
            "to 1, with accept='race'",
        )
        dealt = self.accept_map
        _require(
            dealt is None
            or (
                self.accept == "race"
                and len(dealt) > 0
                and all(
                    isinstance(k, int) and not isinstance(k, bool) and 0 <= k < self.processes
                    for k in dealt
                )
            ),
            f"accept_map(={dealt!r}) must give each connection a process in "
            f"[0, {self.processes}), with accept='race'",
        )

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "workers": self.workers,
            "processes": self.processes,
            "backlog": self.backlog,
        }
        if self.limits is not None:
            out["limits"] = self.limits.describe()
        # Only when set, so that every earlier output (and golden) stays as it was.
        if self.loops != 1:
            out["loops"] = self.loops
        if (self.fronts, self.hop) != (1, "per-request"):
            out["fronts"] = self.fronts
            out["hop"] = self.hop
        if self.first_read != "loop":
            out["first_read"] = self.first_read
        if self.accept != "dealt":
            out["accept"] = self.accept
        if self.accept_shares is not None:
            out["accept_shares"] = list(self.accept_shares)
        if self.accept_map is not None:
            out["accept_map"] = list(self.accept_map)
        return out


# Platform fields that are not numbers of the machine's costs.
FLAGS = ("name", "cores", "gil", "backend_pool")
# A reply's passes before its task resumes (asyncio: 3). Each is a turn of the
# loop for every reply, so a run's events grow with it: bounded.
MAX_LOOP_PASSES = 64
# The platform's fields that describe the lab's own processes beside the
# server (load generator, backend, probe), which calibration measures and
# only validation adds: a server with its machine to itself has them at 0.
LAB_KEYS = (
    "client_cpu_us",
    "client_cpu_us_per_s",
    "client_closed_cpu_us",
    "backend_cpu_us",
    "probe_us",
    "probe_process_us",
)


@dataclass(frozen=True)
class Platform:
    """What the machine and the runtime cost. Presets live in ``simlab.platforms``.

    Memory (KiB), in two parts, because a process's resident set (what ps
    and psutil show) leaves out what the kernel holds for it:

        user     = process_kib + forks*fork_kib + threads*thread_kib
                   + open_connections*connection_kib + in_flight*task_kib
        kernel   = forks*fork_kernel_kib + threads*thread_kernel_kib
                   + open_connections*connection_kernel_kib
        resident = user + kernel (what the machine must have)
        reserved virtual = threads*stack_kib

    A forked child's fork_kib already holds its one thread. Pre-forked copies
    (``processes`` > 1) are forks of one master, so they cost fork_kib each,
    not a whole interpreter. Two costs arrive with first use:

        backend_conn_kib   a thread's (or a loop's) own backend connection, from
                           its first backend call (kernel: connection_kernel_kib)
        fork_touched_kib   a forked child's growth once it serves a request:
                           reference counting writes to the interpreter's pages
                           and copy-on-write makes them private
        fork_call_kib      a forked child's further growth from its first backend
                           call (its socket and the pages the call path writes
                           become private too); children per connection only:
                           pre-forked copies were not measured for it. Fitted
                           with fork_touched_kib from the process-per-connection
                           runs (``simlab.calibrate.fit_forks``); 0 in every preset
        copy_kib           a pre-forked copy's own growth beyond its fork and its
                           first service: what each copy's start and first
                           requests write of the master's pages (its loop or
                           pool, the interpreter's state), which copy-on-write
                           makes private. A single process builds the same in
                           process_kib, so only copies pay it. Fitted from the
                           calibration's copies runs, the same load at 1 and 2
                           processes (``simlab.calibrate.fit_copies``); 0 in
                           every preset
        copy_call_kib      a pre-forked copy's further growth from its first
                           backend call: the call path's writes to the master's
                           pages (a single process's first call costs only its
                           backend_conn_kib). Fitted with copy_kib, from the
                           pairs with and without a call; 0 in every preset
        thread_served_kib  a thread's (or goroutine's) growth once it has served a
                           request: its stack grown past the idle size, the
                           buffers its runtime keeps for it (Go's net/http
                           readers and writers, a JVM thread's allocation
                           buffer). An idle unit's micro-benchmark cannot see
                           it; fitted from loaded runs of the runtimes that
                           hold a thread per connection
                           (``simlab.calibrate_runtime``); 0 in every preset

    What a fork costs the kernel grows with its parent's size: the child gets
    a copy of the parent's page tables (a 4 KiB page of entries per 2 MiB the
    parent has written, about 2 KiB per MiB on x86-64):

        fork_kernel_per_mib  kernel KiB a fork adds per MiB of its parent's user
                           memory, the parent being the server process that
                           forks (``process_kib``); with it, fork_kernel_kib is
                           the law's intercept and every fork (pre-forked copy
                           or child per connection) costs
                           ``fork_kernel_kib + fork_kernel_per_mib * process_kib / 1024``
                           (``fork_kernel``). Measured by forking from parents
                           of several sizes (``simlab.real.forklaw``); 0 (every
                           preset) means a fork costs fork_kernel_kib whatever
                           its parent's size

    and one kernel cost of its own:

        child_kernel_kib   what the kernel holds for a child forked per connection
                           (its task, page tables, files; its one thread
                           included), in place of fork_kernel_kib. The memory
                           micro-benchmark's forks are copies of its own larger
                           parent (more page tables to copy); a small server's
                           children hold less. Fitted from the
                           process-per-connection runs
                           (``simlab.calibrate.fit_child_kernel``); 0 (the default,
                           every preset, and a profile whose children follow the
                           fork law) means ``fork_kernel``

    Wall-clock costs that hold no server resource (microseconds):

        rtt_us             the client and loopback path of one request (send,
                           receive, the load generator's own work)
        call_latency_us    added to every backend call's requested delay
                           (loopback round trip and the backend's timer slack)
        rtt_cv, call_latency_cv  their spread: with cv > 0 each draw is
                           lognormal with that mean and cv (scheduling on a
                           busy machine has a long right tail); 0 means fixed.
                           Calibration fits the means from the light runs'
                           mean latency and the cvs from their latency p50
                           and p99, both through the model: each run
                           simulated as it ran, at a grid of cvs
                           (``simlab.spread``); a cv the runs do not
                           identify is the preset's (0, fixed), an assumption

    Overheads (microseconds of CPU on the thread that pays them):

        context_switch_us  each time a blocked thread wakes to run (once per
                           request plus once per backend call on threaded models)
        switch_contention  extra fraction of a switch per runnable thread queued
                           for the CPU when a phase starts: a switch costs
                           context_switch_us * (1 + switch_contention * runnable).
                           It is the stand-in for cache and TLB pollution and
                           scheduler work that make thread-per-connection collapse
                           under load (SEDA, Welsh et al. 2001, Figure 2).
                           Calibration fits it after gil_poll_us (the GIL's waiters'
                           wake-ups, which also grow with the threads waiting) and
                           gil_handoff_us, on what they leave of
                           thread-per-connection saturated on 8 to 300 threads and
                           the same load on 8 to 2,048, given context_switch_us
                           (the runs identify their product); a calibration whose
                           interval for it includes zero keeps the preset's value
                           as an assumption
        crowding           how much slower a CPU phase runs for each thread
                           queued for the cores (the kernel's run queue, not
                           the GIL's) when it starts: its demand runs
                           (1 + crowding * queued) times as long. Unlike
                           switch_contention it grows with the phase's CPU,
                           not its wake-ups: java-threads' requests on 1,000
                           threads cost 0.08 ms more than on 100 with a 1 ms
                           burn and 0.3-0.4 ms more with a 4 ms burn (6
                           December), in the request threads' own CPU, not
                           the JVM's (its collector and compilers took 1-2%
                           of a core). Calibration fits it where a runtime's
                           grid has loops of many clients at two burns
                           (``calibrate_runtime.fit_contention``);
                           elsewhere it is 0, an assumption
        gil_poll_us        what each timed wake-up of a thread waiting for the
                           GIL costs the thread that holds it. A waiter sleeps
                           on a condition wait of one switch interval
                           (gil_interval_us), wakes, takes the GIL's mutex and
                           sleeps again (CPython's take_gil): W waiters make
                           W / interval wake-ups a second, and the holder's
                           phase runs (1 + W * gil_poll_us / gil_interval_us)
                           times as long, W the waiters when it starts. Why
                           thread-per-connection at 300 threads serves less
                           than at 30 under the same GIL (and why a longer
                           switch interval gives it back). Calibration fits it
                           to the contrast of 300 threads saturated at the
                           switch interval and at ten times it (a difference of
                           log costs, which the machine's speed leaves). 0, or
                           no GIL, or no switch interval (gil_interval_us 0): off
        gil_handoff_us     how long a GIL taken after a wait stays idle before
                           its new holder runs: CPython's dropping thread
                           signals a condition variable, and the waiter it
                           wakes must be scheduled on a core before it takes
                           the GIL (``take_gil``), so under contention each
                           hand-off costs the GIL that much of its time and no
                           core any CPU: a GIL-saturated server would serve
                           less than its CPU per request allows. Fitted with
                           gil_poll_us from the saturated thread runs (a
                           cost the same at any count of threads waiting);
                           0 (off) in every preset
        gil_wake_us        the CPU each of those timed wake-ups takes on a core
                           (the waiter's own, not the holder's): W waiters
                           take W * gil_wake_us / gil_interval_us of a core.
                           Recorded as the server's CPU; while a core is free
                           they run on it beside the holder, but when none is
                           (the cores shared with other processes of the
                           server, a load generator, a backend) they run on
                           the cores the holder needs and its phase takes
                           their time too. A candidate for why
                           thread-per-connection at 300 threads, near
                           saturation on 2 shared cores, fell to two thirds
                           of its rate at a 5 ms switch interval and not at
                           50 ms; at its measured cost it does not reproduce
                           that collapse (``tests/models/test_mechanisms.py``
                           says by how much). Measured directly
                           (``simlab.real.gil_wake``). Off as gil_poll_us is
        wake_us            a phase that finds its process idle: waking a process
                           that slept in the kernel (amortised away under load)
        spawn_us, fork_us  creating a thread or a process per connection: all
                           the CPU it costs (a fork's in parent and child), fitted
                           from CPU per connection. A thread's is paid by the
                           accepting thread; a fork's parent part too
        fork_child_us      the part of fork_us the forked child pays, on a core
                           of its own, before it reads its request (copy-on-write
                           faults as it first touches its pages, Python's
                           after-fork work); the parent's accept loop pays only
                           fork_us - fork_child_us (its os.fork() call), so forks
                           under load run in parallel. Calibrated profiles derive
                           it as fork_us less the parent's os.fork() call, timed by
                           ``simlab measure memory``; 0 in every preset (the
                           whole fork on the accept loop)
        fork_exit_us       how long a forked child lives after its connection
                           closes (its exit: the kernel tears its address space
                           down) before it leaves the process table; it holds
                           its process, thread and memory meanwhile, not a core
                           (its CPU is in fork_child_us). Fitted from the loaded
                           fork runs' thread counts; 0 in every preset
        thread_exit_us     how long a thread made for a connection lives after
                           its connection's last answer: until the client's close
                           is read and the thread has gone. It holds its thread
                           and memory meanwhile, not a core. Fitted from the
                           spawn runs' thread counts as fork_exit_us is from the
                           fork runs; 0 in every preset
        close_wait_us      how long a pool's thread (or an iterative server's
                           only one) waits, after a short connection's last
                           answer, to read the client's close before it can
                           take another connection: the answer's way to the
                           client, the client's close and the FIN's way back.
                           It holds the thread, not a core. Measured in the
                           server at a light load (``simlab.real.close_wait``),
                           a constant: near saturation it was measured
                           somewhat longer. 0 in every preset. A thread per
                           connection's is inside its thread_exit_us
        dispatch_us        a loop handing a request to a worker thread
        task_us            creating a task or coroutine per request (async)
        parse_us           parsing a request and writing its response
        call_us            issuing one backend call and reading its answer
        loop_event_us      what an event loop pays per ready event (reading the
                           request, parsing it, writing the answer) in place of
                           parse_us; 0 means parse_us (no batching modelled).
                           A thread's parse_us also holds its blocking read's
                           wake-up, which a loop that finds the request ready
                           does not pay
        loop_wake_us       what an event loop pays on top of wake_us when it
                           wakes from its poll with nothing run since it slept
                           (epoll_wait returning, walking the ready list, cold
                           caches). Every event ready at that wake-up, and every
                           one that arrives while the loop is busy, is run before
                           it sleeps again and shares it: the loop's batching,
                           which makes its CPU per request fall as load rises.
                           Both are fitted (``simlab.calibrate.fit_batching``)
                           from the loop servers' light runs and closed loops of
                           1 to 64 clients; 0 in every preset
        loop_passes        ``async``'s loops (the other models' keep a queue of
                           phases). 0: a loop runs its requests' CPU phases one
                           after another in arrival order and answers each at
                           its phase's end. k >= 1: it runs in passes, as
                           asyncio does: a pass runs every callback ready at
                           its start, what they schedule waits for the next
                           pass; a request is read in one pass, its task runs
                           in the next and its answer is written a pass later,
                           and a backend reply reaches its task k passes
                           after its bytes are read (asyncio: 3, the reply's
                           read, its reader's step, the task's step; a gather
                           of parallel calls one more). An integer from 0
                           to 64; 0 in every preset. The overload options that change
                           a request's path (``simlab.overload``: a queue
                           deadline, a blocking call, calls one by one) keep
                           the queue of phases
        gil_fifo_share     the share of GIL hand-offs that go to the thread that
                           has waited longest; the others go to any waiting
                           thread (``simlab.models.pool.Gil``). CPython's GIL
                           wakes whichever waiter the OS picks and lets a thread
                           back from its I/O take it first, so waits are not
                           served in order and a waiter can be passed over again
                           and again (the convoy effect): a wider spread of GIL
                           waits, the same mean. 1 (in order) in every preset;
                           a calibrated cpython profile has 0, an assumption
                           read from CPython's source, not fitted
                           (``simlab.calibrate.GIL_HANDOFF``)
        gil_neighbour_share the share of GIL hand-offs, while a process beside the
                           server (the lab's load generator, backend or probe:
                           the ``LAB_KEYS``) holds a core, whose waiter the
                           kernel wakes on that core: it waits until that
                           process blocks (above 0 each is one thread, its
                           runs one after another on the core it holds: its
                           busy period; at 0 its runs queue for cores each on
                           its own), the GIL idle meanwhile, where the model's
                           cores would have let it run on the one the GIL's
                           last holder left; it then runs on the neighbour's
                           core. Nothing without neighbours (a server with its
                           machine to itself). 0 in every preset but
                           cpython's (1, an assumption,
                           ``simlab.platforms.cpython``); calibration fits it
                           from open-loop runs of threads saturating their GIL
                           beside the load generator
                           (``simlab.calibrate.fit_neighbour_share``)
        gil_sibling_share  the share of GIL hand-offs, while another process of
                           the server (a pre-forked copy) runs its own GIL's
                           holder on a core, whose waiter the kernel wakes on
                           that core: it waits there, holding its GIL, until
                           that holder gives the core up (its phase ends or its
                           GIL is taken from it), though the core its own GIL's
                           last holder left may be free meanwhile. Why two
                           copies of a threaded server, each with hundreds of
                           threads on 2 cores, kept only 1.6-1.7 cores busy
                           and served 35-40% less than with each copy pinned
                           to a core of its own (6 December). Nothing with one
                           process, or without cores. 0 in every preset;
                           calibration fits it from saturated two-copy thread
                           runs (``simlab.calibrate.fit_sibling_share``)
        gil_interval_us    CPython's switch interval (``sys.getswitchinterval()``,
                           5 ms): a thread that wants the GIL waits this long
                           from its own request (again, if the GIL changed hands
                           meanwhile) and then asks the holder to drop it, so a
                           phase longer than it is cut while others wait
                           (``simlab.models.pool.Cpu``); 0 means a phase keeps
                           the GIL to its end

    A buffering front (``two-tier``: nginx before PHP-FPM or uWSGI), whose
    costs are nginx's, not the back runtime's:

        front_us           front CPU per request: read and parse the request,
                           pick a back, relay the answer (on a front loop)
        front_byte_ns      front CPU per byte it buffers and relays
        hop_us             front CPU per hop message to the back pool (a
                           per-request hop pays it again to connect)
        hop_latency_us     wall-clock time of one hop message over loopback
        front_process_kib  one front loop's process (an nginx worker)
        front_connection_kib  a client connection held by the front (its
                           kernel part is connection_kernel_kib)

    ``socket_buffer_kib``: what the kernel buffers between a server's write
    and a slow client's read; a blocking writer is held only for the part of
    a slow read beyond it.

    A back process of ``two-tier`` costs what a fork costs on the platform
    (``fork_kib``, ``fork_touched_kib``): the platform is the back's runtime.

    ``cores`` None means unlimited; ``gil`` lets one thread per process run
    Python at a time. ``backend_pool``: the server's threads share a pool of
    backend connections (as Go's database/sql and net/http clients keep), so
    it holds as many as calls were ever in flight at once, not one for each
    thread that has made a call.

    Kernel memory of the server process itself (KiB): ``process_kernel_kib``,
    its page tables and the kernel's own structures for it, what its memory
    cgroup holds before any thread or connection is added.

    The lab's neighbours (microseconds of CPU on the machine's cores, outside
    the server): ``client_cpu_us`` per request sent by a load generator on
    the same machine in an open loop, and ``client_cpu_us_per_s`` a second
    of it whatever its rate (its timers and loop, charged to its requests
    as ``client_cpu_us_per_s / rate`` each), ``client_closed_cpu_us`` in a closed
    one (0: as in an open loop), ``backend_cpu_us`` per backend call served by a backend
    on it; ``probe_us`` per sample of the server's process tree by the lab's
    probe (``simlab.real.probe``, a sample every 0.1 s after the last ends),
    plus ``probe_process_us`` per process in the tree. Zero for a server with
    its machine to itself; calibration measures them so that validation can
    simulate the lab as it ran.
    """

    name: str = "custom"
    cores: int | None = 2
    gil: bool = True
    thread_kib: float = 16.2
    thread_kernel_kib: float = 27.5
    stack_kib: float = 8192.0
    connection_kib: float = 5.9
    connection_kernel_kib: float = 3.2
    task_kib: float = 0.9
    process_kib: float = 20480.0
    fork_kib: float = 748.0
    fork_kernel_kib: float = 238.0
    fork_kernel_per_mib: float = 0.0
    backend_conn_kib: float = 0.0
    fork_touched_kib: float = 0.0
    fork_call_kib: float = 0.0
    copy_kib: float = 0.0
    copy_call_kib: float = 0.0
    thread_served_kib: float = 0.0
    child_kernel_kib: float = 0.0
    rtt_us: float = 0.0
    rtt_cv: float = 0.0
    call_latency_us: float = 0.0
    call_latency_cv: float = 0.0
    context_switch_us: float = 0.95
    wake_us: float = 0.0
    switch_contention: float = 0.05
    crowding: float = 0.0
    spawn_us: float = 33.0
    fork_us: float = 860.0
    fork_child_us: float = 0.0
    fork_exit_us: float = 0.0
    thread_exit_us: float = 0.0
    close_wait_us: float = 0.0
    dispatch_us: float = 30.0
    task_us: float = 9.0
    parse_us: float = 37.0
    call_us: float = 18.5
    gil_interval_us: float = 0.0
    gil_poll_us: float = 0.0
    gil_handoff_us: float = 0.0
    gil_wake_us: float = 0.0
    gil_fifo_share: float = 1.0
    gil_neighbour_share: float = 0.0
    gil_sibling_share: float = 0.0
    loop_event_us: float = 0.0
    loop_wake_us: float = 0.0
    loop_passes: float = 0.0
    process_kernel_kib: float = 0.0
    client_cpu_us: float = 0.0
    # Paced by the timer, an open loop's CPU a request falls with its rate
    # (about 1.2 ms at 30/s, 0.08 ms at 800/s on 6 December): part of it is
    # a second's, not a request's.
    client_cpu_us_per_s: float = 0.0
    # A closed loop sends each request as it reads the last answer, in the
    # same wake-up: measured at a third of an open loop's CPU a request,
    # whose sends each wait for their own timer.
    client_closed_cpu_us: float = 0.0
    backend_cpu_us: float = 0.0
    probe_us: float = 0.0
    probe_process_us: float = 0.0
    # nginx's costs on this machine, placeholders until calibration fits them
    # from the nginx peers (they are assumptions, not measurements).
    front_us: float = 25.0
    front_byte_ns: float = 1.0
    hop_us: float = 20.0
    hop_latency_us: float = 40.0
    front_process_kib: float = 1536.0
    front_connection_kib: float = 0.6
    # A server's send buffer and a slow client's receive buffer on loopback
    # (tcp_wmem's default 16 KiB, the load generator's 4 KiB doubled by the
    # kernel): an answer this small never blocks its writer (an assumption).
    socket_buffer_kib: float = 24.0
    backend_pool: bool = False

    def __post_init__(self) -> None:
        _require(isinstance(self.name, str) and bool(self.name), "platform name must be set")
        _require(
            self.cores is None or (isinstance(self.cores, int) and self.cores >= 1),
            f"cores(={self.cores!r}) must be an integer >= 1 or None (unlimited)",
        )
        _require(isinstance(self.gil, bool), f"gil(={self.gil!r}) must be true or false")
        for f in fields(self):
            if f.name not in FLAGS:
                _finite_nonneg(f.name, getattr(self, f.name))
        _require(
            isinstance(self.backend_pool, bool),
            f"backend_pool(={self.backend_pool!r}) must be true or false",
        )
        _require(
            float(self.loop_passes).is_integer() and self.loop_passes <= MAX_LOOP_PASSES,
            f"loop_passes(={self.loop_passes!r}) must be a whole number of passes from 0 "
            f"to {MAX_LOOP_PASSES}",
        )
        _require(
            self.gil_fifo_share <= 1,
            f"gil_fifo_share(={self.gil_fifo_share!r}) must be between 0 and 1",
        )
        _require(
            self.gil_neighbour_share <= 1,
            f"gil_neighbour_share(={self.gil_neighbour_share!r}) must be between 0 and 1",
        )
        _require(
            self.gil_sibling_share <= 1,
            f"gil_sibling_share(={self.gil_sibling_share!r}) must be between 0 and 1",
        )
        _require(
            self.fork_kib >= self.thread_kib and self.fork_kernel >= self.thread_kernel_kib,
            f"fork_kib(={self.fork_kib}) and fork_kernel_kib(={self.fork_kernel_kib}) (plus "
            f"fork_kernel_per_mib(={self.fork_kernel_per_mib}) per MiB of process_kib) must be "
            f">= thread_kib(={self.thread_kib}) and thread_kernel_kib(={self.thread_kernel_kib}): "
            "a forked child includes its thread",
        )
        _require(
            self.child_kernel_kib == 0 or self.child_kernel_kib >= self.thread_kernel_kib,
            f"child_kernel_kib(={self.child_kernel_kib}) must be 0 (fork_kernel_kib) or >= "
            f"thread_kernel_kib(={self.thread_kernel_kib}): a forked child includes its thread",
        )
        _require(
            self.fork_child_us <= self.fork_us,
            f"fork_child_us(={self.fork_child_us}) must be <= fork_us(={self.fork_us}): "
            "it is the child's part of the fork",
        )

    @classmethod
    def numeric_fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name not in FLAGS)

    def describe(self) -> dict[str, Any]:
        # The mechanisms' parameters only when set, so that every output of a
        # platform without them (and every golden) stays as it was.
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in MECHANISMS or getattr(self, f.name) != f.default
        }

    @property
    def fork_kernel(self) -> float:
        """Kernel KiB of a fork of the server process (a pre-forked copy), its
        thread included: the intercept plus the parent's page tables."""
        return self.fork_kernel_kib + self.fork_kernel_per_mib * self.process_kib / 1024.0

    @property
    def child_kernel(self) -> float:
        """Kernel KiB of a child forked per connection, its thread included."""
        return self.child_kernel_kib or self.fork_kernel

    @property
    def loop_parse_us(self) -> float:
        """What an event loop pays per request for reading, parsing and answering it."""
        return self.loop_event_us or self.parse_us

    @property
    def gil_poll(self) -> float:
        """What each thread waiting for a GIL slows its holder by (a fraction of
        the holder's time): its wake-ups' cost over the switch interval; 0
        without a GIL or a switch interval."""
        if not (self.gil and self.gil_interval_us > 0):
            return 0.0
        return self.gil_poll_us / self.gil_interval_us

    @property
    def gil_wake(self) -> float:
        """The share of a core each thread waiting for a GIL takes with its
        wake-ups; 0 without a GIL or a switch interval."""
        if not (self.gil and self.gil_interval_us > 0):
            return 0.0
        return self.gil_wake_us / self.gil_interval_us

    @property
    def batching(self) -> bool:
        """True when an event loop's costs differ from a thread's (``loop_event_us``,
        ``loop_wake_us``): the loop shares its wake-ups among the events ready."""
        return self.loop_event_us > 0 or self.loop_wake_us > 0

    def rtt(self) -> Distribution:
        """The client and loopback path's time per request (seconds)."""
        return _jitter(self.rtt_us * 1e-6, self.rtt_cv)

    def call_latency(self) -> Distribution:
        """The time a backend call adds to its requested delay (seconds)."""
        return _jitter(self.call_latency_us * 1e-6, self.call_latency_cv)

    def with_(self, **changes: Any) -> Platform:
        return replace(self, **changes)


# Parameters of the mechanisms added for the validation's worst misses (event-loop
# batching, a forked child's first call, the GIL's hand-off); left out of
# ``describe`` while they are at their defaults (the mechanism off).
MECHANISMS = (
    "crowding",
    "loop_event_us",
    "loop_wake_us",
    "loop_passes",
    "fork_call_kib",
    "copy_kib",
    "copy_call_kib",
    "fork_child_us",
    "fork_exit_us",
    "thread_exit_us",
    "close_wait_us",
    "gil_fifo_share",
    "gil_neighbour_share",
    "gil_sibling_share",
    "thread_served_kib",
    "backend_pool",
    "child_kernel_kib",
    "fork_kernel_per_mib",
    "client_closed_cpu_us",
    "client_cpu_us_per_s",
    "gil_poll_us",
    "gil_handoff_us",
    "gil_wake_us",
)


def _jitter(mean: float, cv: float) -> Distribution:
    return LogNormal(mean, cv=cv) if mean > 0 and cv > 0 else Fixed(mean)


def c10k_workload() -> Workload:
    """The notes' C10K case: 10,000 mostly idle persistent connections,
    100 requests/s, 1 ms of CPU and one 50 ms database call per request."""
    return Workload(connections=10_000, rate=100.0, cpu=Fixed(0.001), io=Fixed(0.050), calls=1)


def ad_service_workload(fanout: Fanout = "sequential") -> Workload:
    """The notes' ad service: an app's ad request fills 3 slots from 20
    vendors each, 60 backend calls of 100 ms, at 1000 requests/s.

    The requests come from a large population of app users, each opening a
    connection for its request (``requests_per_connection=1``). Ten million
    clients make it rare (about 0.06% at 6 s per request) that a user's next
    request finds the previous one still in flight, so that the client-side
    wait stays out of the p99, as in the notes' arithmetic (1000/s x 6 s =
    6000 threads).
    """
    return Workload(
        connections=10_000_000,
        rate=1000.0,
        cpu=Fixed(0.001),
        io=Fixed(0.100),
        calls=60,
        fanout=fanout,
        requests_per_connection=1,
    )


# The built-in scenarios, by the name the CLI and sweep files use.
SCENARIOS: dict[str, Callable[[], Workload]] = {
    "c10k": c10k_workload,
    "ad-service": ad_service_workload,
    "ad-service-parallel": lambda: ad_service_workload("parallel"),
}
