"""Running a model: replications, warm-up, the stability verdict, and the ``Result``.

``simulate`` runs independent replications with seeds from
``SeedSequence(seed).spawn(replications)``. Each replication sends requests
from time 0 to ``warmup + duration``; only requests sent in the window
[warmup, warmup + duration) are measured. After the last send, the run goes
on (the drain) so that measured requests can finish; whatever is still
unanswered when the drain ends is counted as ``incomplete``.

How long is long enough is set by the relaxation time of the bottleneck
(``theory.relaxation_time`` of the model's ``bottleneck``): a queue near
saturation forgets its empty start only after a few of them, and a p99 and
its interval need about a hundred (``RUN_RELAXATIONS``); shorter runs get a
warning. ``warmup="auto"`` chooses ``WARMUP_RELAXATIONS`` of them and checks
the choice with MSER-5 (``stats.mser5``).
"""

from __future__ import annotations

import bisect
import math
import os
import pickle
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import IO, TYPE_CHECKING, Any, Literal, cast

import numpy as np
import simpy

from simlab.errors import RunFailed, UserError
from simlab.metrics import Step, replication_levels, replication_summary, series
from simlab.models import MODELS, Analytic, Record, get_model
from simlab.models.base import Bottleneck
from simlab.models.loads import io_moments
from simlab.overload.policy import in_play
from simlab.params import Architecture, Platform, Workload, c10k_workload
from simlab.platforms import load_platform
from simlab.results import CI, Level, MemoryLevel, Quantiles, SimSummary, Stability, ThreadLevel
from simlab.stats import ci95, mser5, positive_ci95, quantiles_ci95
from simlab.streams import Deal

if TYPE_CHECKING:
    # pandas loads when a table is first asked for, not for a summary; the
    # fast engine (and the kernels' loader) when a run may use it, not for
    # ``--engine des``.
    import pandas as pd

    from simlab.fast import EventBuffers

__all__ = [
    "ENGINES",
    "RUN_RELAXATIONS",
    "WARMUP_RELAXATIONS",
    "Result",
    "auto_warmup",
    "choose_engine",
    "compare",
    "simulate",
    "transient_end",
]

ENGINES = ("des", "fast", "auto")
# A warm-up of this many relaxation times of the bottleneck: started empty, a
# queue's distribution is within exp(-5) (under 1%) of steady state. Measured
# on M/M/c at rho 0.95 and 0.98, the share of requests over the true p99
# reaches its 1% within about 3 of them.
WARMUP_RELAXATIONS = 5
# A replication this many relaxation times long holds a p99 with a 95% interval
# that covers the truth about 95% of the time on M/M/c at rho 0.95 (measured
# over 200 seeds: 0.95 for c = 1 and 10; at 50 it was 0.92, at 20 0.84, at
# 10 0.88, because a near-saturated queue's tail comes in rare long excursions
# that a short run usually misses). The mean needs far less.
RUN_RELAXATIONS = 100

Progress = Callable[[float], None]
OUTCOMES = ("completed", "dropped", "pending")


@dataclass(frozen=True)
class Result:
    """One model's simulated results.

    ``summary`` is the JSON contract (``SimSummary``); ``requests`` has one
    row per request; ``series`` the levels of each replication on a time
    grid; ``replications`` one row of numbers per replication. The tables
    are built when first read (a command that prints the summary never pays
    for half a million rows, nor for importing pandas).
    """

    model: str
    summary: SimSummary
    theory: Callable[[], Analytic | str] = field(repr=False, compare=False)
    records: list[Record] = field(repr=False, compare=False)
    platform: Platform = field(repr=False, compare=False)
    numbers: list[dict[str, Any]] = field(repr=False, compare=False)
    tables: bool = field(default=True, repr=False, compare=False)

    @cached_property
    def analytic(self) -> Analytic | str:
        """The textbook reduction's values, or why there is none (worked out
        when first read: a tail quantile needs scipy's root finder)."""
        return self.theory()

    @cached_property
    def requests(self) -> pd.DataFrame:
        import pandas as pd  # noqa: PLC0415 - see TYPE_CHECKING above

        return _requests_table(self.records) if self.tables else pd.DataFrame()

    @cached_property
    def series(self) -> pd.DataFrame:
        import pandas as pd  # noqa: PLC0415 - see TYPE_CHECKING above

        if not self.tables:
            return pd.DataFrame()
        levels = [replication_levels(rec, self.platform) for rec in self.records]
        return _series_table(self.records, levels)

    @cached_property
    def replications(self) -> pd.DataFrame:
        import pandas as pd  # noqa: PLC0415 - see TYPE_CHECKING above

        seed = self.summary.seed
        return pd.DataFrame(
            [
                {k: v for k, v in r.items() if not isinstance(v, np.ndarray)}
                | {"replication": i, "seed": seed}
                for i, r in enumerate(self.numbers)
            ]
        )

    # Where MSER-5 ends the start-up transient of the replications' latency
    # (seconds from time 0; ``transient_end``) with warmup="auto"; None
    # otherwise, or when it cannot tell.
    transient_s: float | None = field(default=None, compare=False)

    def to_json(self, *, indent: int | None = 2) -> str:
        return self.summary.to_json(indent=indent)

    def to_row(self) -> dict[str, Any]:
        return self.summary.to_row()


