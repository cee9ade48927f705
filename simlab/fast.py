"""The fast engine: first-come-first-served queues by recursion instead of events.

For the configurations that reduce to FCFS multi-server queues, a request's
start is the Kiefer-Wolfowitz recursion: it starts when it arrives or when
the earliest of its servers frees up, whichever is later. Kept as a heap of
the servers' free times, that costs two heap operations per request and no
event at all. The engine reproduces the DES's own random streams
(``simlab.streams``: the same children, drawn in the same batches), its deal
of connections to processes, its client queues (a client sends one request
at a time), its choice of server (the most recently freed one first, FIFO
hand-over to waiters) and its costs (the model's ``request_cost``), and then
builds the same ``Record`` the DES does, so every output, threads and memory
included, comes from the same code in ``metrics`` and ``simulation``.

Which configurations qualify is each model's ``fast_reason``; how the kernel
runs it, its ``fast_mode`` (``simlab.models.base.FastMode``).
"""

from __future__ import annotations

import numpy as np
import simpy

from simlab.errors import UserError
from simlab.models import MODELS, get_model
from simlab.models.base import BATCH, COMPLETED, PENDING, US, Model, Record, draw_io
from simlab.models.dedicated import Dedicated
from simlab.params import LAB_KEYS, Architecture, Platform, Workload
from simlab.streams import Streams, deal, hand_off_draws

__all__ = ["EventBuffers", "reason_not_fast", "run_fast_replication", "uses_events"]


class EventBuffers:
    """The event loop's output and per-connection buffers, kept from one
    replication to the next.

    At a million requests the loop's columns, the connections' tables and
    the CPU's busy intervals are each several MiB to tens of MiB. Allocated
    by the loop itself, each replication's were fresh memory faulted in 4 KiB
    page by page (at 5 replications of a million requests on the default
    platform, 55,000 faults in the loop, some 2.6 us each; 9,000 with these);
    allocated here by numpy, large buffers are backed by huge pages where the
    kernel offers them, and kept, the next replication writes the same pages.
    A replication's ``Record`` reads its columns and intervals from these
    buffers, so a caller passes the same ``EventBuffers`` to the next
    replication only once it has let the previous record's arrays go
    (``simulate`` without tables does).
    """

    def __init__(self) -> None:
        self.floats = np.empty((9, 0))
        self.ints = np.empty((6, 0), np.int64)
        self.outcome = np.empty(0, np.int8)
        self.starts = np.empty(0)
        self.ends = np.empty(0)

    @staticmethod
    def _spare(size: int) -> int:
        # An eighth to spare: replications of one run differ by a few
        # requests, and a next one a little longer would otherwise allocate
        # again. Pages never written are never faulted in: the spare costs
        # address space only.
        return size + size // 8

    def room(self, requests: int, connections: int, phases: int) -> tuple[np.ndarray, ...]:
        """``run_events``' buffers (floats, ints, outcome, CPU starts and ends)
        for ``requests`` requests on ``connections`` connections and
        ``phases`` CPU phases, the ones kept when long enough."""
        if self.floats.shape[1] < requests + 1:
            self.floats = np.empty((9, self._spare(requests + 1)))
            self.outcome = np.empty(self.floats.shape[1], np.int8)
        if self.ints.shape[1] < max(requests, connections):
            self.ints = np.empty((6, self._spare(max(requests, connections))), np.int64)
        if len(self.starts) < phases:
            size = self._spare(phases)
            self.starts, self.ends = np.empty(size), np.empty(size)
        return self.floats, self.ints, self.outcome, self.starts, self.ends


