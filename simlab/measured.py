"""Typed results of a real run: the summary ``simlab measure --json`` prints.

Frozen dataclasses like ``simlab.results``' simulated summary, whose fields
are the JSON contract in order, with ``SimSummary``'s names wherever they hold
the same quantity. Apart from it because a simulation never needs them:
building these classes costs start-up (each dataclass compiles its methods),
and ``simlab.results`` loads this module only when one of its names is asked
for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from simlab.params import Architecture, Workload
from simlab.results import CI, OMIT_NONE, Plain, summary_row

if TYPE_CHECKING:
    from simlab.overload.summary import OverloadSummary, Window

__all__ = [
    "ConnectionCounts",
    "HistogramBlock",
    "InFlight",
    "LabCpu",
    "Little",
    "MeasuredMemory",
    "MeasuredStability",
    "MeasuredSummary",
    "MeasuredThreads",
    "Peak",
    "RunQueue",
    "SendDelay",
    "SpeedReference",
    "SwitchRates",
]


@dataclass(frozen=True)
class HistogramBlock(Plain):
    """A measured latency from HdrHistogram (ms): mean, percentiles, max, the
    mean's 95% CI from batch means, and how many requests it holds."""

    mean: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    mean_ci95: CI = None
    count: int | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class MeasuredThreads(Plain):
    """Threads of the server's process tree, and busy ones: ``peak`` is the
    largest of the probe's counts, read every ``SAMPLE_INTERVAL_S`` over the
    window (``ThreadLevel.peak``); ``mean`` is their mean."""

    peak: float | None
    mean: float | None
    busy_mean: float


@dataclass(frozen=True)
class MeasuredMemory(Plain):
    """Memory of the server (MiB), with ``MemoryLevel``'s meanings: resident =
    user + kernel (``peak``, ``mean``: their sum sample by sample); user =
    the process tree's PSS, read every ``USER_SAMPLE_INTERVAL_S``; kernel =
    the server's own kernel memory (its memory cgroup, read every
    ``SAMPLE_INTERVAL_S``, ``simlab.real.kernel``; None where it cannot be
    measured); reserved virtual = the tree's VMS. The peaks are the largest
    reads in the window (``MemoryLevel``'s sampled peaks). RSS and USS for
    reference."""

    peak: float | None
    mean: float | None
    virtual_peak: float | None
    user_peak: float | None
    user_mean: float | None
    kernel_peak: float | None
    kernel_mean: float | None
    rss_peak: float | None
    uss_peak: float | None


@dataclass(frozen=True)
class Peak(Plain):
    peak: float | None


@dataclass(frozen=True)
class SwitchRates(Plain):
    """Context switches per second of the server's tree."""

    voluntary: float | None
    involuntary: float | None


@dataclass(frozen=True)
class RunQueue(Plain):
    """How long the server's threads waited for a core, against what one
    queue of the machine's cores would make them wait
    (``simlab.real.probe.run_queue_waits``): over the window, from every
    thread's scheduler counts (``schedstat``), where the threads held still.

    ``wait_ms_per_request``: their time runnable but not running, a request
    served. ``shared_queue_ms_per_request``: the mean wait of M/M/c (Erlang
    C) with c the machine's cores, offered the machine's busy cores (every
    process's, the lab's included) in runs as long as the threads' mean
    run (``slice_ms``), times their runs a request; None at or over the
    cores. The simulation's cores are one such queue; Linux keeps one a core
    and places a woken thread on one of them."""

    wait_ms_per_request: float
    shared_queue_ms_per_request: float | None
    machine_busy_cores: float
    slice_ms: float
    slices_per_request: float


@dataclass(frozen=True)
class ConnectionCounts(Plain):
    """The load generator's connections: opened, failed to open, and open
    seconds; and, where pre-forked copies race for them (gthread), how many
    each copy accepted, most first, and which copy (its place in
    ``per_process``) took each connection, in the load generator's order
    (``probe.AcceptSplit``)."""

    opened: int
    failed: int
    open_seconds: float
    per_process: tuple[int, ...] | None = field(default=None, metadata=OMIT_NONE)
    per_connection: tuple[int, ...] | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class InFlight(Plain):
    mean: float


@dataclass(frozen=True)
class Little(Plain):
    """Little's law checked on a real run: sampled in flight against X x W."""

    in_flight_sampled: float
    throughput_x_latency: float | None
    rel_error: float | None


@dataclass(frozen=True)
class LabCpu(Plain):
    """CPU the lab's own processes used beside the server (on the same cores):
    the load generator per request sent, the backend per call made (us)."""

    client_us_per_request: float | None
    backend_us_per_call: float | None