def _check_run(duration: float, warmup: float, replications: int, seed: int) -> None:
    if not (math.isfinite(duration) and duration > 0):
        raise UserError(f"duration(={duration!r}) must be > 0 simulated seconds")
    if not (math.isfinite(warmup) and warmup >= 0):
        raise UserError(f"warmup(={warmup!r}) must be >= 0 simulated seconds")
    if not (isinstance(replications, int) and replications >= 1):
        raise UserError(f"replications(={replications!r}) must be an integer >= 1")
    if not (isinstance(seed, int) and seed >= 0):
        raise UserError(f"seed(={seed!r}) must be an integer >= 0")


def _drain(workload: Workload, duration: float) -> float:
    """Time allowed after the last send: the run length, or 20 mean service
    times when those are longer (so a stable system always empties)."""
    return max(duration, 20 * (workload.cpu.mean + io_moments(workload)[0]))


def run_replication(
    model: str,
    workload: Workload,
    platform: Platform,
    architecture: Architecture,
    *,
    duration: float,
    warmup: float,
    seed: int,
    replication: int,
    seed_seq: np.random.SeedSequence,
    progress: Progress | None = None,
    engine: str = "des",
    buffers: EventBuffers | None = None,
) -> Record:
    """One replication with ``engine`` (``des`` or ``fast``, already chosen).

    ``buffers``: the fast engine's event loop's buffers, reused
    (``EventBuffers``) when the caller lets each record's arrays go before the
    next replication."""
    cls = get_model(model)
    stop = warmup + duration
    horizon = stop + _drain(workload, duration)
    if engine == "fast":
        from simlab.fast import run_fast_replication  # noqa: PLC0415 - see TYPE_CHECKING

        rec = run_fast_replication(
            model,
            workload,
            platform,
            architecture,
            duration=duration,
            warmup=warmup,
            seed=seed,
            replication=replication,
            seed_seq=seed_seq,
            horizon=horizon,
            buffers=buffers,
        )
        if progress is not None:
            progress(1.0)
        return rec
    cls.check_request_cap(workload, stop)
    env = simpy.Environment()
    sim = cls(env, workload, platform, architecture, seed=seed_seq, stop=stop)
    sim.start_arrivals()
    steps = 20 if progress is not None else 1
    for k in range(1, steps + 1):
        env.run(until=horizon * k / steps)
        if progress is not None:
            progress(k / steps)
    return sim.record(replication=replication, seed=seed, window=(warmup, stop))


def simulate(
    model: str,
    workload: Workload | None = None,
    platform: Platform | None = None,
    architecture: Architecture | None = None,
    *,
    duration: float = 60.0,
    warmup: float | Literal["auto"] = 5.0,
    seed: int = 1,
    replications: int = 5,
    progress: Progress | None = None,
    engine: str = "des",
    tables: bool = True,
    timeline: bool = False,
    jobs: int | None = 1,
) -> Result:
    """Simulate ``model`` and summarise it with 95% confidence intervals.

    Defaults: the C10K workload, the ``cpython`` platform (the calibrated
    profile in the data root when there is one, as ``load_platform`` says),
    32 workers.
    ``duration`` and ``warmup`` are simulated seconds; ``warmup="auto"`` is
    ``auto_warmup``'s choice (several relaxation times of the bottleneck),
    and the summary warns when MSER-5 finds the transient lasting longer.
    ``engine`` is ``des``
    (events), ``fast`` (``simlab.fast``: the same requests, compiled; an error
    if the configuration does not qualify) or ``auto`` (fast where it qualifies);
    ``summary.engine`` says which ran. ``tables=False`` leaves the
    per-request and series tables empty (the summary is the same), which
    saves their memory and the time to build them on long runs.
    ``tables=False`` also lets each replication's arrays go once it is
    summarised, where nothing later reads them (``Result.records`` then keep
    each replication's flags and seeds, not its columns).
    ``timeline=True`` adds the per-second windows (``summary.timeline``),
    which any overload option (``simlab.overload``) adds by itself.
    ``jobs``: processes that run the replications side by side (``None``: one
    per usable core, where the run is long enough to gain,
    ``PARALLEL_MIN_REQUESTS``); only where each replication is summarised as
    it ends (``tables=False`` and none of the options above that read the
    requests again), else they run here one after another. The numbers are
    the same either way: a replication's summary reads only its own record.
    """
    if jobs is not None and not (
        isinstance(jobs, int) and not isinstance(jobs, bool) and jobs >= 1
    ):
        raise UserError(f"jobs(={jobs!r}) must be an integer >= 1, or None for one per core")
    workload = workload if workload is not None else c10k_workload()
    platform = platform if platform is not None else load_platform("cpython")
    architecture = architecture if architecture is not None else Architecture()
    get_model(model)
    auto = warmup == "auto"
    if auto:
        _check_run(duration, 0.0, replications, seed)
        deal = Deal.of_run(seed, replications)
        warmup = auto_warmup(model, workload, platform, architecture, deal)
    if isinstance(warmup, str):
        raise UserError(f"warmup(={warmup!r}) must be a number of seconds or 'auto'")
    _check_run(duration, warmup, replications, seed)
    chosen = choose_engine(engine, model, workload, platform, architecture)
    why = None
    if engine == "auto" and chosen == "des":
        from simlab.fast import reason_not_fast  # noqa: PLC0415 - see TYPE_CHECKING

        why = reason_not_fast(model, workload, platform, architecture)
    seeds = np.random.SeedSequence(seed).spawn(replications)
    records: list[Record] = []
    # Without tables, and with nothing after the replications that reads
    # their requests again (MSER-5 for warmup="auto", the overload block,
    # the timeline), each replication is summarised as soon as it ends and
    # its arrays let go: the next replication's arrays reuse that memory
    # rather than fault in fresh pages (at 1,000,000 requests a replication,
    # about 30,000 page faults each, an eighth of a fast run's CPU). The
    # numbers are the same: a replication's summary reads only its own record.
    early = not (tables or auto or timeline or in_play(workload, architecture))
    numbers: list[dict[str, Any]] = []
    task = _Task(model, workload, platform, architecture, duration, warmup, seed, chosen, early)
    n_jobs = _jobs(jobs, workload, warmup + duration, replications) if early else 1
    if n_jobs > 1:
        numbers, records = _in_processes(task, seeds, n_jobs, progress)
    else:
        buffers = task.buffers()
        for r, seed_seq in enumerate(seeds):
            tick = None if progress is None else _scaled(progress, r, replications)
            rec, summary = task.run(r, seed_seq, buffers=buffers, progress=tick)
            if summary is not None:
                numbers.append(summary)
            records.append(rec)
    return _result(
        model,
        records,
        workload=workload,
        platform=platform,
        arch=architecture,
        duration=duration,
        warmup=warmup,
        seed=seed,
        engine=chosen,
        tables=tables,
        engine_reason=why,
        timeline=timeline,
        check_transient=auto,
        numbers=numbers if early else None,
    )


