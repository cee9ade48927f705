"""``simlab measure``: one real run of a server under the load generator, summarised.

The run: start the backend, start the server (one of the six, or a peer),
start the probe, run the load generator in its own process (connect, warm
up, measure), then stop everything by process id, and check that the
server's port is free again. The summary has the same keys as
``simlab simulate``, measured instead of simulated, and is saved with its
parameters, machine and git revision under ``data/measurements/``.

How each number is obtained:
- latency: HdrHistogram of (answer time - intended send time), coordinated
  omission corrected; its mean's 95% CI from 10 batch means over the window;
- queueing delay: latency minus the server's own time on the work
  (``x-service-us``), so it holds every wait: client, accept, worker, GIL, loop;
- throughput: answers inside the window / its length;
- threads, fds, processes: the probe's samples of the process tree;
- threads busy: throughput x mean service time (Little's law) for threaded
  servers; for async, loops busy = the tree's CPU seconds per second;
- memory, with the simulation's meanings: user = the tree's PSS (shared
  pages split, so forks are not double counted); kernel = the server's own
  kernel memory, from the memory cgroup it runs in (``simlab.real.kernel``:
  its threads, sockets and page tables, not the load generator's or the
  backend's); resident = user + kernel; reserved virtual = the tree's VMS;
- in flight: the load generator's own count, sampled every 10 ms, which
  lets Little's law be checked against throughput x mean latency;
- the machine's speed (``speed_reference``): ``simlab.real.speed``'s
  reference measured right before the backend starts and right after
  everything has stopped, inside the real-run lock, so that runs of
  different sessions can be told apart by their machine's speed.

With overload options (``simlab.overload``) the load generator follows the
rate schedule, gives up and retries as the workload's ``clients`` say, the
server gets its limits and the backend its pool, and the summary gains the
per-second ``timeline`` and the ``overload`` block (``simlab.overload.measured``);
``throughput_rps`` then counts every answer the server sent, late ones on
connections their client had given up included, as the simulation does.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil

from simlab.distributions import Exponential
from simlab.errors import RunFailed, UserError
from simlab.measured import (
    ConnectionCounts,
    HistogramBlock,
    InFlight,
    LabCpu,
    Little,
    MeasuredMemory,
    MeasuredStability,
    MeasuredSummary,
    MeasuredThreads,
    Peak,
    RunQueue,
    SendDelay,
    SpeedReference,
    SwitchRates,
)
from simlab.overload.policy import in_play
from simlab.params import Architecture, Trace, Workload
from simlab.paths import measurements_dir
from simlab.provenance import atomic_write_json, git_revision, machine, utc_stamp
from simlab.real import loadgen, peers
from simlab.real.kernel import KernelAccount
from simlab.real.limits import check_fits, raise_fd_limit
from simlab.real.lock import exclusive
from simlab.real.options import SERVER_MODELS, SWITCH_INTERVAL_S
from simlab.real.pacing import DEFAULT_PACING, PACINGS
from simlab.real.probe import (
    AcceptSplit,
    Probe,
    ThreadCounts,
    machine_busy_s,
    run_queue_waits,
    thread_switch_rates,
    thread_switches,
)
from simlab.real.processes import Managed, free_port, port_is_free, python, share_priority
from simlab.real.speed import WORK as SPEED_WORK
from simlab.real.speed import SpeedWatch, measure_speed
from simlab.stats import ci95, positive_ci95

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TARGETS", "MeasureOptions", "Measurement", "measure", "still_making"]

TARGETS = (*SERVER_MODELS, *peers.ALL_PEERS)
# The servers that keep a record of their close waits (``ServerOptions.close_waits``):
# simlab's own, whose threads read a connection to its end (a forked child's
# record would stay in the child).
CLOSE_WAIT_SERVERS = ("iterative", "thread-pool", "thread-per-connection")
QUERY_POOL = 20_000


@dataclass(frozen=True)
class MeasureOptions:
    target: str
    workload: Workload
    architecture: Architecture
    duration: float = 10.0
    warmup: float = 2.0
    seed: int = 1
    timeout: float = 30.0
    sources: int = 4
    request_timeout: float = 10.0
    stack_kib: int = 0
    uvloop: bool = False
    parser: str = "h11"
    # The server's switch interval (ms; None: Python's default): simlab's
    # own servers only (``ServerOptions.switch_interval``).
    switch_interval_ms: float | None = None
    # How the load generator times its sends and answers (``loadgen.LoadSpec.pacing``).
    pacing: str = DEFAULT_PACING
    save: bool = True
    out_dir: Path | None = None  # default: $SIMLAB_DATA/measurements
    timeline: bool = False
    # Every answered request's intended time and latency, written here when
    # set (``LoadSpec.requests_out``): a look at transients, off by default.
    requests_out: Path | None = None
    # Where simlab's own blocking servers write how long each connection's
    # owner waited for the client's close (``ServerOptions.close_waits``).
    close_waits: Path | None = None

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise UserError(f"unknown target {self.target!r} (choose from: {', '.join(TARGETS)})")
        if self.pacing not in PACINGS:
            raise UserError(f"pacing: {self.pacing!r} is not one of {', '.join(PACINGS)}")
        if self.pacing == "timer" and not sys.platform.startswith("linux"):
            raise UserError("pacing: timer needs Linux's timerfd; use --pacing loop")
        if self.workload.trace is not None:
            raise UserError(
                "trace: replayed traces are for simulation; measure takes --rate or --think-ms"
            )
        think = self.workload.think
        if think is not None and not isinstance(think, Exponential):
            # The load generator's clients draw Exp(mean) think times
            # (``loadgen.closed_loop``): another shape would be simulated as
            # given and measured as exponential, two different loads.
            raise UserError(
                f"think: measure's clients think an exponential time between requests "
                f"(as --think-ms); a {type(think).__name__} think is for simulation only"
            )
        if not 0 < self.duration <= 3600:
            raise UserError(f"duration(={self.duration:g}) must be in (0, 3600] seconds")
        if not 0 <= self.warmup <= 600:
            raise UserError(f"warmup(={self.warmup:g}) must be in [0, 600] seconds")
        if not 1 <= self.sources <= 250:
            raise UserError(f"sources(={self.sources}) must be in [1, 250]")
        if self.target in peers.PEERS and (
            self.architecture.limits is not None or self.workload.backend is not None
        ):
            raise UserError(
                f"{self.target}: server limits and backend options apply to simlab's own servers"
            )
        if self.close_waits is not None and self.target not in CLOSE_WAIT_SERVERS:
            raise UserError(
                f"close_waits: only simlab's blocking servers record them "
                f"({', '.join(CLOSE_WAIT_SERVERS)}), not {self.target!r}"
            )
        low, high = (1e3 * s for s in SWITCH_INTERVAL_S)
        if self.switch_interval_ms is not None and (
            self.target in peers.REGISTRY or not low <= self.switch_interval_ms <= high
        ):
            raise UserError(
                f"switch_interval_ms(={self.switch_interval_ms!r}) must be in "
                f"[{low:g}, {high:g}] ms, for simlab's own servers"
            )

    @property
    def dynamics(self) -> bool:
        """True when the run counts per-second windows and the overload block."""
        return self.timeline or in_play(self.workload, self.architecture)


@dataclass(frozen=True)
class Measurement:
    """One real run: its summary, and where it was saved (None if it was not)."""

    summary: MeasuredSummary
    saved_to: Path | None = None
    # CPU seconds per second of a buffering front's processes (the nginx
    # peers'), for calibration: not a key of the summary, which simulate shares.
    front_cpu_cores: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = self.summary.to_dict()
        if self.saved_to is not None:
            out["saved_to"] = str(self.saved_to)
        return out


def build_queries(workload: Workload, seed: int, count: int) -> tuple[str, ...]:
    """Query strings drawn from the workload's distributions, used in turn."""
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    cpu = workload.cpu.sample(rng, count) * 1e3
    calls = workload.calls
    io = workload.io.sample(rng, (count, calls)) * 1e3 if calls else np.zeros((count, 0))
    fixed_io = workload.io.cv == 0
    out = []
    for k in range(count):
        if calls == 0:
            io_part = "io_ms=0&calls=0"
        elif fixed_io:
            io_part = f"io_ms={io[k, 0]:.3f}&calls={calls}"
        else:
            io_part = "io_ms=" + ",".join(f"{x:.3f}" for x in io[k]) + f"&calls={calls}"
        out.append(f"cpu_ms={cpu[k]:.3f}&{io_part}&fanout={workload.fanout}")
        if workload.cpu.cv == 0 and (calls == 0 or fixed_io):
            break  # every request is the same
    if workload.mix is not None or workload.backend is not None:
        return _with_dynamics(workload, seed, count, out)
    return tuple(out)


