"""Typed results: what a simulated run and a measured run report, with one JSON form and one row.

Every summary is a frozen dataclass whose fields are the JSON contract, in
order: ``to_dict()`` (and ``to_json()``) gives the object ``simlab simulate
--json`` and ``simlab measure --json`` print; ``to_row()`` gives one flat
row with fixed column names, the same names for a simulated and a measured
run wherever they hold the same quantity. Sweeps, the dashboard's tables,
validation and experiments all flatten through ``to_row``.

A measured run's classes live in ``simlab.measured`` and are importable from
here too, loaded on first use (PEP 562): a simulation does not pay to build
them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from simlab.params import Architecture, Platform, Workload
from simlab.provenance import json_safe

if TYPE_CHECKING:
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
    from simlab.overload.summary import OverloadSummary, Window

__all__ = [
    "CI",
    "SAMPLE_INTERVAL_S",
    "USER_SAMPLE_INTERVAL_S",
    "ConnectionCounts",
    "HistogramBlock",
    "InFlight",
    "LabCpu",
    "Level",
    "Little",
    "MeasuredMemory",
    "MeasuredStability",
    "MeasuredSummary",
    "MeasuredThreads",
    "MemoryLevel",
    "Peak",
    "Quantiles",
    "RunQueue",
    "SendDelay",
    "SimSummary",
    "SpeedReference",
    "Stability",
    "SwitchRates",
    "ThreadLevel",
]

# The measured run's names (``simlab.measured``), loaded when first asked for.
_MEASURED = frozenset({
    "ConnectionCounts", "HistogramBlock", "InFlight", "LabCpu", "Little", "MeasuredMemory",
    "MeasuredStability", "MeasuredSummary", "MeasuredThreads", "Peak", "RunQueue", "SendDelay",
    "SpeedReference", "SwitchRates",
})  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _MEASURED:
        from simlab import measured  # noqa: PLC0415 - see _MEASURED

        value = getattr(measured, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


CI = list[float] | None  # a 95% confidence interval [low, high], or None when unknown
OMIT_NONE = {"omit_none": True}  # a key that is left out of the JSON when it has no value


def _plain(value: Any) -> Any:
    if isinstance(value, Plain):
        return value.to_dict()
    if isinstance(value, Workload | Architecture | Platform):
        return value.describe()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class Plain:
    """A frozen dataclass that turns into JSON-ready data field by field."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[f.name] = _plain(value)
        cleaned: dict[str, Any] = json_safe(out)
        return cleaned

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


@dataclass(frozen=True)
class Quantiles(Plain):
    """A latency's mean and percentiles (ms), each with its 95% CI."""

    mean: float | None = None
    mean_ci95: CI = None
    p50: float | None = None
    p50_ci95: CI = None
    p95: float | None = None
    p95_ci95: CI = None
    p99: float | None = None
    p99_ci95: CI = None


@dataclass(frozen=True)
class Level(Plain):
    """A level over the measurement window: its peak and time-weighted mean."""

    peak: float
    peak_ci95: CI
    mean: float
    mean_ci95: CI


# How often the thread count is read for ``threads.peak``, on both sides: the
# real lab's probe reads the server's process tree every this many seconds
# (``simlab.real.probe``), and the simulation reads its exact level on the
# same grid (``simlab.metrics.sampled_peak``).
SAMPLE_INTERVAL_S = 0.1
# How often user memory (the tree's PSS, and the count of accepted sockets
# that kernel memory adds) is read, on both sides: every tenth read of the
# probe's grid. A PSS read costs milliseconds per process (smaps), so reading
# it every ``SAMPLE_INTERVAL_S`` would load a shared core for trees of many
# processes; a spacing fixed in advance, not adapted to the tree's size, is
# one the simulation can read its own level on (``simlab.metrics``).
USER_SAMPLE_INTERVAL_S = 1.0


@dataclass(frozen=True)
class ThreadLevel(Plain):
    """Threads alive and busy with a request.

    ``peak`` is the largest count read every ``SAMPLE_INTERVAL_S`` over the
    window, as the real lab's probe reads it (so ``simulate`` and ``measure``
    report the same quantity); ``peak_exact`` is the level's continuous-time
    maximum, which no sampler sees and which sizing uses (it is at least
    ``peak``). ``mean`` is time-weighted; ``busy_peak`` is exact.
    """

    peak: float
    peak_ci95: CI
    mean: float
    mean_ci95: CI
    busy_mean: float
    busy_mean_ci95: CI
    busy_peak: float
    peak_exact: float
    peak_exact_ci95: CI