# With ``jobs=None``, replications run side by side only when the run sends
# at least this many requests in all: under it, starting the processes and
# sending the summaries back (some 0.05 s) is a good part of what they save.
PARALLEL_MIN_REQUESTS = 200_000


def _jobs(jobs: int | None, workload: Workload, stop: float, replications: int) -> int:
    """How many processes run the replications (1: here, one after another)."""
    if replications < 2:
        return 1
    if jobs is not None:
        return min(jobs, replications)
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    cores = len(usable) if usable is not None else os.cpu_count() or 1
    if cores < 2 or _expected_requests(workload, stop) * replications < PARALLEL_MIN_REQUESTS:
        return 1
    return min(cores, replications)


def _expected_requests(workload: Workload, stop: float) -> float:
    """About how many requests one replication sends by ``stop`` (at most, for
    a closed loop: every client at once, none waiting)."""
    if workload.schedule is not None:
        return float(workload.schedule.expected(0.0, stop))
    if workload.rate is not None:
        return workload.rate * stop
    if workload.trace is not None:
        return float(bisect.bisect_left(workload.trace.times, stop))
    assert workload.think is not None
    cycle = workload.think.mean + workload.cpu.mean + io_moments(workload)[0]
    return math.inf if cycle <= 0 else workload.connections * stop / cycle


@dataclass(frozen=True)
class _Task:
    """A run's replications, one at a time (``run``): here, or in a worker
    process (``_in_processes``)."""

    model: str
    workload: Workload
    platform: Platform
    architecture: Architecture
    duration: float
    warmup: float
    seed: int
    engine: str
    # Each replication summarised as it ends and its arrays let go.
    early: bool

    def run(
        self,
        r: int,
        seed_seq: np.random.SeedSequence,
        *,
        buffers: EventBuffers | None = None,
        progress: Progress | None = None,
    ) -> tuple[Record, dict[str, Any] | None]:
        """Replication ``r``'s record, and its summary where ``early`` (the
        record then keeps only its flags and seeds)."""
        rec = run_replication(
            self.model, self.workload, self.platform, self.architecture,
            duration=self.duration, warmup=self.warmup, seed=self.seed, replication=r,
            seed_seq=seed_seq, progress=progress, engine=self.engine, buffers=buffers,
        )  # fmt: skip
        if not self.early:
            return rec, None
        numbers = replication_summary(rec, self.platform)
        # Its arrays let go, the fast engine's (views of buffers the next
        # replication writes again) with them.
        rec.columns, rec.intervals, rec.end_order = {}, {}, None
        return rec, numbers

    def buffers(self) -> EventBuffers | None:
        """Buffers for the fast engine's event loop (``EventBuffers``), to pass
        to this run's replications one after another: only where each
        record's arrays are let go (``early``) before the next replication
        writes them again."""
        if not (self.early and self.engine == "fast"):
            return None
        from simlab.fast import EventBuffers  # noqa: PLC0415 - see TYPE_CHECKING

        return EventBuffers()