def _with_dynamics(workload: Workload, seed: int, count: int, base: list[str]) -> tuple[str, ...]:
    """The queries with the overload options' parameters: a heavy request's CPU,
    a blocking call (``block_ms``), an auction's deadline and hedging, each drawn
    per query from a stream of its own (the base queries stay as they were)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    mix, b = workload.mix, workload.backend
    out = []
    for k in range(count):
        query = base[k % len(base)]
        if mix is not None and mix.heavy_share > 0 and rng.random() < mix.heavy_share:
            query = f"cpu_ms={mix.heavy_cpu * 1e3:.3f}&{query.partition('&')[2]}"
        if mix is not None and mix.blocks and rng.random() < mix.blocking_share:
            query += f"&block_ms={mix.blocking * 1e3:.3f}"
        if b is not None and b.deadline is not None and workload.calls:
            query += f"&deadline_ms={b.deadline * 1e3:.3f}"
        if b is not None and b.hedge is not None and workload.calls:
            second = workload.io.sample(rng, workload.calls) * 1e3
            query += f"&hedge_ms={b.hedge * 1e3:.3f}&hedge_io_ms=" + ",".join(
                f"{x:.3f}" for x in second
            )
        out.append(query)
    return tuple(out)


def _estimate_fit(opts: MeasureOptions) -> None:
    w, a = opts.workload, opts.architecture
    n = w.connections
    per_conn = opts.target in ("thread-per-connection", "process-per-connection")
    threads = n if per_conn else a.processes * (a.workers + 2)
    processes = n if opts.target == "process-per-connection" else a.processes
    # The cpython preset's sizes: a thread 43 KiB, a connection 9.5 KiB, a fork 1.2 MiB.
    memory = (threads * 43 + n * 2 * 9.5 + (processes if per_conn else 0) * 1200) / 1024
    if opts.target in peers.REGISTRY:
        # A peer's own estimate of its tree; a runtime's processes cost tens of MiB each.
        threads, processes = peers.REGISTRY[opts.target].footprint(n, a.workers, a.processes)
        memory = (threads * 64 + n * 2 * 9.5) / 1024 + processes * 30
    check_fits(
        connections=n,
        threads=threads,
        processes=processes,
        memory_mib=memory,
        sources=opts.sources,
        backend_conns=_backend_conns(opts, threads),
    )


def _backend_conns(opts: MeasureOptions, threads: int) -> int:
    """The backend connections the server may hold in one process: a thread opens
    its own on its first call, so at most one per request the run sends (open
    loop), and none without calls. A forked child holds its own, in its own
    process, not against the parent's file limit."""
    w = opts.workload
    if w.calls == 0:
        return 0
    if opts.target == "process-per-connection":
        return 1
    if w.rate is not None:
        sent = math.ceil(w.rate * (opts.warmup + opts.duration) * 1.2)  # Poisson slack
        return min(threads, sent)
    return threads


