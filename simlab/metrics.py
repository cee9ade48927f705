"""Turning one replication's record into levels and numbers, and replications into a summary.

Levels (threads alive, threads busy, memory, queue lengths, in-flight
requests) are piecewise-constant functions of time. They are not sampled
during the run: they are rebuilt afterwards from the per-request times and
the interval records, exactly, so the simulation's hot path only writes
timestamps. Peaks and time-weighted means are exact over the window.

Across replications, each mean carries a 95% confidence interval from the
t distribution over independent replications (``simlab.stats.ci95``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from simlab import kernels
from simlab.footprint import KIB_PER_MIB, Units, unit_costs
from simlab.models.base import COMPLETED, DROPPED, Record
from simlab.overload.policy import ABANDONED
from simlab.params import Platform
from simlab.results import SAMPLE_INTERVAL_S, USER_SAMPLE_INTERVAL_S

# Waits under this share of the run's horizon are rounding of the clock, not
# waits: 64 float64 epsilons covers the three roundings of end - arrival -
# service with room to spare.
ROUNDING = 64 * float(np.finfo(np.float64).eps)

__all__ = [
    "PROBED",
    "Step",
    "Sweep",
    "level_parts",
    "probe_grid",
    "replication_levels",
    "replication_summary",
    "sampled_memory_peaks",
    "sampled_peak",
    "series",
    "window_stats",
    "window_sweep",
]


@dataclass(frozen=True)
class Step:
    """A level equal to ``base`` before ``times[0]`` and to ``levels[k]`` from ``times[k]`` on."""

    times: np.ndarray
    levels: np.ndarray
    base: float

    @classmethod
    def build(cls, parts: list[tuple[np.ndarray, np.ndarray, float]], base: float = 0.0) -> Step:
        """Sum of ``weight`` over intervals [start, end); an end of nan or inf never comes."""
        times: list[np.ndarray] = []
        deltas: list[np.ndarray] = []
        for starts, ends, weight in parts:
            if weight == 0 or len(starts) == 0:
                continue
            began = ~np.isnan(starts)
            s, e = starts[began], ends[began]
            times.append(s)
            deltas.append(np.full(len(s), weight))
            ended = np.isfinite(e)
            times.append(e[ended])
            deltas.append(np.full(int(ended.sum()), -weight))
        t = np.concatenate(times) if times else np.empty(0)
        if len(t) == 0:
            return cls(np.empty(0), np.empty(0), float(base))
        d = np.concatenate(deltas)
        order = np.argsort(t, kind="stable")
        t, d = t[order], d[order]
        # Events at the same instant are netted first, so an interval ending as
        # another starts does not show as a momentary peak.
        first = np.flatnonzero(np.concatenate(([True], t[1:] != t[:-1])))
        return cls(t[first], base + np.cumsum(np.add.reduceat(d, first)), float(base))

    def window(self, t0: float, t1: float) -> tuple[float, float]:
        """(peak, time-weighted mean) over [t0, t1)."""
        k0 = int(np.searchsorted(self.times, t0, side="right"))
        k1 = int(np.searchsorted(self.times, t1, side="left"))
        first = self.base if k0 == 0 else float(self.levels[k0 - 1])
        values = np.concatenate(([first], self.levels[k0:k1]))
        edges = np.concatenate(([t0], self.times[k0:k1], [t1]))
        # numpy's own pairwise sum, not a BLAS dot: OpenBLAS splits a long dot
        # over its threads, so the last digits would depend on the machine's
        # cores (and its thread pool costs more than the sum on short runs).
        mean = float(np.add.reduce(values * np.diff(edges)) / (t1 - t0))
        return float(values.max()), mean

    def at(self, grid: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.times, grid, side="right")
        padded = np.concatenate(([self.base], self.levels))
        return padded[idx]


def _ends(end: np.ndarray) -> np.ndarray:
    # nan -> inf in one pass (fmin takes the number over a nan): the same floats.
    out: np.ndarray = np.fmin(end, math.inf)
    return out


Part = tuple[np.ndarray, np.ndarray, float]
Parts = tuple[list[Part], float]  # the parts and the base of one level

# From this many requests in a replication on, the summary's peaks, means and
# the probe's reads come from ``window_sweep`` (one compiled sweep and sums
# over the intervals) rather than from step functions: the same numbers up to
# rounding (exact for counts). With the kernels built (``make``), the sweep
# is the quicker from a few thousand requests on (a DES run of 50,000 on the
# default platform: 9 against 37 ms; 20,000: 4 against 15); without them,
# numpy's binary searches stand in for it, a little slower than the step
# functions (17 against 12 ms at 20,000), which only an install without a
# compiler pays. One threshold for both, so that a run's digits never depend
# on whether the kernels were built; under it, small runs (the golden files)
# keep their digits.
SWEEP_MIN_REQUESTS = 10_000


def replication_levels(rec: Record, platform: Platform) -> dict[str, Step]:
    """Every level of one replication as a step function, memory in MiB."""
    return {
        key: Step.build(parts, base) for key, (parts, base) in level_parts(rec, platform).items()
    }


def level_parts(
    rec: Record,
    platform: Platform,
    rtt: np.ndarray | None = None,
    orders: dict[int, np.ndarray] | None = None,
) -> dict[str, Parts]:
    """Every level of one replication as its weighted intervals and base, memory in MiB.

    ``rtt`` is ``client_path(rec, platform)`` when the caller has drawn it already.
    ``orders``, when given, gets an order that nearly sorts the ends of the
    parts that end with the requests (``_end_order``), by the id of their
    ends' array, for ``window_sweep``.
    """
    c = rec.columns
    arrival, admit, start, end = c["arrival"], c["admit"], c["start"], c["end"]
    dropped = c["outcome"] == DROPPED
    # Where none was dropped (most runs) every column is read where it is: a
    # masked copy of each would be the same values, a few ms a million.
    kept: np.ndarray | slice = ~dropped if bool(dropped.any()) else slice(None)
    # The client sees each answer rtt after the server sends it.
    if rtt is None:
        rtt = client_path(rec, platform)
    end_kept = _ends(end[kept]) + rtt[kept]
    # One array per column, so that levels sharing a part share its sweep.
    arrival_kept = arrival[kept]
    if "gave_up" in c:
        # A client that gave up no longer waits (simlab.overload): its wait ends there.
        end_kept = np.fmin(end_kept, _ends(c["gave_up"][kept]))
    busy_end = start + c["cpu_time"] if rec.busy_on_cpu else _ends(end)
    if not rec.busy_on_cpu and "let_go" in c:
        # A worker let go before the end: a loop or a front writes the rest out.
        busy_end = np.where(np.isnan(c["let_go"]), busy_end, c["let_go"])
    if orders is not None and isinstance(kept, slice):
        _note_orders(rec, orders, end_kept, busy_end)
    iv = rec.intervals
    base = rec.base
    threads = (iv["threads"][0], iv["threads"][1], 1.0)
    forks = (iv["forks"][0], iv["forks"][1], 1.0)
    conns = (iv["connections"][0], iv["connections"][1], 1.0)
    server = (admit[kept], end_kept, 1.0)
    levels: dict[str, Parts] = {
        "threads_alive": ([threads], float(base["threads"])),
        "threads_busy": ([(start, busy_end, 1.0)], 0.0),
        "connections": ([conns], float(base["connections"])),
        "in_flight": ([(arrival_kept, end_kept, 1.0)], 0.0),
        "queued": (
            [(arrival_kept, np.where(np.isnan(start[kept]), math.inf, start[kept]), 1.0)],
            0.0,
        ),
        "cpu_busy": ([(iv["cpu"][0], iv["cpu"][1], 1.0)], 0.0),
    }
    # Memory: each unit's life weighted by its cost (``simlab.footprint``).
    # Pre-forked copies serve from the start, so their copy-on-write growth
    # is counted from time 0.
    costs = unit_costs(platform)
    # A buffering front (two-tier) holds its client connections at its own cost.
    front_conns = base.get("front_conns", 0)
    base_units = Units(
        touched=base.get("copies", 0),
        fork=base["forks"],
        # A copy's growth and its first call come with its first requests:
        # counted from the start too (a copy of a process-per-connection
        # server only accepts: its children grow, ``touched`` and ``called``).
        copy=0 if rec.own_process else base.get("copies", 0),
        copy_call=base.get("copies", 0) if rec.calls > 0 and not rec.own_process else 0,
        # Children forked per connection and held all run (persistent ones).
        child=base["forks"] - base.get("copies", 0),
        thread=base["threads"],
        connection=base["connections"] - front_conns,
        front=base.get("fronts", 0),
        front_conn=front_conns,
    ).footprint(platform)
    fork, thread, conn = costs["fork"], costs["thread"], costs["connection"]
    user_parts = [
        (forks[0], forks[1], fork[0] / KIB_PER_MIB),
        (threads[0], threads[1], thread[0] / KIB_PER_MIB),
        (conns[0], conns[1], conn[0] / KIB_PER_MIB),
        (server[0], server[1], costs["task"][0] / KIB_PER_MIB),
    ]
    # The fork intervals are children forked per connection: their own kernel cost.
    kernel_parts = [
        (forks[0], forks[1], (fork[1] + costs["child"][1]) / KIB_PER_MIB),
        (threads[0], threads[1], thread[1] / KIB_PER_MIB),
        (conns[0], conns[1], conn[1] / KIB_PER_MIB),
    ]
    first_use, last = _first_use(rec)
    if rec.calls > 0:
        backend = costs["backend_conn"]
        # One backend connection per worker from its first call, or, from a
        # shared pool, one per request ever in service at once.
        opened, kept_open = (
            _pool_growth(start, busy_end) if platform.backend_pool else (first_use, last)
        )
        user_parts.append((opened, kept_open, backend[0] / KIB_PER_MIB))
        kernel_parts.append((opened, kept_open, backend[1] / KIB_PER_MIB))
    # A thread that has served holds more than an idle one (its grown stack,
    # its runtime's buffers): counted from its first request.
    if costs["served"][0] > 0:
        user_parts.append((first_use, last, costs["served"][0] / KIB_PER_MIB))
    if rec.own_process:
        user_parts.append((first_use, last, costs["touched"][0] / KIB_PER_MIB))
        if rec.calls > 0:
            user_parts.append((first_use, last, costs["called"][0] / KIB_PER_MIB))
    # A slow client's bytes wait in socket buffers while they trickle.
    for kind, kib in zip(("send_buffers", "recv_buffers"), rec.buffers_kib, strict=True):
        if kind in iv and len(iv[kind][0]):
            kernel_parts.append((iv[kind][0], iv[kind][1], kib / KIB_PER_MIB))
    user_base, kernel_base = base_units.user_kib, base_units.kernel_kib
    levels["user_mib"] = (user_parts, user_base / KIB_PER_MIB)
    levels["kernel_mib"] = (kernel_parts, kernel_base / KIB_PER_MIB)
    levels["memory_mib"] = (user_parts + kernel_parts, (user_base + kernel_base) / KIB_PER_MIB)
    levels["virtual_mib"] = (
        [(threads[0], threads[1], thread[2] / KIB_PER_MIB)],
        base_units.reserved_kib / KIB_PER_MIB,
    )
    return levels


def _note_orders(
    rec: Record, orders: dict[int, np.ndarray], end_kept: np.ndarray, busy_end: np.ndarray
) -> None:
    """The order of the requests' ends (``_end_order``) for the parts that
    end with them, by the id of their ends' array: the requests in flight
    (the client's path, rtt, moves each end by a little: still nearly in
    order along it) and, where a worker is busy to the end, the workers'."""
    order = _end_order(rec)
    if order is None:
        return
    orders[id(end_kept)] = order
    if not rec.busy_on_cpu:
        orders[id(busy_end)] = order