def _worker_start(parent: int) -> None:
    """A worker's set-up: Ctrl-C and a closed terminal are the parent's to
    answer (it kills its workers by their ids); a SIGTERM ends the worker
    quietly, whatever handler the parent had; the worker dies with its parent
    (Linux's parent-death signal), so that none outlives a parent killed
    outright; and it writes through stdio objects of its own: forked while
    another thread of the parent (a progress bar) was writing, it could
    otherwise inherit their locks held."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent)
    try:
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - the process's own, for its life
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    except OSError:
        pass  # a closed descriptor: the inherited objects, which nothing here writes to


def _die_with_parent(parent: int) -> None:
    """``prctl(PR_SET_PDEATHSIG, SIGKILL)`` where libc has it (Linux); and if
    the parent (pid ``parent``) is gone already (it died before the call),
    end here."""
    import ctypes  # noqa: PLC0415 - only a worker needs it

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    prctl(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGKILL))
    if os.getppid() != parent:
        os._exit(1)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _worker(
    task: _Task,
    items: list[tuple[int, np.random.SeedSequence]],
    out: Any,
    parents_end: Any,
    parent: int,
    *,
    spool: IO[bytes],
) -> None:
    """Run ``items`` one after another, each replication's ``(numbers,
    record)`` pickled onto the end of ``spool`` as it ends and ``(r, start,
    end)``, where it lies, sent down ``out``; a failure is sent as ``(r,
    exception, its traceback)`` and ends the worker. The arrays go by file,
    not down the pipe: a pipe holds 64 KiB, and a worker would wait on a
    replication's 16 MB of latencies (a million requests) until the parent,
    busy with its own share, read them. ``spool`` is the parent's, unnamed,
    inherited by the fork: it goes with the processes however these end.
    ``parents_end``, the pipe's other end (inherited too), is closed here,
    so that a send to a parent gone fails rather than fills the pipe."""
    parents_end.close()
    _worker_start(parent)
    buffers = task.buffers()
    for r, seed_seq in items:
        try:
            rec, numbers = task.run(r, seed_seq, buffers=buffers)
            start = spool.tell()
            pickle.dump((numbers, rec), spool, protocol=pickle.HIGHEST_PROTOCOL)
            spool.flush()
            out.send((r, start, spool.tell()))
        except BaseException as exc:  # every failure goes to the parent
            where = traceback.format_exc()
            try:
                out.send((r, exc, where))
            except Exception:  # an exception that does not pickle
                out.send((r, RuntimeError(f"{type(exc).__name__}: {exc}"), where))
            return


def _from_worker(exc: BaseException, where: str) -> Exception:
    """A worker's failure as the parent raises it: its own exception (a
    ``SystemExit`` or other non-``Exception`` as ``RunFailed``), carrying the
    worker's traceback as a note (the parent's own shows none of it)."""
    error = (
        exc
        if isinstance(exc, Exception)
        else RunFailed(f"a replication's worker process stopped: {exc!r}")
    )
    error.add_note(f"in a replication's worker process:\n{where}")
    return error


def _stop(started: list[Any]) -> None:
    """Kill every worker started and still running, by its id, and reap them all."""
    for proc in started:
        if proc.pid is None:
            continue  # interrupted before it started
        if proc.is_alive():
            proc.kill()
        proc.join()


def _in_processes(
    task: _Task,
    seeds: Sequence[np.random.SeedSequence],
    n_jobs: int,
    progress: Progress | None,
) -> tuple[list[dict[str, Any]], list[Record]]:
    """Every replication run and summarised by ``n_jobs`` processes side by
    side: this one and ``n_jobs - 1`` workers forked from it (the modules,
    the kernels and the platform loaded already, nothing pickled on the way
    in), each given every ``n_jobs``-th replication, this one the first
    share; their summaries and records in replication order.

    This process runs its share itself rather than wait: a worker's first
    replication faults in all of its memory (some 22,000 pages at 1,000,000
    requests), and what it sends back (its requests' latencies and waits)
    is pickled and read back here, where this process's own replications
    are read where they are. A worker leaves each replication in a file
    (``_worker``) and goes on to its next; between two of its own
    replications, and at the end, this process takes what they have left.

    A worker's failure is raised here as its own exception; a worker that
    dies without a word (killed, out of memory) is an error naming its exit
    code, never a wait. On the way out, whatever happens, every worker still
    running is killed by its id and reaped."""
    import multiprocessing  # noqa: PLC0415 - only a long run of several replications needs it
    from multiprocessing.connection import Connection  # noqa: PLC0415

    if task.engine == "fast":
        from simlab.kernels import aot_module  # noqa: PLC0415 - see TYPE_CHECKING

        # Loaded (and its sources' hash checked) once, here, not in every worker.
        aot_module()
    ctx = multiprocessing.get_context("fork")
    items = list(enumerate(seeds))
    done: dict[int, tuple[dict[str, Any], Record]] = {}
    # The parent's end of each worker's pipe -> the worker and the file it
    # leaves its replications in.
    workers: dict[Connection, tuple[Any, IO[bytes]]] = {}
    started: list[Any] = []  # every worker, recorded before it starts

    def tick() -> None:
        if progress is not None:
            progress(len(done) / len(items))

    def take(timeout: float | None) -> None:
        for r, numbers, rec in _received(workers, timeout):
            done[r] = (numbers, rec)
            tick()

    try:
        for j in range(1, n_jobs):
            mine, out = ctx.Pipe(duplex=False)
            # A file with no name for the worker's replications, read here by
            # where each lies (``_received``); closed as the worker ends, or below.
            spool = tempfile.TemporaryFile()  # noqa: SIM115
            args = (task, items[j::n_jobs], out, mine, os.getpid())
            proc = ctx.Process(target=_worker, args=args, kwargs={"spool": spool}, daemon=True)
            started.append(proc)
            workers[mine] = (proc, spool)
            proc.start()
            out.close()
        buffers = task.buffers()
        for r, seed_seq in items[0::n_jobs]:
            rec, numbers = task.run(r, seed_seq, buffers=buffers)
            assert numbers is not None  # ``early``: the only runs given to processes
            done[r] = (numbers, rec)
            tick()
            take(0)
        while len(done) < len(items):
            if not workers:
                raise RunFailed("the replications' workers ended before every replication")
            take(None)
    finally:
        _stop(started)
        for _, left in workers.values():
            left.close()
    ordered = [done[r] for r in range(len(items))]
    return [n for n, _ in ordered], [rec for _, rec in ordered]


def _received(
    workers: dict[Any, tuple[Any, IO[bytes]]], timeout: float | None
) -> list[tuple[int, dict[str, Any], Record]]:
    """The replications the workers (each one's end of its pipe -> the
    worker and its file) have sent within ``timeout`` (None: wait for one),
    each read from where it lies in its worker's file: a worker's failure
    raised as its own exception, a worker that died without a word an error
    naming its exit code; a worker that ended is dropped, its file closed."""
    from multiprocessing.connection import Connection, wait  # noqa: PLC0415

    out = []
    for ready in wait(list(workers), timeout):
        conn = cast("Connection", ready)
        try:
            r, start, end = cast("tuple[int, Any, Any]", conn.recv())
        except (EOFError, OSError):
            # The worker is gone; it said why, or it died (its exit code).
            proc, spool = workers.pop(conn)
            spool.close()
            proc.join()
            if proc.exitcode != 0:
                raise RunFailed(
                    f"a replication's worker process died (exit code {proc.exitcode}): "
                    "out of memory? --jobs 1 runs the replications in this process"
                ) from None
            continue
        if isinstance(start, BaseException):
            raise _from_worker(start, str(end))  # the failure and its traceback
        numbers, rec = pickle.loads(_read(workers[conn][1], start, end))
        out.append((r, numbers, rec))
    return out


def _read(spool: IO[bytes], start: int, end: int) -> bytes:
    """Bytes ``start`` to ``end`` of ``spool``, by ``os.pread``: the file's
    offset, which the fork shares with the worker writing it, is left alone."""
    parts = []
    while start < end:
        part = os.pread(spool.fileno(), end - start, start)
        if not part:
            raise RunFailed("a replication's worker process left less than it said")
        parts.append(part)
        start += len(part)
    return b"".join(parts)


def auto_warmup(
    model: str, workload: Workload, platform: Platform, arch: Architecture, deal: Deal
) -> float:
    """A warm-up of ``WARMUP_RELAXATIONS`` relaxation times of the bottleneck,
    and never under the fixed rule's two mean request times (20 for closed or
    saturated configurations, which have no relaxation time)."""
    service = workload.cpu.mean + io_moments(workload)[0]
    b = get_model(model).bottleneck(workload, platform, arch, deal)
    if b is None:
        return max(20 * service, 1e-3)
    return max(WARMUP_RELAXATIONS * b.relaxation_s, 2 * service)


def transient_end(records: Sequence[Record]) -> float | None:
    """When the start-up transient ends, by MSER-5 on the replications' mean latency.

    The series is the latency of the k-th request sent, averaged over the
    replications (averaging first cuts the noise a transient hides in by
    sqrt(replications); each replication alone is too noisy near
    saturation: MSER-5 then cuts at a long excursion as often as at the
    start). The answer is the mean send time of the request MSER-5 cuts at,
    None when it cannot tell (a run too short to settle, or no answers).
    """
    lats = []
    for rec in records:
        c = rec.columns
        lats.append(c["end"] - c["arrival"])
    n = min((len(a) for a in lats), default=0)
    if n == 0:
        return None
    stack = np.stack([a[:n] for a in lats])
    answered = np.isfinite(stack)
    counts = answered.sum(axis=0)
    keep = counts > 0
    mean = np.where(answered, stack, 0.0).sum(axis=0)[keep] / counts[keep]
    cut = mser5(mean)
    if cut is None:
        return None
    index = int(np.flatnonzero(keep)[cut])
    return float(np.mean([rec.columns["arrival"][index] for rec in records]))


def choose_engine(
    engine: str, model: str, workload: Workload, platform: Platform, arch: Architecture
) -> str:
    """The engine that will run: ``fast`` only where it reproduces the DES."""
    if engine not in ENGINES:
        raise UserError(f"engine(={engine!r}) must be one of {', '.join(ENGINES)}")
    if engine == "des":
        return "des"
    from simlab.fast import reason_not_fast  # noqa: PLC0415 - see TYPE_CHECKING

    reason = reason_not_fast(model, workload, platform, arch)
    if reason is None:
        return "fast"
    if engine == "fast":
        raise UserError(f"--engine fast does not apply to {model} here: {reason}")
    return "des"


def compare(
    workload: Workload | None = None,
    platform: Platform | None = None,
    architecture: Architecture | None = None,
    *,
    models: Sequence[str] | None = None,
    duration: float = 60.0,
    warmup: float | Literal["auto"] = 5.0,
    seed: int = 1,
    replications: int = 5,
    progress: Callable[[str, float], None] | None = None,
    engine: str = "des",
    timeline: bool = False,
    tables: bool = True,
    jobs: int | None = 1,
) -> list[Result]:
    """Every model (or ``models``) on the same workload, platform and seed;
    ``tables`` and ``jobs`` as for ``simulate``."""
    out = []
    for name in models if models is not None else list(MODELS):
        tick = None
        if progress is not None:
            tick = _named(progress, name)
        out.append(
            simulate(
                name,
                workload,
                platform,
                architecture,
                duration=duration,
                warmup=warmup,
                seed=seed,
                replications=replications,
                progress=tick,
                engine=engine,
                timeline=timeline,
                tables=tables,
                jobs=jobs,
            )
        )
    return out


def _scaled(progress: Progress, r: int, total: int) -> Progress:
    return lambda f: progress((r + f) / total)


def _named(progress: Callable[[str, float], None], name: str) -> Progress:
    return lambda f: progress(name, f)


# --------------------------------------------------------------------- summary


def _pooled(arrays: list[np.ndarray], scale: float) -> Quantiles:
    """Mean and percentiles over all replications' requests, each with a 95% CI
    that never reaches below zero: the mean's from the per-replication means
    (``positive_ci95``), each percentile's by inverting the interval of the
    replications' shares of requests under it (``quantiles_ci95``)."""
    per_rep = [a for a in arrays if len(a)]
    if not per_rep:
        return Quantiles()
    means = [a.mean() for a in per_rep]
    out: dict[str, Any] = {
        "mean": float(np.mean(means)) * scale,
        "mean_ci95": _scaled_ci(positive_ci95(means), scale),
    }
    for q, (value, ci) in zip((50, 95, 99), quantiles_ci95(per_rep, (50, 95, 99)), strict=True):
        assert value is not None
        out[f"p{q}"] = value * scale
        out[f"p{q}_ci95"] = _scaled_ci(ci, scale)
    return Quantiles(**out)


