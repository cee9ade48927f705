"""The fast engine: first-come-first-served queues by recursion instead of events.

For the configurations that reduce to FCFS multi-server queues, a request's
start is the Kiefer-Wolfowitz recursion: it starts when it arrives or when
the earliest of its servers frees up, whichever is later. Kept as a heap of
the servers' free times, that costs two heap operations per request and no
event at all. The engine reproduces the DES's own random streams (the same
``SeedSequence`` children, drawn in the same batches), its client queues (a
client sends one request at a time), its choice of server (the most recently
freed one first, FIFO hand-over to waiters) and its overheads, and then builds
the same ``Record`` the DES does, so every output, threads and memory
included, comes from the same code in ``metrics`` and ``simulation``.

It qualifies (``reason_not_fast`` says why not otherwise) for:

- ``thread-pool`` with one request per connection: M/G/W per process;
- ``reactor-pool`` and persistent ``thread-per-connection`` when the CPU is
  not contended (no GIL, unlimited cores): M/G/W per process behind the
  loop, and M/G/inf;
- ``async`` when each loop has a core of its own: M/G/1 per loop over CPU,
  then a pure delay for the backend calls;

with open or replayed arrivals, no backlog bound, and no wake-up cost (which
depends on what else the process is running).
"""

from __future__ import annotations

import numpy as np
import simpy

from simlab.models import get_model
from simlab.models.base import _BATCH, COMPLETED, PENDING, Record, draw_io
from simlab.models.loads import uncontended
from simlab.params import Architecture, Platform, Workload

__all__ = ["reason_not_fast", "run_fast_replication"]

FAST_MODELS = ("thread-pool", "reactor-pool", "thread-per-connection", "async")


def reason_not_fast(
    model: str, workload: Workload, platform: Platform, arch: Architecture
) -> str | None:
    """None when the fast engine reproduces the DES for this configuration, else why not."""
    if model not in FAST_MODELS:
        return f"{model} is not a first-come-first-served pool (fast: {', '.join(FAST_MODELS)})"
    if workload.kind == "closed":
        return "closed-loop arrivals feed back on the answers (fast needs --rate or a trace)"
    if arch.backlog is not None:
        return "a bounded backlog drops requests (fast needs --backlog unbounded)"
    k = workload.requests_per_connection
    if model == "thread-pool" and k != 1:
        return "a thread-pool worker holds its connection between requests (fast needs K = 1)"
    if model == "thread-per-connection" and k is not None and platform.spawn_us > 0:
        return "creating a thread per connection is a queue at the acceptor"
    if model == "async":
        if platform.cores is not None and platform.cores < arch.processes:
            return "more loops than cores: loops contend for the CPU"
    elif not uncontended(platform):
        return "CPU phases contend for cores or a GIL (fast needs --no-gil --cores unlimited)"
    if platform.wake_us > 0:
        return "waking an idle process depends on what else it runs (fast needs wake_us = 0)"
    return None


class _Inputs:
    """Per-request arrivals and demands, drawn exactly as ``Model`` draws them."""

    def __init__(
        self, workload: Workload, platform: Platform, seed: np.random.SeedSequence, stop: float
    ) -> None:
        w = workload
        streams = [np.random.default_rng(s) for s in seed.spawn(6)]
        rng_arrival, rng_conn, rng_cpu, rng_io, _rng_think, rng_slack = streams
        self.salt = int(seed.generate_state(1, np.uint64)[0])
        if w.kind == "open":
            assert w.rate is not None
            time_parts: list[np.ndarray] = []
            conn_parts: list[np.ndarray] = []
            now, gap_mean = 0.0, 1.0 / w.rate
            while now < stop:
                gaps = rng_arrival.exponential(gap_mean, _BATCH)
                batch = rng_conn.integers(0, w.connections, _BATCH)
                # The DES advances its clock gap by gap; a cumulative sum adds in
                # the same order, so the times are the same floating-point numbers.
                sent = np.cumsum(np.concatenate(([now], gaps)))[1:]
                keep = int(np.searchsorted(sent, stop, side="left"))
                time_parts.append(sent[:keep])
                conn_parts.append(batch[:keep])
                now = float(sent[-1]) if keep == _BATCH else stop
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
        self.connection = conns.astype(np.int64)
        demand: list[np.ndarray] = []
        io: list[np.ndarray] = []
        call_latency = platform.call_latency()
        drawn = 0
        while drawn < n:
            demand.append(w.cpu.sample(rng_cpu, _BATCH))
            io.append(draw_io(w, call_latency, rng_io, rng_slack))
            drawn += _BATCH
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
) -> Record:
    """One replication by recursion: the same ``Record`` as ``run_replication``."""
    reason = reason_not_fast(model, workload, platform, arch)
    if reason is not None:
        raise ValueError(f"--engine fast does not apply: {reason}")
    cls = get_model(model)
    stop = warmup + duration
    cls.check_request_cap(workload, stop)
    # The model instance gives the constant levels and flags the DES records;
    # its constructor draws nothing, so it does not disturb the random streams.
    shell = cls(simpy.Environment(), workload, platform, arch, seed=np.random.SeedSequence(0),
                stop=stop)  # fmt: skip
    inputs = _Inputs(workload, platform, seed_seq, stop)
    (admit, start, end, service, cpu, worker, process, cpu_start, cpu_dur, conn_open,
     conn_close) = _run_kernel(model, workload, platform, arch, inputs)  # fmt: skip
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
        extra={
            "calls": workload.calls,
            "own_process": cls.own_process,
            "worker_is_thread_handle": shell.worker_is_thread_handle(),
            "engine": "fast",
        },
    )


def _run_kernel(
    model: str, workload: Workload, platform: Platform, arch: Architecture, inp: _Inputs
) -> tuple[np.ndarray, ...]:
    """The model's costs, as ``Model.on_thread`` and the sessions charge them, and the loop."""
    # numba takes a moment to import: only runs that use the fast engine pay for it.
    from simlab.fast_kernel import MODE, recurse  # noqa: PLC0415

    w, p = workload, platform
    us = 1e-6
    if model == "async":
        fixed = (p.parse_us + p.task_us + w.calls * p.call_us) * us
        switch_cost, loop_cost, pays = 0.0, 0.0, False
    else:
        parse = 0.0 if model == "reactor-pool" else p.parse_us
        fixed = (parse + w.calls * p.call_us) * us
        switch_cost = (1 + w.calls) * p.context_switch_us * us
        pays = p.context_switch_us > 0
        loop_cost = (p.parse_us + p.dispatch_us) * us if model == "reactor-pool" else 0.0
    workers = arch.workers if model in ("thread-pool", "reactor-pool") else 0
    out: tuple[np.ndarray, ...] = recurse(
        MODE[model],
        inp.arrival,
        inp.connection,
        inp.demand + fixed,
        inp.io,
        arch.processes,
        workers,
        np.uint64(inp.salt),
        switch_cost,
        pays,
        loop_cost,
        w.requests_per_connection or 0,
    )
    return out