@dataclass(frozen=True)
class SpeedReference(Plain):
    """The machine's speed right before and right after a real run
    (``simlab.real.speed``): ops per wall second of a fixed pure-Python
    workload like a server's overheads, the fastest of its batches, outside
    the measured window and inside the real-run lock; ``ops_s`` is the mean
    of the two, ``work`` names the workload (only equal names compare).

    And during the measured window (``simlab.real.speed.SpeedWatch``, None
    where not watched): ``during_ops_s``, the mean of the watch's 2-second
    readings (the best batch of each), and ``during_min_ops_s`` the slowest
    of them; ``steal_cores``, the CPU time the hypervisor took, in cores;
    ``stall_max_ms``, the watch's latest wake-up (a stall of the machine),
    and ``watch_nice``, the nice its thread ran at (``WATCH_NICE`` when it
    could have it: only then is a late wake-up the machine's, not the run's)."""

    ops_s: float
    before_ops_s: float
    after_ops_s: float
    work: str
    during_ops_s: float | None = field(default=None, metadata=OMIT_NONE)
    during_min_ops_s: float | None = field(default=None, metadata=OMIT_NONE)
    steal_cores: float | None = field(default=None, metadata=OMIT_NONE)
    stall_max_ms: float | None = field(default=None, metadata=OMIT_NONE)
    watch_nice: float | None = field(default=None, metadata=OMIT_NONE)

    @classmethod
    def of(
        cls, before: float, after: float, work: str, during: Mapping[str, float] | None = None
    ) -> SpeedReference:
        d = during or {}
        return cls(
            (before + after) / 2,
            before,
            after,
            work,
            d.get("during_ops_s"),
            d.get("during_min_ops_s"),
            d.get("steal_cores"),
            d.get("stall_max_ms"),
            d.get("watch_nice"),
        )


@dataclass(frozen=True)
class MeasuredStability(Plain):
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class SendDelay(Plain):
    """How late the load generator sent (ms): its own lag, a check on the load,
    and a client's wait for its connection's previous request to be answered.
    ``queued_behind`` counts the measured requests that waited so. ``pacing``:
    how its sends and answers were timed (``simlab.real.pacing``: "loop", on
    the event loop's whole-millisecond clock; "timer", on the monotonic clock
    with a timer of its own)."""

    p50: float
    p99: float
    queued_behind: int | None = None
    pacing: str = "loop"


@dataclass(frozen=True)
class MeasuredSummary(Plain):
    """One real run's summary: the JSON contract of ``simlab measure``."""

    model: str
    engine: str
    resembles: str
    platform: str  # the platform (runtime) the server runs on, as the model names it
    runtime: Mapping[str, str]  # the versions of a peer's runtime, empty for simlab's own
    throughput_rps: float
    throughput_ci95: CI
    offered_rps: float | None
    latency_ms: HistogramBlock
    queue_delay_ms: HistogramBlock
    service_ms: HistogramBlock
    threads: MeasuredThreads
    memory_mib: MeasuredMemory
    processes: Peak
    fds: Peak
    # Each process's main thread's only (psutil reads ``/proc/PID/status``,
    # the thread group leader's counts): a threaded server's other threads
    # are not in them.
    context_switches_per_s: SwitchRates
    # Every thread's, over the window's length from the warm-up's scheduled end;
    # None where the server's threads came and went (``simlab.real.probe``).
    thread_switches_per_s: SwitchRates | None
    connections: ConnectionCounts
    in_flight: InFlight
    little: Little
    cpu_busy_cores: float
    cpu_utilization: float | None
    lab_cpu: LabCpu
    requests: int
    completed: int
    dropped: int
    incomplete: int
    errors: Mapping[str, int]
    stable: bool
    stability: MeasuredStability
    send_delay_ms: SendDelay | None = field(default=None, metadata=OMIT_NONE)
    warnings: tuple[str, ...] = ()
    workload: Workload | None = None
    architecture: Architecture | None = None
    seed: int = 1
    duration_s: float = 0.0
    warmup_s: float = 0.0
    started: str = ""
    machine: Mapping[str, Any] = field(default_factory=dict)
    git_revision: str = ""
    took_s: float = 0.0
    overload: OverloadSummary | None = field(default=None, metadata=OMIT_NONE)
    timeline: tuple[Window, ...] | None = field(default=None, metadata=OMIT_NONE)
    speed_reference: SpeedReference | None = field(default=None, metadata=OMIT_NONE)
    # Where the server's threads held still over the window (``RunQueue``).
    run_queue: RunQueue | None = field(default=None, metadata=OMIT_NONE)

    def to_row(self) -> dict[str, Any]:
        """One flat row, with ``SimSummary.to_row``'s names where the quantity is the same."""
        return summary_row(self, p99_ci=False, connections=False)