@dataclass(frozen=True)
class MemoryLevel(Plain):
    """Memory in MiB: resident (user + kernel) peak and mean, reserved virtual,
    and the user-space and kernel parts (``simlab.footprint``).

    The peaks are read as the real lab's probe reads them, so that ``simulate``
    and ``measure`` report one quantity under each key: ``user_peak`` is the
    largest user level read every ``USER_SAMPLE_INTERVAL_S`` over the window;
    ``kernel_peak`` the largest kernel level read every ``SAMPLE_INTERVAL_S``;
    ``peak`` the largest of their sums read every ``SAMPLE_INTERVAL_S``, the
    user part as of its latest read; a simulated peak is the mean over the
    ten places of the user reads on that grid (``simlab.metrics.
    sampled_memory_peaks``), where a probe's fall by chance. The
    ``*_exact`` peaks are the levels'
    continuous-time maxima, at least as large, which no sampler sees and
    which sizing uses. Means are time-weighted.
    """

    peak: float
    peak_ci95: CI
    mean: float
    mean_ci95: CI
    virtual_peak: float
    virtual_peak_ci95: CI
    virtual_mean: float
    user_peak: float
    user_peak_ci95: CI
    user_mean: float
    kernel_peak: float
    peak_exact: float
    peak_exact_ci95: CI
    user_peak_exact: float
    user_peak_exact_ci95: CI
    kernel_peak_exact: float


@dataclass(frozen=True)
class Stability(Plain):
    """The offered load of each resource (rho), and why the run is unstable if it is."""

    offered_load: Mapping[str, float]
    reasons: tuple[str, ...]


def summary_row(s: Any, *, p99_ci: bool, connections: bool) -> dict[str, Any]:
    """The flat row of a simulated or a measured summary (``SimSummary`` or
    ``MeasuredSummary``), one set of column names for the quantities both
    have; ``p99_ci`` and ``connections`` add the columns only a simulation
    has (its p99's interval, the connections it held at the peak)."""
    lat, q, th, mem = s.latency_ms, s.queue_delay_ms, s.threads, s.memory_mib
    row: dict[str, Any] = {"model": s.model, "engine": s.engine}
    row["throughput_rps"] = s.throughput_rps
    row["throughput_ci_lo"], row["throughput_ci_hi"] = lo_hi(s.throughput_ci95)
    row["offered_rps"] = s.offered_rps
    for key in ("mean", "p50", "p95", "p99"):
        row[f"latency_{key}_ms"] = getattr(lat, key)
    row["latency_mean_ci_lo"], row["latency_mean_ci_hi"] = lo_hi(lat.mean_ci95)
    if p99_ci:
        row["latency_p99_ci_lo"], row["latency_p99_ci_hi"] = lo_hi(lat.p99_ci95)
    row["queue_delay_mean_ms"], row["queue_delay_p99_ms"] = q.mean, q.p99
    row["threads_peak"], row["threads_mean"] = th.peak, th.mean
    row["threads_busy_mean"] = th.busy_mean
    row["memory_peak_mib"], row["memory_mean_mib"] = mem.peak, mem.mean
    row["virtual_peak_mib"] = mem.virtual_peak
    row["memory_user_peak_mib"], row["memory_kernel_peak_mib"] = mem.user_peak, mem.kernel_peak
    if connections:
        row["connections_peak"] = s.connections.peak
    row["in_flight_mean"] = s.in_flight.mean
    row["cpu_utilization"] = s.cpu_utilization
    for key in ("requests", "completed", "dropped", "incomplete"):
        row[key] = getattr(s, key)
    row["stable"] = s.stable
    row["stability"] = "; ".join(s.stability.reasons)
    row.update(overload_columns(s.overload))
    cleaned: dict[str, Any] = json_safe(row)
    return cleaned


def lo_hi(ci: CI) -> tuple[float | None, float | None]:
    return (ci[0], ci[1]) if ci else (None, None)


@dataclass(frozen=True)
class SimSummary(Plain):
    """One model's simulated summary: the JSON contract of ``simlab simulate``."""

    model: str
    engine: str
    throughput_rps: float
    throughput_ci95: CI
    offered_rps: float | None
    latency_ms: Quantiles
    queue_delay_ms: Quantiles
    threads: ThreadLevel
    memory_mib: MemoryLevel
    connections: Level
    in_flight: Level
    queued: Level
    cpu_busy_cores: float
    cpu_utilization: float | None
    cpu_utilization_ci95: CI
    requests: int
    completed: int
    dropped: int
    incomplete: int
    stable: bool
    stability: Stability
    warnings: tuple[str, ...]
    replications: int
    seed: int
    duration_s: float
    warmup_s: float
    workload: Workload
    architecture: Architecture
    platform: Platform
    # Why ``--engine auto`` ran the DES: the fast engine cannot reproduce this
    # configuration (absent when the engine asked for, or the fast one, ran).
    engine_reason: str | None = field(default=None, metadata=OMIT_NONE)
    # Overload dynamics (``simlab.overload.summary``): left out of the JSON
    # unless an overload option (or ``timeline``) was given.
    overload: OverloadSummary | None = field(default=None, metadata=OMIT_NONE)
    timeline: tuple[Window, ...] | None = field(default=None, metadata=OMIT_NONE)

    def to_row(self) -> dict[str, Any]:
        """One flat row: the columns a sweep, a table or an experiment keeps."""
        return summary_row(self, p99_ci=True, connections=True)


def overload_columns(block: OverloadSummary | None) -> dict[str, Any]:
    """The overload block's columns in a flat row (none without it)."""
    if block is None:
        return {}
    rec = block.recovery
    return {
        "goodput_rps": block.goodput_rps,
        "retries": block.retries,
        "timeouts": block.timeouts,
        "wasted_share": block.wasted_share,
        "users_served": block.users_served,
        "bids_share": block.bids_share,
        "recovered_s": rec.recovered_s if rec is not None else None,
    }