def _scaled_ci(ci: CI, scale: float) -> CI:
    return None if ci is None else [ci[0] * scale, ci[1] * scale]


def _mean_ci(reps: list[dict[str, Any]], key: str) -> tuple[float, CI]:
    values = [r[key] for r in reps]
    return float(np.mean(values)), ci95(values)


def _level(reps: list[dict[str, Any]], level: str) -> Level:
    peak, peak_ci = _mean_ci(reps, f"{level}_peak")
    mean, mean_ci = _mean_ci(reps, f"{level}_mean")
    return Level(peak, peak_ci, mean, mean_ci)


def _result(
    model: str,
    records: list[Record],
    *,
    workload: Workload,
    platform: Platform,
    arch: Architecture,
    duration: float,
    warmup: float,
    seed: int,
    engine: str = "des",
    tables: bool = True,
    engine_reason: str | None = None,
    timeline: bool = False,
    check_transient: bool = False,
    numbers: list[dict[str, Any]] | None = None,
) -> Result:
    """The summary of ``records``; ``numbers`` their ``replication_summary``s
    when taken already (their arrays let go since)."""
    cls = get_model(model)
    if numbers is None:
        numbers = [replication_summary(rec, platform) for rec in records]
    reps = numbers
    tput, tput_ci = _mean_ci(reps, "throughput_rps")
    alive = _level(reps, "threads_alive")
    busy_mean, busy_ci = _mean_ci(reps, "threads_busy_mean")
    # ``peak`` as the real lab's probe reads it; the exact one for sizing.
    sampled, sampled_ci = _mean_ci(reps, "threads_alive_sampled_peak")
    threads = ThreadLevel(
        sampled,
        sampled_ci,
        alive.mean,
        alive.mean_ci95,
        busy_mean,
        busy_ci,
        _mean_ci(reps, "threads_busy_peak")[0],
        alive.peak,
        alive.peak_ci95,
    )
    resident = _level(reps, "memory_mib")
    virtual_peak, virtual_ci = _mean_ci(reps, "virtual_mib_peak")
    # The user-space part is what a process's PSS shows; the kernel part is
    # not in it. The peaks as the real lab's probe reads them; the exact ones
    # for sizing.
    user_exact, user_exact_ci = _mean_ci(reps, "user_mib_peak")
    peak, peak_ci = _mean_ci(reps, "memory_mib_sampled_peak")
    user_peak, user_ci = _mean_ci(reps, "user_mib_sampled_peak")
    memory = MemoryLevel(
        peak,
        peak_ci,
        resident.mean,
        resident.mean_ci95,
        virtual_peak,
        virtual_ci,
        _mean_ci(reps, "virtual_mib_mean")[0],
        user_peak,
        user_ci,
        _mean_ci(reps, "user_mib_mean")[0],
        _mean_ci(reps, "kernel_mib_sampled_peak")[0],
        resident.peak,
        resident.peak_ci95,
        user_exact,
        user_exact_ci,
        _mean_ci(reps, "kernel_mib_peak")[0],
    )
    busy_cores, cores_ci = _mean_ci(reps, "cpu_busy_mean")
    counts = {key: int(sum(r[key] for r in reps)) for key in OUTCOME_COUNTS}
    # The analytic side sees the deals these replications made.
    deal = Deal(tuple(rec.salt for rec in records))
    offered = {k: float(v) for k, v in cls.offered_load(workload, platform, arch, deal).items()}
    reasons = [
        cls.explain_overload(k, v, workload, arch, deal) for k, v in offered.items() if v >= 1
    ]
    if any(rec.truncated for rec in records):
        reasons.append(f"stopped at the cap of {cls.max_requests:,} requests per replication")
    elif any(rec.overloaded for rec in records):
        reasons.append(
            f"stopped sending early: over {cls.max_in_system:,} requests were in the system"
        )
    if counts["incomplete"]:
        reasons.append(f"{counts['incomplete']:,} measured requests were never answered")
    growth = _growing(reps, duration)
    if growth and not any(v >= 1 for v in offered.values()):
        reasons.append(growth)
    # MSER-5 is asked only with warmup="auto": it reads every request's latency.
    settled = transient_end(records) if check_transient else None
    warnings = _warnings(workload, duration, warmup)
    warnings += cls.start_warnings(workload, platform, arch, warmup)
    # bottleneck() is None when a resource is saturated: nothing settles then.
    b = cls.bottleneck(workload, platform, arch, deal)
    warnings += _relaxation_warnings(b, duration)
    # Only a bottleneck that queues has a transient worth checking; otherwise
    # a run forgets its start within a request or two and MSER-5 cuts at noise.
    queues = b is not None and b.relaxation_s > b.service_s
    if queues and settled is not None and settled > warmup:
        warnings.append(
            f"MSER-5 finds the start-up transient lasting until {settled:.3g} s, after the "
            f"warm-up ({warmup:.3g} s); raise --warmup"
        )
    dynamics = _dynamics(records, workload, arch, platform, warmup, duration, timeline)
    offered_rps = workload.rate
    if workload.schedule is not None:
        offered_rps = workload.schedule.expected(warmup, warmup + duration) / duration
    if dynamics[0] is not None and dynamics[0].recovery is not None:
        rec = dynamics[0].recovery
        if rec.recovered_s is None:
            reasons.append(
                f"not recovered by the end of the run, {warmup + duration - rec.spike_end_s:g} s "
                "after the spike ended: the overload outlived it (metastable)"
            )
    summary = SimSummary(
        model=model,
        engine=engine,
        throughput_rps=tput,
        throughput_ci95=tput_ci,
        offered_rps=offered_rps,
        latency_ms=_pooled([r["latency"] for r in reps], 1e3),
        queue_delay_ms=_pooled([r["wait"] for r in reps], 1e3),
        threads=threads,
        memory_mib=memory,
        connections=_level(reps, "connections"),
        in_flight=_level(reps, "in_flight"),
        queued=_level(reps, "queued"),
        cpu_busy_cores=busy_cores,
        cpu_utilization=busy_cores / platform.cores if platform.cores else None,
        cpu_utilization_ci95=(
            [x / platform.cores for x in cores_ci] if platform.cores and cores_ci else None
        ),
        stable=not reasons,
        stability=Stability(offered, tuple(reasons)),
        warnings=tuple(warnings),
        replications=len(records),
        seed=seed,
        duration_s=duration,
        warmup_s=warmup,
        workload=workload,
        architecture=arch,
        platform=platform,
        engine_reason=engine_reason,
        **counts,
        overload=dynamics[0],
        timeline=dynamics[1],
    )
    return Result(
        model=model,
        summary=summary,
        # A partial, not a lambda: the dashboard's cache pickles results.
        theory=partial(cls.analytic, workload, platform, arch, deal),
        records=records,
        platform=platform,
        numbers=reps,
        tables=tables,
        transient_s=settled,
    )