def _start_server(
    opts: MeasureOptions, backend_port: int, preexec: Callable[[], None] | None
) -> Managed:
    a = opts.architecture
    if opts.target in peers.REGISTRY:
        cfg = peers.PeerConfig(
            port=free_port(),
            backend_port=backend_port,
            workers=a.workers,
            processes=a.processes,
            backlog=a.backlog,
            request_timeout=opts.request_timeout,
            stack_kib=opts.stack_kib,
            preexec=preexec,
        )
        return peers.start(opts.target, cfg)
    argv = [
        python(),
        "-m",
        "simlab.real.runner",
        opts.target,
        "--backend-port",
        str(backend_port),
        "--workers",
        str(a.workers),
        "--processes",
        str(a.processes),
        "--request-timeout",
        str(opts.request_timeout),
        "--stack-kib",
        str(opts.stack_kib),
    ]
    if a.backlog is not None:
        argv += ["--backlog", str(a.backlog)]
    if opts.uvloop:
        argv.append("--uvloop")
    if opts.parser != "h11":
        argv += ["--parser", opts.parser]
    if opts.switch_interval_ms is not None:
        argv += ["--switch-interval-ms", f"{opts.switch_interval_ms:g}"]
    if opts.close_waits is not None:
        argv += ["--close-waits", str(opts.close_waits)]
    argv += _limit_flags(opts)
    return Managed(argv, name=opts.target, preexec=preexec)


def _limit_flags(opts: MeasureOptions) -> list[str]:
    """The server's overload controls, as the runner takes them."""
    out: list[str] = []
    lim = opts.architecture.limits
    if lim is not None:
        if lim.max_inflight is not None:
            out += ["--max-inflight", str(lim.max_inflight)]
        if lim.queue_deadline is not None:
            out += ["--queue-deadline-ms", f"{lim.queue_deadline * 1e3:g}"]
        if lim.offload:
            out.append("--offload")
    clients = opts.workload.clients
    if clients is not None and clients.syn_retries:
        # Dropped SYNs need the waiting connections in the kernel's queue.
        out.append("--kernel-backlog")
    return out