def _end_order(rec: Record) -> np.ndarray | None:
    """Every request's index, those answered in the order their ends were
    written (``Record.end_order``), then those never answered: the ends (nan
    -> inf) read in this order are sorted. None where the record has no such
    order, or one that does not cover its answered requests."""
    order = rec.end_order
    end = rec.columns["end"]
    if order is None:
        return None
    unanswered = np.flatnonzero(np.isnan(end))
    if len(order) + len(unanswered) != len(end):
        return None
    full = np.concatenate((order, unanswered)) if len(unanswered) else order
    # Every index once (read in an order that repeats one, the ends would
    # be other values, sorted or not).
    seen = np.zeros(len(end), dtype=bool)
    seen[full] = True
    return full if bool(seen.all()) else None


@dataclass(frozen=True)
class Sweep:
    """What one pass over a replication's levels gives (``window_sweep``).

    ``stats``: each level's (peak, time-weighted mean) over [t0, t1);
    ``reads``: the levels asked for, read on the grid (``Step.at``);
    ``at_t0``, ``at_t1``: each level after every event at or before t0, t1.
    """

    stats: dict[str, tuple[float, float]]
    reads: dict[str, np.ndarray]
    at_t0: dict[str, float]
    at_t1: dict[str, float]


def window_stats(
    levels: dict[str, Parts], t0: float, t1: float, *, compiled: bool | None = None
) -> dict[str, tuple[float, float]]:
    """Each level's (peak, time-weighted mean) over [t0, t1) (``Step.window``
    without building the step functions): ``window_sweep``'s ``stats``."""
    return window_sweep(levels, t0, t1, compiled=compiled).stats