OUTCOME_COUNTS = ("requests", "completed", "dropped", "incomplete")
# Each attempt's first attempt and number, when its client gave up, why it
# was dropped (``simlab.overload.policy.REASONS``), its fan-out's share of
# answers by the deadline, when it left its client, and its blocking call.
OVERLOAD_COLUMNS = ("origin", "attempt", "gave_up", "reason", "bids", "sent", "blocking")


def _dynamics(  # noqa: PLR0917 - the summary's parts, as _result has them
    records: list[Record],
    workload: Workload,
    arch: Architecture,
    platform: Platform,
    warmup: float,
    duration: float,
    timeline: bool,
) -> tuple[Any, Any]:
    """The overload block and the timeline (``simlab.overload``), or Nones."""
    on = in_play(workload, arch)
    if not (on or timeline):
        return None, None
    from simlab.overload.timeline import overload_summary, sim_timeline  # noqa: PLC0415

    # The exact levels over time, built only here: a plain run's summary does not need them.
    levels = [replication_levels(rec, platform) for rec in records]
    windows = tuple(sim_timeline(records, levels, platform, warmup + duration))
    block = overload_summary(records, workload, windows, warmup) if on else None
    return block, windows


# The backlog must grow by more than this share of the window's requests
# (and by more than GROWTH_MIN) before growth counts as overload: a stable
# queue's count at two instants differs only by its own fluctuation.
GROWTH_SHARE = 0.01
GROWTH_MIN = 10.0