def _load_dynamics(opts: MeasureOptions) -> dict[str, Any]:
    """The load generator's overload fields (``loadgen.LoadSpec``)."""
    w = opts.workload
    out: dict[str, Any] = {"windows": opts.dynamics}
    if w.schedule is not None:
        out["schedule"] = tuple(zip(w.schedule.times, w.schedule.rates, strict=True))
    c = w.clients
    if c is not None and c.active:
        out.update(
            attempt_timeout=c.timeout,
            retries=c.retries,
            backoff=c.backoff,
            backoff_max=c.backoff_max,
            budget=c.budget,
            token_ratio=c.token_ratio,
            syn_retries=c.syn_retries,
        )
    return out


def _backend_argv(opts: MeasureOptions, stats: Path | None) -> list[str]:
    argv = [python(), "-m", "simlab.real.backend"]
    b = opts.workload.backend
    if b is not None and b.pool is not None:
        argv += ["--pool", str(b.pool)]
    if stats is not None:
        argv += ["--stats", str(stats)]
    return argv


def _counts_work(opts: MeasureOptions) -> bool:
    """True when the backend's answers count the server's work: every request
    makes the same number of calls, none cut short or hedged."""
    w = opts.workload
    b = w.backend
    return opts.dynamics and w.calls > 0 and (b is None or (b.deadline is None and b.hedge is None))


def _read_answers(path: Path | None) -> dict[int, int] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    finally:
        path.unlink(missing_ok=True)
    return {int(k): int(v) for k, v in data.get("answered_per_tenth", {}).items()}


def _client_dist(w: Workload) -> str:
    """The load generator's name for the slow clients' distribution."""
    kinds = {type(d).__name__ for d in (w.client_send, w.client_recv) if d.mean > 0}
    if kinds <= {"Fixed"}:
        return "fixed"
    if kinds == {"Exponential"}:
        return "exp"
    raise UserError("--client-dist: a real slow client's times are fixed or exp")


def _load_spec(opts: MeasureOptions) -> loadgen.LoadSpec:
    """What the load generator is asked to send (its port set once the server listens)."""
    w = opts.workload
    return loadgen.LoadSpec(
        host="127.0.0.1",
        port=1,  # set below, once the server listens
        connections=w.connections,
        queries=build_queries(w, opts.seed, QUERY_POOL),
        rate=w.rate,
        think_s=w.think.mean if w.think is not None else None,
        warmup=opts.warmup,
        duration=opts.duration,
        timeout=opts.timeout,
        sources=opts.sources,
        requests_per_connection=w.requests_per_connection,
        seed=opts.seed,
        **_load_dynamics(opts),
        send_s=w.client_send.mean,
        recv_s=w.client_recv.mean,
        client_dist=_client_dist(w),
        requests_out=None if opts.requests_out is None else str(opts.requests_out),
        report_local=_racing(opts),
        pacing=opts.pacing,
    )


# The load generator's start before its warm-up (an interpreter and its connects),
# with room for a loaded machine.
SPLIT_START_S = 2.0


def _watch_split(
    opts: MeasureOptions, pid: int, port: int, stack: contextlib.ExitStack
) -> AcceptSplit | None:
    """Where copies race for persistent connections, a reader of their split,
    started (and stopped with ``stack``)."""
    if not _racing(opts):
        return None
    # Until the warm-up ends.
    n, processes = opts.workload.connections, opts.architecture.processes
    split = AcceptSplit(pid, port, n, processes, within_s=opts.warmup + SPLIT_START_S)
    split.start()
    stack.callback(split.stop)
    return split


def _racing(opts: MeasureOptions) -> bool:
    """True where pre-forked copies race for persistent connections (gthread)."""
    arch = peers.as_designed(opts.target, opts.architecture)
    return arch.accept == "race" and arch.processes > 1 and opts.workload.persistent


def replayed(opts: MeasureOptions) -> Workload:
    """The workload with the very arrivals ``measure(opts)`` will send, as a
    trace: a simulation of it serves the real run's own requests, times
    from the run's start (its window opens at ``opts.warmup``)."""
    times, conns = loadgen.open_arrivals(_load_spec(opts))
    return opts.workload.with_(rate=None, trace=Trace(times, conns))


def queued_behind(requests: pd.DataFrame) -> float:
    """The load generator's ``queued_behind`` counted in a simulation's request
    table: the measured requests that arrived while their connection's
    previous request was unanswered (and so waited for it at the client),
    per replication."""
    counts = []
    for _, rep in requests.groupby("replication"):
        r = rep.sort_values(["connection", "arrival"])
        prev_end = r.groupby("connection")["end"].shift(1)
        counts.append(int((r["measured"] & (r["arrival"] < prev_end)).sum()))
    return float(sum(counts) / len(counts)) if counts else math.nan