def reason_not_fast(
    model: str, workload: Workload, platform: Platform, arch: Architecture
) -> str | None:
    """None when the fast engine reproduces the DES for this configuration, else why not.

    The one place that says what the fast engine covers: first the model's
    own structure (``Model.fast_reason``), then every mechanism of the
    platform and the workload that its kernels do not run. A new mechanism
    the kernels do not reproduce adds its refusal here.

    Covered: a loop's per-event cost (``loop_event_us``), a constant both
    engines charge through ``request_cost``; its wake-up shared by a batch
    (``loop_wake_us``) and a process's wake-up (``wake_us``), which the event
    loop (``simlab.fast_events``) tracks as ``Cpu.run`` does; and a GIL
    handed out of order (``gil_fifo_share`` < 1), whose uniforms both
    engines read in the same order from one stream drawn ahead
    (``simlab.streams.HandOffs``); the GIL's waiters' wake-ups
    (``gil_poll_us``), a factor on the holder's phase from the waiters it
    finds, as ``Cpu.run`` applies it, and their CPU (``gil_wake_us``):
    recorded where a core is free, on the holder's phase where none is, as
    the compiled loop sees its free cores as the DES does; the GIL's
    hand-off (``gil_handoff_us``), a wait after each wait for it, as
    ``Cpu.run`` and ``Cpu._sliced`` wait; a hand-off woken on the core
    another copy's holder runs on (``gil_sibling_share``), whose uniforms
    both read from the ``place`` stream at the same hand-offs; and ``async``'s
    loops run in passes (``loop_passes``), each loop's driver an entity of
    the compiled loop, as ``simlab.models.async_.Passes`` is a SimPy process;
    and persistent connections' threads or children made as the run starts
    (``Dedicated.forks_at_start``), each process's accepting thread an
    entity too, as ``Dedicated._fork_all`` is a process.
    """
    cls = get_model(model)
    reason = cls.fast_reason(workload, platform, arch)
    if reason is not None and cls.fast_mode is None:
        fast = ", ".join(name for name, m in MODELS.items() if m.fast_mode is not None)
        reason += f" (fast: {fast})"
    if reason is not None:
        return reason
    if platform.cores is not None and platform.crowding > 0:
        return (
            "a phase slowed by the threads queued for the cores (crowding) is not in the "
            "fast engine (fast needs crowding 0)"
        )
    if platform.cores is not None and any(getattr(platform, k) > 0 for k in LAB_KEYS):
        return (
            "a load generator, backend or probe sharing the cores ("
            + ", ".join(LAB_KEYS)
            + ") is not in the fast engine (fast needs all 0)"
        )
    return None


def uses_events(model: str, workload: Workload, platform: Platform, arch: Architecture) -> bool:
    """True when the run needs the compiled event loop (``simlab.fast_events``),
    as the model says (``Model.fast_events``)."""
    return get_model(model).fast_events(workload, platform, arch)


class _Inputs:
    """Per-request arrivals and demands, drawn exactly as ``Model`` draws them.

    ``arrival`` holds the send times (a trace's own times: the event loop
    replays how the DES waits for each); ``is_trace`` says which."""

    def __init__(
        self, workload: Workload, platform: Platform, seed: np.random.SeedSequence, stop: float
    ) -> None:
        w = workload
        streams = Streams.of(seed)
        self.salt = streams.salt
        assert streams.gil is not None
        self.gil = streams.gil  # the GIL's hand-offs (``HandOffs``), drawn on demand
        # Where a GIL's waiter is woken (``Cpu._beside_sibling``), drawn on demand.
        assert streams.place is not None
        self.place = streams.place
        self.is_trace = w.kind != "open"
        if w.kind == "open":
            assert w.rate is not None
            time_parts: list[np.ndarray] = []
            conn_parts: list[np.ndarray] = []
            now, gap_mean = 0.0, 1.0 / w.rate
            while now < stop:
                gaps = streams.arrival.exponential(gap_mean, BATCH)
                batch = streams.connection.integers(0, w.connections, BATCH)
                # The DES advances its clock gap by gap; a cumulative sum adds in
                # the same order, so the times are the same floating-point numbers.
                sent = np.cumsum(np.concatenate(([now], gaps)))[1:]
                keep = int(np.searchsorted(sent, stop, side="left"))
                time_parts.append(sent[:keep])
                conn_parts.append(batch[:keep])
                now = float(sent[-1]) if keep == BATCH else stop
            times = np.concatenate(time_parts) if time_parts else np.empty(0)
            conns = np.concatenate(conn_parts) if conn_parts else np.empty(0, np.int64)
        else:
            assert w.trace is not None
            all_times = np.asarray(w.trace.times, dtype=np.float64)
            end = int(np.searchsorted(all_times, stop, side="left"))
            times = all_times[:end]
            conns = np.asarray(w.trace.connections[:end], dtype=np.int64)
        n = len(times)
        self.arrival = times
        # Open arrivals' ids are int64 already, and this run's own: not copied.
        self.connection = conns if w.kind == "open" else conns.astype(np.int64)
        demand: list[np.ndarray] = []
        io: list[np.ndarray] = []
        call_latency = platform.call_latency()
        drawn = 0
        while drawn < n:
            demand.append(w.cpu.sample(streams.cpu, BATCH))
            io.append(draw_io(w, call_latency, streams.io, streams.slack))
            drawn += BATCH
        self.demand = np.concatenate(demand)[:n] if demand else np.empty(0)
        self.io = np.concatenate(io)[:n] if io else np.empty(0)