def _growing(reps: list[dict[str, Any]], duration: float) -> str | None:
    """Say so when the number of requests in the system grows over the window.

    The offered-load formulas leave out load-dependent costs (switch
    contention), so the verdict also looks at what happened. In a stable
    system the growth of one replication is as likely negative as positive;
    it counts as overload only when every replication grew by more than 1% of
    its window's requests.
    """
    grew = [r["growth"] > max(GROWTH_SHARE * r["requests"], GROWTH_MIN) for r in reps]
    if not all(grew):
        return None
    mean = float(np.mean([r["growth"] for r in reps]))
    arrivals = float(np.mean([r["requests"] for r in reps]))
    served = float(np.mean([r["throughput_rps"] for r in reps]))
    return (
        f"requests in the system grew by {mean:,.0f} over the window "
        f"(served {served:,.1f}/s of {arrivals / duration:,.1f}/s sent): load exceeds capacity"
    )


def _warnings(workload: Workload, duration: float, warmup: float) -> list[str]:
    """Run lengths too short for the requests being simulated."""
    service = workload.cpu.mean + io_moments(workload)[0]
    out = []
    if warmup < 2 * service:
        out.append(
            f"warmup ({warmup:g} s) is under twice the mean request time ({service:.3g} s): "
            "the window opens before the system fills; raise --warmup"
        )
    if duration < 20 * service:
        out.append(
            f"duration ({duration:g} s) is under 20 mean request times ({service:.3g} s): "
            "edge effects weigh on throughput; raise --duration"
        )
    return out