def measure(opts: MeasureOptions, progress: Callable[[str], None] | None = None) -> Measurement:
    """Run one measurement and return its summary (and save it unless ``save`` is off)."""
    say = progress or (lambda _msg: None)
    _estimate_fit(opts)
    # A peer's runtime is checked (and named in the record) before anything starts.
    runtime = (
        peers.REGISTRY[opts.target].versions(opts.target) if opts.target in peers.REGISTRY else {}
    )
    raise_fd_limit()
    w = opts.workload
    spec = _load_spec(opts)
    started = utc_stamp()
    errors: list[str] = []
    warnings: list[str] = []
    # Everything started is stopped in reverse order on every exit path,
    # Ctrl-C and SIGTERM (turned into KeyboardInterrupt by the CLI) included.
    # Under overload, the backend counts the server's work: its answers per
    # tenth of a second (late answers nobody waits for included).
    stats_path: Path | None = None
    if _counts_work(opts):
        fd, name = tempfile.mkstemp(prefix="simlab-backend-", suffix=".json")
        os.close(fd)
        stats_path = Path(name)
    # One real run at a time: they share the machine's cores.
    with exclusive(say):
        # The machine's speed, before anything of the run starts and after
        # everything has stopped (simlab.real.speed): sessions can differ.
        before = measure_speed()
        with contextlib.ExitStack() as stack:
            say("starting the backend")
            backend = stack.enter_context(Managed(_backend_argv(opts, stats_path), name="backend"))
            say(f"starting {opts.target}")
            # The server's own kernel memory: a memory cgroup it joins at its start.
            account, no_account = KernelAccount.create()
            if account is not None:
                stack.callback(account.close)
            else:
                warnings.append(f"kernel memory not measured: {no_account}")
            server = _start_server(opts, backend.port, account.preexec if account else None)
            stack.callback(lambda: errors.append(server.stop()))
            probe, watch = _watch(stack, server, account, backend.pid)
            # Copies that race for the connections: which took how many (an input
            # the model's deal can be given, as the arrivals are).
            split = _watch_split(opts, server.pid, server.port, stack)
            window = f"{opts.warmup:g} s warm-up, {opts.duration:g} s measured"
            say(f"{w.connections:,} connections, {window}")
            report, marks = _marked_load(spec, server, opts, stack)
        after = measure_speed()
    during = watch.summary((report["window_wall"][0], report["window_wall"][1]))
    speed = SpeedReference.of(before.ops_s, after.ops_s, SPEED_WORK, during)
    server_err = "".join(errors)
    port_left = not port_is_free(server.port)
    if port_left:
        raise RunFailed(f"port {server.port} still accepts connections after the server stopped")
    if server_err.strip():
        warnings.append(f"server stderr: {server_err.strip()[-300:]}")
    answers = _read_answers(stats_path)
    summary = _summary(
        opts,
        report,
        probe,
        started,
        warnings,
        runtime=runtime,
        answers=answers,
        speed=speed,
        per_process=None if split is None else split.split,
        per_connection=None if split is None else split.deal(report["connections"].get("local")),
        thread_marks=marks,
    )
    front = _front_cpu(probe, report)
    if not opts.save:
        return Measurement(summary, front_cpu_cores=front)
    path = (opts.out_dir or measurements_dir()) / f"{opts.target}-{started}-seed{opts.seed}.json"
    record = {
        "summary": summary.to_dict(),
        "probe_series": _thin(probe.series() if probe else [], 600),
        "loadgen": {k: v for k, v in report.items() if not k.endswith("_hist")},
    }
    atomic_write_json(path, record)
    return Measurement(summary, path, front_cpu_cores=front)


# When (monotonic), every thread's counts, the busy CPU seconds so far of the
# cores the server may run on, and how many those are.
Marks = list[tuple[float, dict[int, ThreadCounts], float, int]]


def _marked_load(
    spec: loadgen.LoadSpec, server: Managed, opts: MeasureOptions, stack: contextlib.ExitStack
) -> tuple[dict[str, Any], Marks]:
    """The load's report, and every thread's switches read as the warm-up
    should end and as the measured window should (``thread_switches``: a file
    a thread, so twice a run, not per sample). Both reads are timed from the
    load generator's start, so the span is the window's length, early by the
    time the connections took to open; after the load the connections, and
    their threads, are gone."""
    marks: Marks = []
    timers = [
        threading.Timer(at, _mark, (marks, server.pid))
        for at in (opts.warmup, opts.warmup + opts.duration)
    ]
    for timer in timers:
        timer.start()
        stack.callback(timer.cancel)
    report = _run_load(spec, server.port, opts)
    for timer in timers:
        timer.cancel()
        timer.join()
    return report, marks


