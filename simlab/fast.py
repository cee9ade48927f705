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
from simlab.models.base import BATCH, COMPLETED, PENDING, FastMode, Model, Record, draw_io
from simlab.params import Architecture, Platform, Workload
from simlab.streams import Streams, deal

__all__ = ["reason_not_fast", "run_fast_replication"]


def reason_not_fast(
    model: str, workload: Workload, platform: Platform, arch: Architecture
) -> str | None:
    """None when the fast engine reproduces the DES for this configuration, else why not."""
    cls = get_model(model)
    reason = cls.fast_reason(workload, platform, arch)
    if reason is None:
        reason = _mechanism_reason(cls, platform)
    if reason is not None and cls.fast_mode is None:
        fast = ", ".join(name for name, m in MODELS.items() if m.fast_mode is not None)
        reason += f" (fast: {fast})"
    return reason


# The fast engine's modes whose requests pass an event loop.
_LOOP_MODES = (FastMode.LOOP, FastMode.LOOP_THEN_POOL)


def _mechanism_reason(cls: type[Model], platform: Platform) -> str | None:
    """Why a mechanism the DES models and the recursion does not makes the fast
    engine refuse, or None. A loop's per-event cost (``loop_event_us``) is a
    constant the recursion charges through ``request_cost``; its wake-up
    shared by a batch (``loop_wake_us``) depends on whether the loop slept,
    which a recursion over start times does not track; nor does it track who
    waits for a GIL, so a hand-off out of order (``gil_fifo_share``) is the
    DES's alone."""
    if platform.gil and platform.gil_fifo_share < 1 and cls.fast_mode not in (None, FastMode.LOOP):
        return (
            "the GIL handed to any waiting thread, not the oldest (the convoy effect), "
            "is modelled in the DES only (fast needs gil_fifo_share = 1)"
        )
    if platform.loop_wake_us > 0 and cls.fast_mode in _LOOP_MODES:
        return (
            "an event loop's wake-up shared by the events ready at it (batching) "
            "depends on whether the loop slept (fast needs loop_wake_us = 0)"
        )
    return None


class _Inputs:
    """Per-request arrivals and demands, drawn exactly as ``Model`` draws them."""

    def __init__(
        self, workload: Workload, platform: Platform, seed: np.random.SeedSequence, stop: float
    ) -> None:
        w = workload
        streams = Streams.of(seed)
        self.salt = streams.salt
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
        self.connection = conns.astype(np.int64)
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
) -> Record:
    """One replication by recursion: the same ``Record`` as ``run_replication``."""
    reason = reason_not_fast(model, workload, platform, arch)
    if reason is not None:
        raise UserError(f"--engine fast does not apply: {reason}")
    cls = get_model(model)
    stop = warmup + duration
    cls.check_request_cap(workload, stop)
    # The model instance gives the constant levels and flags the DES records;
    # its constructor draws nothing, so it does not disturb the random streams.
    shell = cls(simpy.Environment(), workload, platform, arch, seed=np.random.SeedSequence(0),
                stop=stop)  # fmt: skip
    inputs = _Inputs(workload, platform, seed_seq, stop)
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


def _run_kernel(
    cls: type[Model], workload: Workload, platform: Platform, arch: Architecture, inp: _Inputs
) -> tuple[np.ndarray, ...]:
    """The model's costs, as its ``request_cost`` charges them, and the loop."""
    # numba takes a moment to import: only runs that use the fast engine pay for it.
    from simlab.fast_kernel import recurse  # noqa: PLC0415

    assert cls.fast_mode is not None
    p = platform
    cost = cls.request_cost(workload)
    fixed = cost.thread_s(p)
    switch_cost = cost.switch_s(p)
    loop_cost = cost.loop_s(p)
    pays = cost.switches > 0 and p.context_switch_us > 0
    workers = arch.workers if cls.pooled else 0
    # Which process each request lands on, dealt as the DES deals: by the
    # order of accepts when a thread-pool takes connections in turn, else by
    # the connection's id.
    n = len(inp.arrival)
    by_accept = deal(np.arange(n, dtype=np.uint64), arch.processes, inp.salt)
    by_conn = deal(inp.connection, arch.processes, inp.salt)
    out: tuple[np.ndarray, ...] = recurse(
        int(cls.fast_mode),
        inp.arrival,
        inp.connection,
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