def run_fast_replication(
    model: str,
    workload: Workload,
    platform: Platform,
    arch: Architecture,
    *,
    duration: float,
    warmup: float,
    seed: int,
    replication: int,
    seed_seq: np.random.SeedSequence,
    horizon: float,
    buffers: EventBuffers | None = None,
) -> Record:
    """One replication by recursion: the same ``Record`` as ``run_replication``.

    ``buffers``: where the event loop writes its columns and intervals,
    reused across replications (see ``EventBuffers``); None, fresh ones."""
    reason = reason_not_fast(model, workload, platform, arch)
    if reason is not None:
        raise UserError(f"--engine fast does not apply: {reason}")
    cls = get_model(model)
    stop = warmup + duration
    cls.check_request_cap(workload, stop)
    # The model instance gives the constant levels, flags and persistent owners
    # the DES records; its constructor draws nothing, but it spawns its streams
    # from its seed (which deals connections to processes), so it gets a copy
    # of this replication's, and the inputs below spawn the same children.
    copy = np.random.SeedSequence(
        seed_seq.entropy,
        spawn_key=seed_seq.spawn_key,
        pool_size=seed_seq.pool_size,
        n_children_spawned=seed_seq.n_children_spawned,
    )
    shell = cls(simpy.Environment(), workload, platform, arch, seed=copy, stop=stop)
    inputs = _Inputs(workload, platform, seed_seq, stop)
    if uses_events(model, workload, platform, arch):
        return _run_events(
            cls, shell, workload, platform, arch, inputs,
            replication=replication, seed=seed, window=(warmup, stop), horizon=horizon,
            buffers=buffers if buffers is not None else EventBuffers(),
        )  # fmt: skip
    (admit, start, end, service, cpu, worker, process, cpu_start, cpu_dur, conn_open,
     conn_close) = _run_kernel(cls, workload, platform, arch, inputs)  # fmt: skip
    late = end > horizon
    outcome = np.where(late, PENDING, COMPLETED).astype(np.int8)
    end[late] = np.nan
    service[late] = np.nan
    start[start > horizon] = np.nan
    columns = {
        "arrival": inputs.arrival,
        "admit": admit,
        "start": start,
        "end": end,
        "service": service,
        "cpu_time": cpu,
        "connection": inputs.connection,
        "worker": worker,
        "process": process,
        "outcome": outcome,
    }
    intervals = {
        "connections": (conn_open, conn_close),
        "threads": (np.empty(0), np.empty(0)),
        "forks": (np.empty(0), np.empty(0)),
        "cpu": (cpu_start, cpu_start + cpu_dur),
    }
    return Record(
        model=model,
        replication=replication,
        seed=seed,
        window=(warmup, stop),
        horizon=horizon,
        columns=columns,
        intervals=intervals,
        base=shell.base_levels(),
        busy_on_cpu=cls.busy_on_cpu,
        overloaded=False,
        truncated=False,
        calls=workload.calls,
        own_process=cls.own_process,
        worker_is_thread_handle=shell.worker_is_thread_handle(),
        salt=inputs.salt,
        engine="fast",
    )