def _mark(marks: Marks, pid: int) -> None:
    """Append when, every thread of ``pid``'s tree's counts so far, and the
    busy CPU seconds of the cores ``pid`` may run on (``machine_busy_s``),
    with their number. The time and the busy CPU are the midpoints of
    readings before and after the threads' files (thousands of files take
    a while), so that both spans are the same."""
    with contextlib.suppress(psutil.NoSuchProcess, OSError):
        cpus = os.sched_getaffinity(pid)
        t, busy = time.monotonic(), machine_busy_s(cpus)
        counts = thread_switches(psutil.Process(pid))
        t, busy = (t + time.monotonic()) / 2, (busy + machine_busy_s(cpus)) / 2
        marks.append((t, counts, busy, len(cpus)))


def _thread_rates(marks: Marks, probe: dict[str, dict[str, float]]) -> SwitchRates | None:
    """Every thread's switches a second between the two marks, where the
    tree's threads held still: the same at both marks, and every read of the
    threads in the window (the probe's level reads, else its samples)
    counting as many (so none came and went unseen)."""
    threads = probe.get("threads", {})
    if len(marks) != 2 or threads.get("peak") != threads.get("mean"):
        return None
    (t0, first, _, _), (t1, second, _, _) = marks
    rates = thread_switch_rates(first, second, t1 - t0)
    return None if rates is None else SwitchRates(*rates)


def _run_queue(
    marks: Marks, probe: dict[str, dict[str, float]], served_rps: float
) -> RunQueue | None:
    """The server's threads' wait for a core between the two marks, a
    request served, against one shared queue's (``run_queue_waits``); None
    where the threads did not hold still (as ``_thread_rates``), the kernel
    keeps no scheduler counts, or nothing was served."""
    threads = probe.get("threads", {})
    if len(marks) != 2 or threads.get("peak") != threads.get("mean"):
        return None
    (t0, first, busy0, _), (t1, second, busy1, cores) = marks
    return run_queue_waits(first, second, t1 - t0, busy1 - busy0, served_rps * (t1 - t0), cores)


def _watch(
    stack: contextlib.ExitStack, server: Managed, account: KernelAccount | None, backend: int
) -> tuple[Probe, SpeedWatch]:
    """The probe on the server's tree and the machine's speed watch, started
    and stopped with ``stack``."""
    probe = Probe(server.pid, account=account, port=server.port, neighbours=(backend,))
    probe.start()
    stack.callback(probe.stop)
    # The machine's speed and stalls inside the run, beside the probe.
    watch = SpeedWatch()
    watch.start()
    stack.callback(watch.stop)
    return probe, watch


def _front_cpu(probe: Probe, report: dict[str, Any]) -> float | None:
    """The front processes' CPU seconds per second in the measured window (None: no front)."""
    rate = probe.summary((report["window_wall"][0], report["window_wall"][1]))
    value = rate.get("front_cpu_s", {}).get("rate")
    return None if value is None or not value > 0 else float(value)