def window_sweep(
    levels: dict[str, Parts],
    t0: float,
    t1: float,
    *,
    grid: np.ndarray | None = None,
    read: tuple[str, ...] = (),
    compiled: bool | None = None,
    orders: dict[int, np.ndarray] | None = None,
    with_peaks: bool = True,
) -> Sweep:
    """Each level's peak and time-weighted mean over [t0, t1), the levels
    ``read`` on ``grid`` (ascending, under t1), and every level at t0 and
    t1, without building the step functions.

    A mean is the base plus each part's weight times the total time its
    intervals overlap the window, over the window's length. The peaks and
    the reads come from one compiled sweep over the starts of every distinct
    part (``simlab.levels_kernel``): levels that share a part share its
    sweep. ``compiled`` False gives the same numbers by binary searches in
    numpy (``_peaks_by_search``, ``_reads_by_search``); None takes the sweep
    only when the kernels are built, numba is loaded already (the fast
    engine's runs) or a weight is negative. ``orders``: for a part's ends
    (by the id of their array), an order of their indices that nearly sorts
    them (``level_parts``): read in it, they are sorted by a check or a
    short timsort rather than a sort (the same array). ``with_peaks`` False: the
    means, the levels at t0 and t1 and the reads only, each peak nan (the
    sweep's other use, the reads, still runs where a grid is given).
    """
    unique: dict[tuple[int, int], int] = {}  # a part's arrays -> its column
    given: list[tuple[np.ndarray, np.ndarray]] = []
    rows: list[dict[int, float]] = []
    for parts, _ in levels.values():
        row: dict[int, float] = {}
        for starts, ends, weight in parts:
            if weight == 0 or len(starts) == 0:
                continue
            key = (id(starts), id(ends))
            if key not in unique:
                unique[key] = len(given)
                given.append((starts, ends))
            col = unique[key]
            row[col] = row.get(col, 0.0) + weight
        rows.append(row)
    # Every distinct part's intervals (those begun, sorted by start, ends nan
    # -> inf) written once into the three arrays the sweep reads (starts,
    # ends, the ends sorted), each part a slice of them: no per-part copies
    # concatenated afterwards, and a part whose ends come in order already (a
    # CPU's phases) is not sorted again. The same floats as cleaning, sorting
    # and concatenating part by part.
    # Two parts of the same intervals under different arrays (a reactor's
    # requests in flight and its server's stays: admitted as they arrive)
    # are gathered, summed and swept once, each keeping its own column of
    # weights: the same floats, a part fewer to sort and sweep.
    canon = _same_intervals(given)
    arrays, all_starts, all_ends, all_by_end, offsets = _gather(given, canon, orders or {})
    by_end = [all_by_end[offsets[c] : offsets[c + 1]] for c in canon]
    weights = np.zeros((len(rows), len(arrays)))
    for lv, row in enumerate(rows):
        for col, w in row.items():
            weights[lv, col] = w
    if compiled is None:
        compiled = kernels.ready() or not bool((weights >= 0).all())
    gathered = (all_starts, all_ends, offsets) if compiled else None
    overlap = _overlaps(arrays, canon, t0, t1, gathered)
    bases = np.array([base for _, base in levels.values()], dtype=np.float64)
    means = bases + weights @ np.array(overlap, dtype=np.float64) / (t1 - t0)
    # The level at t0 (and t1): every interval begun at or before it and not
    # yet ended. Each part's ends in time order: the sweep reads them, and
    # the intervals open at t are those begun by t less those ended by then
    # (an interval ended by t began by t).

    def level_at(t: float) -> np.ndarray:
        open_at = [
            float(np.searchsorted(s, t, "right") - np.searchsorted(e, t, "right"))
            for (s, _, _), e in zip(arrays, by_end, strict=True)
        ]
        at: np.ndarray = bases + weights @ np.array(open_at, dtype=np.float64)
        return at

    level0, level1 = level_at(t0), level_at(t1)
    keys = list(levels)
    read_rows = np.array([keys.index(k) for k in read], dtype=np.int64)
    points = np.empty(0) if grid is None else np.asarray(grid, dtype=np.float64)
    if len(points) and not (points[-1] < t1 and bool(np.all(points[1:] >= points[:-1]))):
        raise ValueError("window_sweep's grid must be ascending and under t1")
    if not with_peaks and not len(points):
        # Neither peaks nor reads asked: no sweep.
        peaks, reads = level0, np.empty((len(read_rows), 0))
    elif arrays and not compiled:
        # numba's import and first call (about 0.9 s of CPU) would cost the DES
        # more than the sweep saves: without the kernels built ahead of time
        # (``simlab.kernels``), only the fast engine has loaded numba already.
        peaks = _peaks_by_search(arrays, weights, bases, (float(t0), float(t1)), level0)
        reads = _reads_by_search(arrays, by_end, weights, bases, points, read_rows)
    elif arrays:
        from simlab.kernels import sweep_levels  # noqa: PLC0415

        peaks, reads = sweep_levels(
            all_starts,
            all_ends,
            all_by_end,
            offsets,
            weights,
            bases,
            float(t0),
            float(t1),
            level0,
            points,
            read_rows,
            np.array(canon, dtype=np.int64),
        )
    else:
        peaks = level0
        reads = np.repeat(bases[read_rows][:, None], len(points), axis=1)
    top = peaks if with_peaks else np.full(len(keys), math.nan)
    return Sweep(
        stats={key: (float(top[i]), float(means[i])) for i, key in enumerate(keys)},
        reads={key: reads[r] for r, key in enumerate(read)},
        at_t0={key: float(level0[i]) for i, key in enumerate(keys)},
        at_t1={key: float(level1[i]) for i, key in enumerate(keys)},
    )