def _run_events(  # noqa: PLR0917 - the run's parts, as _run_kernel takes them
    cls: type[Model],
    shell: Model,
    workload: Workload,
    platform: Platform,
    arch: Architecture,
    inp: _Inputs,
    *,
    replication: int,
    seed: int,
    window: tuple[float, float],
    horizon: float,
    buffers: EventBuffers,
) -> Record:
    """One replication by the compiled event loop: the DES's own events, in its order."""
    from simlab.kernels import run_events  # noqa: PLC0415 - built ahead of time, or numba

    assert cls.fast_mode is not None
    p, w = platform, workload
    cost = cls.request_cost(w)
    n = len(inp.arrival)
    by_accept = _by_accept(n, arch.processes, inp.salt)
    fronts, front_in, front_out, hop_in, hop_out = cls.fast_front(w, p, arch)
    # Connections are dealt to processes, or to a front's loops when it has one.
    by_conn = deal(inp.connection, fronts or arch.processes, inp.salt)
    owners = shell.fast_owners(inp.connection)
    owner, owner_proc = owners if owners is not None else (by_conn, by_conn)
    # Dense connection ids: the loop keeps per-connection state in arrays.
    n_conns, dense = _dense_ids(inp.connection)
    acc_cost, child_start, acc_order, acc_bounds, acc_procs = _acceptors(
        cls, w, p, arch, inp, dense
    )
    made = np.empty(len(acc_order))
    # Room for the CPU phases: each request's own, and the GIL's slices; twice
    # that when the GIL's waiters' CPU may be recorded beside each phase; and
    # the acceptors' phases, one a connection.
    room = (n * (4 + w.calls) + len(acc_order)) * (2 if p.gil_wake > 0 else 1) + 64
    # A GIL handed out of order reads ``HandOffs``' uniforms: about one per
    # request to start with, more (continuing the same stream) if it runs out.
    fifo = p.gil_fifo_share if p.gil else 1.0
    draws = hand_off_draws(inp.gil, n + 1) if fifo < 1 else np.empty(0)
    # A hand-off woken on another copy's core reads up to two uniforms of the
    # ``place`` stream, as ``Cpu._beside_sibling`` reads them one by one; with
    # one process there is no other copy, and nothing to draw.
    copies = p.gil and p.cores is not None and arch.processes + fronts > 1
    sibling = p.gil_sibling_share if copies else 0.0
    pdraws = inp.place.random(2 * n + 2) if sibling > 0 else np.empty(0)
    while True:
        (sent, arrival, admit, start, end, service, cpu, worker, process, outcome, let_go, ended,
         busy_start, busy_end, conn_open, conn_close, overloaded, truncated, full,
         n_made) = run_events(
            int(cls.fast_mode),
            inp.arrival,
            inp.is_trace,
            window[1],
            horizon,
            inp.connection,
            dense,
            n_conns,
            *buffers.room(n, n_conns, room),
            inp.demand,
            inp.io,
            arch.processes,
            cls.fast_servers(arch),
            by_accept,
            by_conn,
            p.cores if p.cores is not None else 0,
            p.gil,
            p.context_switch_us * 1e-6,
            p.switch_contention,
            p.gil_poll,
            p.gil_wake,
            p.wake_us * 1e-6,
            p.gil_interval_us * 1e-6 if p.gil else 0.0,
            p.call_us * US,
            w.calls,
            w.fanout == "sequential",
            p.context_switch_us > 0,
            cost.loop_s(p),
            cost.thread_s(p),
            w.requests_per_connection or 0,
            cls.max_requests,
            cls.max_in_system,
            owner,
            owner_proc,
            cls.own_process,
            fronts,
            front_in,
            front_out,
            hop_in,
            hop_out,
            p.loop_wake_us * 1e-6,
            fifo,
            draws,
            int(p.loop_passes),
            p.gil_handoff_us * 1e-6 if p.gil else 0.0,
            acc_cost,
            acc_order,
            acc_bounds,
            acc_procs,
            made,
            child_start,
            sibling,
            pdraws,
        )  # fmt: skip
        if not full:
            break
        room *= 4
        if fifo < 1:
            draws = np.concatenate((draws, hand_off_draws(inp.gil, 3 * len(draws))))
        if sibling > 0:
            pdraws = np.concatenate((pdraws, inp.place.random(3 * len(pdraws))))
    columns = {
        "arrival": arrival,
        "admit": admit,
        "start": start,
        "end": end,
        "service": service,
        "cpu_time": cpu,
        "connection": inp.connection if sent == n else inp.connection[:sent].copy(),
        "worker": worker,
        "process": process,
        "outcome": outcome,
        "let_go": let_go,
    }
    # The threads (or children) the acceptors made, in the order they made them
    # (``open_interval``).
    threads = (made[:n_made].copy(), np.full(n_made, np.inf))
    intervals = {
        "connections": (conn_open, conn_close),
        "threads": threads,
        "forks": threads if cls.own_process else (np.empty(0), np.empty(0)),
        "cpu": (busy_start, busy_end),
    }
    return Record(
        model=cls.name,
        replication=replication,
        seed=seed,
        window=window,
        horizon=horizon,
        columns=columns,
        intervals=intervals,
        base=shell.base_levels(),
        busy_on_cpu=cls.busy_on_cpu,
        overloaded=bool(overloaded),
        truncated=bool(truncated),
        calls=w.calls,
        own_process=cls.own_process,
        worker_is_thread_handle=shell.worker_is_thread_handle(),
        salt=inp.salt,
        engine="fast",
        end_order=ended,
    )