def _run_load(spec: loadgen.LoadSpec, port: int, opts: MeasureOptions) -> dict[str, Any]:
    data = {**spec.__dict__, "port": port, "queries": list(spec.queries)}
    # Connecting goes in waves; a wave whose connects hang waits CONNECT_TIMEOUT_S.
    waves = math.ceil(spec.connections / loadgen.CONNECT_CONCURRENCY)
    budget = 60 + opts.warmup + opts.duration + 2 * opts.timeout + waves * loadgen.CONNECT_TIMEOUT_S
    proc = subprocess.Popen(
        [python(), "-m", "simlab.real.loadgen", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    share_priority(proc.pid)
    try:
        out, err = proc.communicate(json.dumps(data), timeout=budget)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RunFailed(f"the load generator did not finish within {budget:.0f} s") from None
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    if proc.returncode != 0:
        raise RunFailed(f"load generator failed ({proc.returncode}): {err.strip()[-500:]}")
    result: dict[str, Any] = json.loads(out)
    return result


def _thin(rows: list[dict[str, float]], limit: int) -> list[dict[str, float]]:
    step = max(1, math.ceil(len(rows) / limit))
    return rows[::step]


def _hist_block(text: str, *, with_ci: list[float] | None = None) -> HistogramBlock:
    h = loadgen.decode(text)
    if h.get_total_count() == 0:
        return HistogramBlock()
    return HistogramBlock(
        mean=loadgen.mean(h) / 1e3,
        p50=loadgen.percentile(h, 50) / 1e3,
        p95=loadgen.percentile(h, 95) / 1e3,
        p99=loadgen.percentile(h, 99) / 1e3,
        max=h.get_max_value() / 1e3,
        mean_ci95=with_ci,
        count=h.get_total_count(),
    )


# Threads under its peak that a window's first read may be short without
# the server being still at work making them: one (a read taken while the
# last one is made). The count of a server that has made them all is flat.
RAMP_THREADS = 1.0


def still_making(
    target: str, workload: Workload, peak: float | None, first: float | None
) -> str | None:
    """Why a run's window is not steady when one of simlab's servers that
    makes a thread or a process for each connection (``Dedicated``), under
    persistent connections (all opened as the load starts), was still making
    them as it opened: its first read of the thread count in the window more
    than ``RAMP_THREADS`` under the window's peak; None otherwise. The first
    read, not the mean: a ramp over in the window's first second moves an
    8 s window's mean by about 1%, and a thread that ends mid-window is no
    ramp. Forking 300 children took the process-per-connection server over
    2 s in one busy session: a window opened before it is done holds the
    requests that waited for their connection's child (measured 4 December:
    N=300 150/s, warm-up 2 s, p99 1.27 s; warm-up 6 s, 36 ms)."""
    from simlab.models import get_model  # noqa: PLC0415 - the model owns its knowledge
    from simlab.models.dedicated import Dedicated  # noqa: PLC0415

    if target not in SERVER_MODELS or not workload.persistent:
        return None
    if peak is None or first is None or not issubclass(get_model(target), Dedicated):
        return None
    if not first < peak - RAMP_THREADS:
        return None
    return (
        f"the server was still making its threads as the window opened ({first:,.0f} at "
        f"its start against {peak:,.0f} at peak, a thread or process a connection): raise "
        "the warm-up"
    )


def _summary(
    opts: MeasureOptions,
    r: dict[str, Any],
    probe: Probe | None,
    started: str,
    warnings: list[str],
    *,
    runtime: dict[str, str],
    answers: dict[int, int] | None = None,
    speed: SpeedReference | None = None,
    per_process: tuple[int, ...] | None = None,
    per_connection: tuple[int, ...] | None = None,
    thread_marks: Marks | None = None,
) -> MeasuredSummary:
    w, a = opts.workload, opts.architecture
    window = (r["window_wall"][0], r["window_wall"][1])
    p = probe.summary(window) if probe is not None else {}

    def stat(key: str, which: str) -> float | None:
        value = p.get(key, {}).get(which)
        return None if value is None else float(value)

    cores = os.cpu_count() or 1
    # A latency is never negative, and neither is its interval.
    latency = _hist_block(r["latency_hist"], with_ci=positive_ci95(r["batch_means_ms"]))
    service = _hist_block(r["service_hist"])
    queue = _hist_block(r["queue_hist"])
    throughput = r["completed_in_window"] / opts.duration
    timeline = overload = None
    if "overload" in r:
        from simlab.overload.measured import (  # noqa: PLC0415 - only runs under overload
            measured_overload,
            measured_timeline,
        )

        work = None if answers is None else (answers, w.calls)
        windows = measured_timeline(
            r["overload"], probe.series() if probe is not None else [], work
        )
        timeline = tuple(windows)
        if in_play(w, a):
            overload = measured_overload(r["overload"], windows, w, opts.warmup, opts.duration)
            # The server's answers, late ones nobody waited for included.
            served = sum(x.throughput_rps for x in windows if _inside(x.t_s, opts))
            throughput = served / opts.duration
    # Answers per tenth of the window, as rates: batch means for the throughput CI.
    batch_rates = np.asarray(r["timeline"], dtype=float) / (opts.duration / len(r["timeline"]))
    cpu_busy = p.get("cpu_s", {}).get("rate", math.nan)
    # A server that holds a request on no thread while it waits (async) is
    # busy only while it runs: its loops' busy share is its CPU seconds per second.
    on_cpu_only = peers.RESEMBLES.get(opts.target, opts.target) == "async"
    busy = cpu_busy if on_cpu_only else throughput * (service.mean or 0.0) / 1e3
    errors = r["errors"]
    # Refused by the server: answered 503, or (thread-pool, iterative) the
    # connection closed without an answer. Both are the simulation's drops.
    dropped = int(r["status"].get("503", 0)) + int(r["errors"]["resets"])
    completed = int(r["status"].get("200", 0))
    other = sum(v for k, v in r["status"].items() if k not in ("200", "503"))
    incomplete = sum(v for k, v in errors.items() if k != "resets") + other
    offered = r["scheduled"] / opts.duration if w.rate is not None else None
    little_l = r["in_flight_mean"]
    little_xw = throughput * (latency.mean or math.nan) / 1e3
    reasons = []
    if offered and throughput < KEPT_UP * offered:
        reasons.append(f"served {throughput:,.1f}/s of {offered:,.1f}/s offered")
    if incomplete:
        reasons.append(f"{incomplete:,} measured requests failed or went unanswered")
    if r["connections"]["failed"]:
        reasons.append(f"{r['connections']['failed']:,} connections could not be opened")
    ramp = still_making(opts.target, w, stat("threads", "peak"), stat("threads", "first"))
    if ramp is not None:
        reasons.append(ramp)
    lag = loadgen.decode(r["send_delay_hist"])
    send_delay = None
    if lag.get_total_count():
        send_delay = SendDelay(
            p50=loadgen.percentile(lag, 50) / 1e3,
            p99=loadgen.percentile(lag, 99) / 1e3,
            queued_behind=r.get("queued_behind"),
            pacing=opts.pacing,
        )
    return MeasuredSummary(
        model=opts.target,
        engine="real",
        resembles=peers.RESEMBLES.get(opts.target, opts.target),
        platform=peers.PLATFORM_OF.get(opts.target, "cpython"),
        runtime=runtime,
        throughput_rps=throughput,
        throughput_ci95=ci95([float(x) for x in batch_rates]),
        offered_rps=offered,
        latency_ms=latency,
        queue_delay_ms=queue,
        service_ms=service,
        threads=MeasuredThreads(stat("threads", "peak"), stat("threads", "mean"), busy),
        memory_mib=MeasuredMemory(
            peak=stat("memory_mib", "peak"),
            mean=stat("memory_mib", "mean"),
            virtual_peak=stat("vms_mib", "peak"),
            user_peak=stat("pss_mib", "peak"),
            user_mean=stat("pss_mib", "mean"),
            kernel_peak=stat("kernel_mib", "peak"),
            kernel_mean=stat("kernel_mib", "mean"),
            rss_peak=stat("rss_mib", "peak"),
            uss_peak=stat("uss_mib", "peak"),
        ),
        processes=Peak(stat("processes", "peak")),
        fds=Peak(stat("fds", "peak")),
        context_switches_per_s=SwitchRates(
            stat("ctx_voluntary", "rate"), stat("ctx_involuntary", "rate")
        ),
        thread_switches_per_s=_thread_rates(thread_marks or [], p),
        run_queue=_run_queue(thread_marks or [], p, throughput),
        connections=ConnectionCounts(
            opened=r["connections"]["opened"],
            failed=r["connections"]["failed"],
            open_seconds=r["connections"]["seconds"],
            per_process=per_process,
            per_connection=per_connection,
        ),
        in_flight=InFlight(little_l),
        little=Little(
            in_flight_sampled=little_l,
            throughput_x_latency=little_xw,
            rel_error=abs(little_l - little_xw) / little_xw if little_xw else None,
        ),
        cpu_busy_cores=cpu_busy,
        cpu_utilization=cpu_busy / cores if math.isfinite(cpu_busy) else None,
        lab_cpu=_lab_cpu(r, p, opts),
        requests=r["measured"],
        completed=completed,
        dropped=dropped,
        incomplete=incomplete,
        errors={**errors, "other_status": other, "connect_failed": r["connections"]["failed"]},
        stable=not reasons,
        stability=MeasuredStability(tuple(reasons)),
        send_delay_ms=send_delay,
        warnings=tuple(warnings),
        workload=w,
        architecture=a,
        seed=opts.seed,
        duration_s=opts.duration,
        warmup_s=opts.warmup,
        started=started,
        machine=machine(),
        git_revision=git_revision(),
        took_s=time.time() - window[0] + opts.warmup,
        overload=overload,
        timeline=timeline,
        speed_reference=speed,
    )


def _inside(t: float, opts: MeasureOptions) -> bool:
    """True for a 1-second window inside the measurement window."""
    return opts.warmup <= t and t + 1 <= opts.warmup + opts.duration + 1e-9


def _lab_cpu(r: dict[str, Any], p: dict[str, Any], opts: MeasureOptions) -> LabCpu:
    """The load generator's CPU per request sent and the backend's per call, in the window."""
    sent = r["measured"]
    client = r.get("cpu_s_window")
    backend_rate = p.get("lab_cpu_s", {}).get("rate")
    calls = sent * opts.workload.calls
    return LabCpu(
        client_us_per_request=client / sent * 1e6 if client is not None and sent else None,
        backend_us_per_call=(
            backend_rate * opts.duration / calls * 1e6
            if backend_rate is not None and calls
            else None
        ),
    )


# A run that served less than this share of what it offered did not keep up.
KEPT_UP = 0.95