def _relaxation_warnings(b: Bottleneck | None, duration: float) -> list[str]:
    """A run too short for its tail: under ``RUN_RELAXATIONS`` relaxation times
    of a bottleneck that queues (one whose relaxation time exceeds a service
    time; otherwise the fixed rules above already cover it)."""
    if b is None or b.relaxation_s <= b.service_s or duration >= RUN_RELAXATIONS * b.relaxation_s:
        return []
    return [
        f"duration ({duration:g} s) is under {RUN_RELAXATIONS} relaxation times of the "
        f"{b.resource} (rho = {b.rho:.3g}: {b.relaxation_s:.3g} s each): the p99 and its "
        "interval are likely low; raise --duration"
    ]


def _requests_table(records: list[Record]) -> pd.DataFrame:
    import pandas as pd  # noqa: PLC0415 - see TYPE_CHECKING above

    frames = []
    for rec in records:
        c = rec.columns
        n = len(c["arrival"])
        t0, t1 = rec.window
        frame = pd.DataFrame(
            {
                "model": rec.model,
                "replication": rec.replication,
                "seed": rec.seed,
                "request": np.arange(n),
                "connection": c["connection"],
                "arrival": c["arrival"],
                "admit": c["admit"],
                "start": c["start"],
                "end": c["end"],
                "wait": c["end"] - c["arrival"] - c["service"],
                "service": c["service"],
                "cpu": c["cpu_time"],
                "worker": c["worker"],
                "process": c["process"],
                "outcome": pd.Categorical.from_codes(
                    c["outcome"].astype(np.int64), categories=pd.Index(OUTCOMES)
                ),
                "measured": (c["arrival"] >= t0) & (c["arrival"] < t1),
            }
        )
        # Overload dynamics' own columns (``simlab.overload.des``), when it ran.
        for name in OVERLOAD_COLUMNS:
            if name in c:
                frame[name] = c[name]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _series_table(records: list[Record], levels: list[dict[str, Step]]) -> pd.DataFrame:
    import pandas as pd  # noqa: PLC0415 - see TYPE_CHECKING above

    frames = []
    for rec, lv in zip(records, levels, strict=True):
        s = series(rec, lv)
        frames.append(pd.DataFrame({"replication": rec.replication, **s}))
    return pd.concat(frames, ignore_index=True)