def _acceptors(  # noqa: PLR0917 - the run's parts, as _run_events has them
    cls: type[Model],
    workload: Workload,
    platform: Platform,
    arch: Architecture,
    inp: _Inputs,
    dense: np.ndarray,
) -> tuple[float, float, np.ndarray, np.ndarray, np.ndarray]:
    """The acceptors that make persistent connections' threads or children
    as the run starts (``Dedicated.forks_at_start``; ``_fork_all``), for the
    event loop: the accepting thread's cost a connection (0: none), a forked
    child's own start, every connection's dense id (-1: it never sends) in
    the order the acceptors take them, each acceptor's first place in that
    order (and the end), and each one's process, in the order the DES starts
    them (by its first connection)."""
    none = np.empty(0, np.int64)
    if not issubclass(cls, Dedicated) or not cls.forks_at_start(workload, platform):
        return 0.0, 0.0, none, np.zeros(1, np.int64), none
    n = workload.connections
    of_conn = np.full(n, -1, np.int64)
    of_conn[inp.connection] = dense
    # Each connection's process, as the DES's ``Dealer`` deals it.
    of = (
        deal(np.arange(n, dtype=np.uint64), arch.processes, inp.salt).astype(np.int64)
        if arch.processes > 1
        else np.zeros(n, np.int64)
    )
    # The DES starts an acceptor a process, in the order of their first connections.
    procs = of[np.sort(np.unique(of, return_index=True)[1])]
    mine = [of == q for q in procs]
    order = np.concatenate([of_conn[m] for m in mine])
    bounds = np.concatenate(([0], np.cumsum([np.count_nonzero(m) for m in mine])))
    cost, child, _ = cls.accept_split(workload, platform)
    return cost, child, order, bounds.astype(np.int64), procs.astype(np.int64)


def _by_accept(n: int, processes: int, salt: int) -> np.ndarray:
    """The process each of ``n`` accepts lands on (``deal`` by the accept's
    index): with one process, no index array to hash."""
    if processes == 1:
        return np.zeros(n, dtype=np.int64)
    return deal(np.arange(n, dtype=np.uint64), processes, salt)


def _dense_ids(ids: np.ndarray) -> tuple[int, np.ndarray]:
    """How many distinct ids, and each id's number in the order the ids first
    appear (0 for the first id seen, 1 for the next new one, ...), by the
    compiled hash table ``fast_kernel.dense_ids``.

    The kernels keep per-connection state in arrays by this number; numbered
    by first appearance, a new connection's slot is the next one along, so an
    arrival reads memory the prefetcher has brought in. Numbered by the ids'
    sorted order, as ``np.unique``'s inverse does, every arrival of many
    distinct connections read a random slot: perf put about a sixth of the
    default platform's event loop on that one cache miss. Which number an id
    gets changes nothing else: the slots are only ever looked up by it.
    """
    from simlab.kernels import dense_ids  # noqa: PLC0415 - built ahead of time, or numba

    count, dense = dense_ids(np.ascontiguousarray(ids, dtype=np.int64))
    return int(count), dense


def _run_kernel(
    cls: type[Model], workload: Workload, platform: Platform, arch: Architecture, inp: _Inputs
) -> tuple[np.ndarray, ...]:
    """The model's costs, as its ``request_cost`` charges them, and the loop."""
    # Built ahead of time, or numba's JIT (a moment to import): only runs that
    # use the fast engine pay for it.
    from simlab.kernels import recurse  # noqa: PLC0415

    assert cls.fast_mode is not None
    p = platform
    cost = cls.request_cost(workload)
    fixed = cost.thread_s(p)
    switch_cost = cost.switch_s(p)
    loop_cost = cost.loop_s(p)
    pays = cost.switches > 0 and p.context_switch_us > 0
    workers = cls.fast_servers(arch)
    # Which process each request lands on, dealt as the DES deals: by the
    # order of accepts when a thread-pool takes connections in turn, else by
    # the connection's id.
    n = len(inp.arrival)
    by_accept = _by_accept(n, arch.processes, inp.salt)
    by_conn = deal(inp.connection, arch.processes, inp.salt)
    # Dense connection ids: the loop keeps per-connection state in arrays.
    n_conns, dense = _dense_ids(inp.connection)
    out: tuple[np.ndarray, ...] = recurse(
        int(cls.fast_mode),
        inp.arrival,
        inp.connection,
        dense,
        n_conns,
        inp.demand + fixed,
        inp.io,
        arch.processes,
        workers,
        by_accept,
        by_conn,
        switch_cost,
        pays,
        loop_cost,
        workload.requests_per_connection or 0,
    )
    return out