def _overlaps(
    arrays: list[Part],
    canon: list[int],
    t0: float,
    t1: float,
    gathered: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> list[float]:
    """Each part's total time of its intervals inside [t0, t1): numpy's
    pairwise sum of the positive overlaps, once for parts of the same
    intervals. ``gathered``: ``_gather``'s starts, ends and offsets, for the
    compiled pass (``_overlaps_compiled``)."""
    if gathered is not None and arrays:
        return _overlaps_compiled(*gathered, canon, t0, t1)
    overlap: list[float] = []
    scratch = np.empty(max((len(s) for s, _, _ in arrays), default=0))
    for q, (s, e, _) in enumerate(arrays):
        if canon[q] != q:
            overlap.append(overlap[canon[q]])
            continue
        o = np.minimum(e, t1, out=scratch[: len(e)])
        # Starts are sorted: from the window's start on, max(s, t0) is s itself.
        o -= s if len(s) == 0 or s[0] >= t0 else np.maximum(s, t0)
        overlap.append(float(o[o > 0].sum()))
    return overlap


def _overlaps_compiled(  # noqa: PLR0917 - the gathered arrays, as window_sweep has them
    starts: np.ndarray,
    ends: np.ndarray,
    offsets: np.ndarray,
    canon: list[int],
    t0: float,
    t1: float,
) -> list[float]:
    """``_overlaps`` from the gathered arrays: the positive overlaps written
    by one compiled pass (``levels_kernel.positive_overlaps``), each part's
    summed by numpy as ``_overlaps`` sums them: the same floats."""
    from simlab.kernels import positive_overlaps  # noqa: PLC0415

    out = np.empty(len(starts))
    counts = positive_overlaps(starts, ends, offsets, float(t0), float(t1), out)
    return [float(np.add.reduce(out[offsets[c] : offsets[c] + counts[c]])) for c in canon]


def _same_intervals(given: list[tuple[np.ndarray, np.ndarray]]) -> list[int]:
    """For each part, the first part with the same starts and ends (nan
    where it has nan), or itself."""
    canon = list(range(len(given)))
    for j, (s, e) in enumerate(given):
        for i in range(j):
            a, b = given[i]
            if canon[i] == i and _same(a, s) and _same(b, e):
                canon[j] = i
                break
    return canon


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a is b:
        return True
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    # A sample first: columns that differ mostly differ in it.
    sample = slice(None, None, 1021)
    return bool(np.array_equal(a[sample], b[sample], equal_nan=True)) and bool(
        np.array_equal(a, b, equal_nan=True)
    )


def _sorted_ends(ends: np.ndarray, order: np.ndarray | None, out: np.ndarray) -> None:
    """``ends`` sorted, written into ``out``: read in ``order`` where one is
    given (indices that nearly sort them, ``window_sweep``'s ``orders``),
    then sorted if they are not yet, by timsort where they are in order but
    locally. Sorted arrays of the same values are the same array, whichever
    way they were sorted."""
    if order is not None:
        np.take(ends, order, out=out)
    else:
        out[:] = ends
    if len(out) > 1 and not bool(np.all(out[1:] >= out[:-1])):
        out.sort(kind="stable" if order is not None else _sort_kind(out))


def _gather(
    given: list[tuple[np.ndarray, np.ndarray]],
    canon: list[int],
    orders: dict[int, np.ndarray],
) -> tuple[list[Part], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The parts ``given`` as the sweep reads them, as slices of three
    arrays: every part's starts of the intervals begun, sorted (stably),
    its ends in the starts' order with nan -> inf (``_ends``), and the same
    ends sorted, part after part; and where each part's slice begins (the
    last entry: where the last ends). A part whose ``canon`` is another
    reads that part's slices; its own are empty. ``orders``: orders that
    nearly sort a part's ends, by the id of its ends' array as given."""
    if len(given) == 1:
        s, e = given[0]
        if len(s) > 1 and bool(np.all(s[1:] >= s[:-1])) and not bool(np.isnan(e).any()):
            # One part as the sweep reads it already (sorted starts, so none
            # is nan; no nan end): read where it is, only its ends sorted.
            order = orders.get(id(e))
            s, e = np.ascontiguousarray(s, np.float64), np.ascontiguousarray(e, np.float64)
            by_end = e if bool(np.all(e[1:] >= e[:-1])) else np.empty(len(e))
            if by_end is not e:
                _sorted_ends(e, order, by_end)
            return [(s, e, 1.0)], s, e, by_end, np.array([0, len(s)], dtype=np.int64)
    # Only the intervals begun (a start of nan never began); no mask kept
    # where every one did.
    masks = [None if canon[q] != q else ~np.isnan(s) for q, (s, _) in enumerate(given)]
    began = [None if m is None or bool(m.all()) else m for m in masks]
    sizes = [
        0 if canon[q] != q else len(s) if b is None else int(np.count_nonzero(b))
        for q, ((s, _), b) in enumerate(zip(given, began, strict=True))
    ]
    total = sum(sizes)
    starts, ends, by_end = np.empty(total), np.empty(total), np.empty(total)
    offsets = np.cumsum([0, *sizes], dtype=np.int64)
    arrays: list[Part] = []
    # Parts that share their ends (requests in flight, the server's own
    # stays; on a platform without a client path, the workers' busy ends
    # too, equal in other arrays) share their sorted ends: sorted once.
    done: list[tuple[np.ndarray, np.ndarray]] = []  # the ends given, sorted
    at = 0
    for q, ((s, e), b, size) in enumerate(zip(given, began, sizes, strict=True)):
        if canon[q] != q:
            arrays.append(arrays[canon[q]])
            continue
        s_out, e_out, sorted_out = (
            starts[at : at + size],
            ends[at : at + size],
            by_end[at : at + size],
        )
        if b is None:
            s_out[:] = s
            np.fmin(e, math.inf, out=e_out)
        else:
            s_out[:] = s[b]
            np.fmin(e[b], math.inf, out=e_out)
        # An order of the ends as given reads them only where they stay in
        # that order: every interval begun, the starts in order already.
        hint = orders.get(id(e)) if b is None else None
        if size > 1 and not bool(np.all(s_out[1:] >= s_out[:-1])):
            # Starts are nearly in order (send order, FCFS): timsort is quick on them.
            order = np.argsort(s_out, kind="stable")
            s_out[:] = s_out[order]
            e_out[:] = e_out[order]
            hint = None
        shared = next((out for raw, out in done if _same(raw, e)), None) if b is None else None
        if shared is not None:
            sorted_out[:] = shared
        else:
            _sorted_ends(e_out, hint, sorted_out)
            if b is None:
                done.append((e, sorted_out))
        arrays.append((s_out, e_out, 1.0))
        at += size
    return arrays, starts, ends, by_end, offsets


def _sort_kind(values: np.ndarray) -> Literal["stable", "quicksort"]:
    """How to sort ``values``: by timsort (numpy's stable sort for floats)
    where they are in order but locally (a part's ends in the order of its
    starts: each request ends a service time after it starts, so only the
    ends of requests in service at once are out of order), else by numpy's
    default. Timsort merges the long ordered stretches it finds: 14 against
    24 ms on the 500,000 ends of an M/M/100 run (AMD EPYC, numpy 2.4), where
    on values in no order it takes 1.7 times as long. In order but locally:
    every 997th value in order (random values would be out of order half
    the time). Either sort gives the same array."""
    every = values[::997]
    if len(every) > 2 and bool(np.all(every[1:] >= every[:-1])):
        return "stable"
    return "quicksort"


def _reads_by_search(  # noqa: PLR0917 - the sweep's arrays, as window_sweep has them
    arrays: list[Part],
    by_end: list[np.ndarray],
    weights: np.ndarray,
    bases: np.ndarray,
    grid: np.ndarray,
    rows: np.ndarray,
) -> np.ndarray:
    """``sweep_levels``' reads without numba: the same floats.

    Each part's count at an instant is its starts up to it less its ends up
    to it; a level adds ``weight * count`` part by part in ascending order
    from its base, as the sweep does.
    """
    counts: dict[int, np.ndarray] = {}
    out = np.empty((len(rows), len(grid)))
    for r, lv in enumerate(rows):
        level = np.full(len(grid), bases[lv])
        for q in (int(x) for x in np.flatnonzero(weights[lv])):
            if q not in counts:
                s, e = arrays[q][0], by_end[q]
                counts[q] = np.searchsorted(s, grid, "right") - np.searchsorted(e, grid, "right")
            level = level + weights[lv, q] * counts[q]
        out[r] = level
    return out


def _peaks_by_search(
    arrays: list[Part],
    weights: np.ndarray,
    bases: np.ndarray,
    window: tuple[float, float],
    level0: np.ndarray,
) -> np.ndarray:
    """``sweep_peaks``' numbers without numba, for weights >= 0: the same floats.

    A level can only rise at an instant where an interval of one of its parts
    starts (and lasts), so its peak is its highest value at the starts in
    (t0, t1) (or ``level0``); with weights >= 0, evaluating it at the starts
    of parts it does not sum as well changes nothing. Each part's count at an
    instant is its starts up to it less its ends up to it (intervals of no
    length never count), found by binary search in its sorted starts and
    ends; the level adds ``weight * count`` part by part in ascending order,
    as the sweep does, so each sum is the same floating-point number.
    """
    t0, t1 = window
    kept = [(s[e > s], e[e > s]) for s, e, _ in arrays]
    starts = np.concatenate([s for s, _ in kept])
    instants = np.unique(starts[(starts > t0) & (starts < t1)])
    counts = [
        np.searchsorted(s, instants, "right") - np.searchsorted(np.sort(e), instants, "right")
        for s, e in kept
    ]
    peaks = level0.copy()
    if len(instants) == 0:
        return peaks
    for lv in range(len(bases)):
        level = np.full(len(instants), bases[lv])
        for q in np.flatnonzero(weights[lv]):
            level = level + weights[lv, q] * counts[q]
        peaks[lv] = max(peaks[lv], float(level.max()))
    return peaks


# The client path's draws have a generator of their own, keyed by the seed,
# the replication and this tag, so that they do not disturb the model's
# streams and are the same for a replication whatever the model or engine.
CLIENT_PATH_STREAM = 0x977


def client_path(rec: Record, platform: Platform) -> np.ndarray:
    """Each request's client and loopback time (seconds), drawn from the
    platform's rtt distribution with a generator seeded by the replication."""
    n = len(rec.columns["arrival"])
    dist = platform.rtt()
    if dist.mean == 0:
        return np.zeros(n)
    rng = np.random.default_rng([rec.seed, rec.replication, CLIENT_PATH_STREAM])
    return dist.sample(rng, n)


def _pool_growth(start: np.ndarray, busy_end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """When a shared pool of backend connections opens each of its connections.

    A pool opens a connection only when every one it holds is in use, and
    keeps it: it holds the peak number of requests in service so far. Each
    time that peak rises, a connection opens for good (its end is inf).
    """
    served = ~np.isnan(start)
    if not served.any():
        return np.empty(0), np.empty(0)
    starts, ends = start[served], np.nan_to_num(busy_end[served], nan=math.inf)
    times = np.concatenate((starts, ends))
    # An end at the same time as a start is counted first: the connection is
    # handed back before it is asked for again.
    steps = np.concatenate((np.ones(len(starts)), -np.ones(len(ends))))
    order = np.lexsort((steps, times))
    level = np.cumsum(steps[order])
    peak = np.maximum.accumulate(level)
    rises = np.flatnonzero(np.diff(np.concatenate(([0.0], peak))) > 0)
    opened = times[order][rises]
    return opened, np.full(len(opened), math.inf)


def _first_use(rec: Record) -> tuple[np.ndarray, np.ndarray]:
    """For each worker that served a request: when it first did, and when it ends."""
    c = rec.columns
    served = ~np.isnan(c["start"]) & (c["worker"] >= 0)
    if not served.any():
        return np.empty(0), np.empty(0)
    worker = c["worker"][served].astype(np.int64)
    start = c["start"][served]
    top = int(worker.max())
    if top < 4 * len(worker) + 1024:
        # Each worker's earliest start, in a table by worker id (a pool's few
        # ids): a minimum is the same number whatever the order it is taken in.
        if kernels.ready():
            from simlab.kernels import earliest as by_key  # noqa: PLC0415

            earliest = by_key(worker, start, top + 1)
        else:
            earliest = np.full(top + 1, math.inf)
            np.minimum.at(earliest, worker, start)
        workers = np.flatnonzero(earliest < math.inf)
        times = earliest[workers]
    else:
        # Sparse ids (a thread per connection): a stable sort of the ids and a
        # minimum per run, rather than a sort of the times.
        order = np.argsort(worker, kind="stable")
        worker, start = worker[order], start[order]
        first = np.flatnonzero(np.concatenate(([True], worker[1:] != worker[:-1])))
        workers, times = worker[first], np.minimum.reduceat(start, first)
    if rec.worker_is_thread_handle:
        ends = rec.intervals["threads"][1][workers]
    else:
        ends = np.full(len(workers), math.inf)
    return times, ends


# The one level whose peak no summary reads (the CPU's: its mean gives the
# busy cores), left out of a replication's numbers: a large run's summary
# then sweeps the CPU's phases (the most intervals) for nothing.
UNREAD_PEAK = "cpu_busy_peak"


def replication_summary(
    rec: Record, platform: Platform, levels: dict[str, Step] | None = None
) -> dict[str, Any]:
    """One replication's numbers over the measurement window."""
    t0, t1 = rec.window
    c = rec.columns
    arrival, end, outcome = c["arrival"], c["end"], c["outcome"]
    measured = (arrival >= t0) & (arrival < t1)
    done = measured & (outcome == COMPLETED)
    refused = measured & (outcome == DROPPED)
    if "gave_up" in c:
        # With client timeouts (simlab.overload), an answer counts only if its
        # client still waited for it, and a drop only if it was the server's.
        waited = np.isnan(c["gave_up"])
        done &= waited
        refused &= waited & (c["reason"] != ABANDONED)
    path = client_path(rec, platform)
    rtt = path[done]
    latency = end[done] - arrival[done] + rtt
    wait = latency - rtt - c["service"][done]
    # A difference of clock readings: where nobody waited it leaves rounding
    # (a few ulps of the clock, about 1e-14 s at 100 s), not a wait. A
    # queue delay is then exactly 0, as it is for most requests.
    wait[wait < ROUNDING * rec.horizon] = 0.0
    finished_in_window = (outcome == COMPLETED) & (end >= t0) & (end < t1)
    out: dict[str, Any] = {
        "requests": int(measured.sum()),
        "completed": int(done.sum()),
        "dropped": int(refused.sum()),
        "throughput_rps": float(finished_in_window.sum()) / (t1 - t0),
        "latency": latency,
        "wait": wait,
    }
    out["incomplete"] = out["requests"] - out["completed"] - out["dropped"]
    if levels is None and len(arrival) >= SWEEP_MIN_REQUESTS:
        # One pass over the intervals (``window_sweep``): the exact peaks and
        # means, the probe's reads, and the levels at the window's ends.
        orders: dict[int, np.ndarray] = {}
        parts = level_parts(rec, platform, path, orders)
        grid, first = probe_grid(t0, t1)
        order = list(parts)
        # The CPU's phases (the most intervals: a few a request) feed no
        # other level: swept alone, they are read in place, not copied. A
        # level's numbers depend only on its own parts, so they are the same.
        # Only their mean is read (the busy cores): no sweep for a peak.
        alone = window_sweep({"cpu_busy": parts.pop("cpu_busy")}, t0, t1, with_peaks=False)
        sweep = window_sweep(parts, t0, t1, grid=grid, read=PROBED, orders=orders)
        stats = sweep.stats | alone.stats
        for key in order:
            out[f"{key}_peak"], out[f"{key}_mean"] = stats[key]
        del out[UNREAD_PEAK]
        reads = sweep.reads
        out["threads_alive_sampled_peak"] = float(reads["threads_alive"][first:].max())
        user = reads["user_mib"]
        index = np.arange(len(grid) - first)
        out.update(_probe_peaks(lambda k: user[k + first], reads["kernel_mib"][first:], index))
        # See below: the backlog's growth over the window.
        out["growth"] = sweep.at_t1["in_flight"] - sweep.at_t0["in_flight"]
        return out
    if levels is None:
        levels = replication_levels(rec, platform)
    for key, step in levels.items():
        out[f"{key}_peak"], out[f"{key}_mean"] = step.window(t0, t1)
    del out[UNREAD_PEAK]
    out["threads_alive_sampled_peak"] = sampled_peak(levels["threads_alive"], t0, t1)
    out.update(sampled_memory_peaks(levels["user_mib"], levels["kernel_mib"], t0, t1))
    # In a stable system the number in the system at the end of the window is,
    # on average, what it was at the start; overload makes it grow.
    at_start, at_end = levels["in_flight"].at(np.array([t0, t1]))
    out["growth"] = float(at_end - at_start)
    return out


def sampled_peak(step: Step, t0: float, t1: float, every: float = SAMPLE_INTERVAL_S) -> float:
    """The largest value of ``step`` seen at t0, t0 + every, ... up to t1: the
    peak a sampler that reads the level every ``every`` seconds reports.

    The real lab's probe reads the server's thread count so
    (``simlab.real.probe``), and a level that rises and falls between its
    reads is never seen at its top: this is the same quantity on the
    simulated side, so that ``threads.peak`` means one thing in ``simulate``
    and ``measure``. ``Step.window`` gives the exact peak.
    """
    grid = t0 + every * np.arange(int(np.floor((t1 - t0) / every)) + 1)
    return float(step.at(grid[grid < t1]).max())


def sampled_memory_peaks(
    user: Step, kernel: Step, t0: float, t1: float, phase: int | None = None
) -> dict[str, float]:
    """The memory peaks a probe reports, read from the exact levels.

    The real lab's probe (``simlab.real.probe``) reads the server's kernel
    memory on a grid ``SAMPLE_INTERVAL_S`` apart and the tree's PSS (user
    memory) at every ``RATIO``-th point of it (``USER_SAMPLE_INTERVAL_S``),
    carrying the last PSS read to the reads between; its resident total at a
    read is the kernel level then plus the carried user level. A summary's
    peaks are the largest reads in the window, where the first reads may
    carry a PSS read made before the window's start. These are the same
    reads of the simulated levels, on the grid from the window's start with
    the PSS reads at points ``phase``, ``phase + RATIO``, ...; so that
    ``memory_mib``'s peaks mean one thing in ``simulate`` and ``measure``.

    Where the PSS reads fall relative to the window is chance on the real
    side (the probe starts before the load), and for a level that grows
    over the window it matters: without ``phase`` the peaks are the mean
    over the ``RATIO`` phases, the expected value of a randomly placed
    probe's reads. ``Step.window`` gives the exact peaks.
    """
    n = int(np.floor((t1 - t0) / SAMPLE_INTERVAL_S)) + 1
    index = np.arange(n)
    index = index[t0 + SAMPLE_INTERVAL_S * index < t1]
    kernel_reads = kernel.at(t0 + SAMPLE_INTERVAL_S * index)
    return _probe_peaks(lambda k: user.at(t0 + SAMPLE_INTERVAL_S * k), kernel_reads, index, phase)


# The probe reads PSS at every RATIO-th of its reads (``sampled_memory_peaks``).
RATIO = round(USER_SAMPLE_INTERVAL_S / SAMPLE_INTERVAL_S)
# The levels the probe reads, as a summary's sweep reads them on ``probe_grid``.
PROBED = ("threads_alive", "user_mib", "kernel_mib")


def probe_grid(t0: float, t1: float) -> tuple[np.ndarray, int]:
    """The instants of the probe's reads that a window's summary needs, and
    where the window's own begin: ``t0 + SAMPLE_INTERVAL_S * k`` under t1,
    from ``k = 1 - RATIO`` (the PSS reads the window's first reads may carry,
    ``sampled_memory_peaks``) on; the same floats as ``sampled_peak``'s and
    ``sampled_memory_peaks``' grids."""
    n = int(np.floor((t1 - t0) / SAMPLE_INTERVAL_S)) + 1
    grid = t0 + SAMPLE_INTERVAL_S * np.arange(1 - RATIO, n)
    return grid[grid < t1], RATIO - 1


def _probe_peaks(
    user_at: Callable[[np.ndarray], np.ndarray],
    kernel_reads: np.ndarray,
    index: np.ndarray,
    phase: int | None = None,
) -> dict[str, float]:
    """``sampled_memory_peaks`` from the kernel level's reads at ``index`` (the
    window's grid points) and the user level's at any grid point (``user_at``)."""
    phases = range(RATIO) if phase is None else (phase,)
    peaks = np.zeros((len(phases), 2))
    for row, p in enumerate(phases):
        # The PSS read each read carries: the latest at or before it, which
        # for the window's first reads may lie before the window.
        carried = p + RATIO * np.floor_divide(index - p, RATIO)
        user_reads = user_at(carried)
        peaks[row] = user_reads.max(), (kernel_reads + user_reads).max()
    user_peak, total_peak = peaks.mean(axis=0)
    return {
        "user_mib_sampled_peak": float(user_peak),
        "kernel_mib_sampled_peak": float(kernel_reads.max()),
        "memory_mib_sampled_peak": float(total_peak),
    }


def series(rec: Record, levels: dict[str, Step], points: int = 241) -> dict[str, np.ndarray]:
    """Every level sampled on a regular grid from 0 to the end of the window."""
    grid = np.linspace(0.0, rec.window[1], points)
    out = {"time": grid}
    for key, step in levels.items():
        out[key] = step.at(grid)
    return out
