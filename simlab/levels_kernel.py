"""The peak of a level made of weighted intervals, by one compiled sweep.

A level (threads busy, requests in flight, memory...) is a base plus a sum of
parts, each part a set of intervals [start, end) of one weight. Its peak over
a window is reached just after some start. One pass visits the starts in time
order (a merge of the parts, each sorted by start), and counts the intervals
open in each part: its starts so far less its ends so far, read from the
part's ends sorted (by numpy, before the call: a vectorised sort is far
cheaper than a heap of the ends in the loop). The level at an instant is
``base + sum(weight[p] * count[p])`` after every event at or before that
instant (so an interval ending as another starts is no momentary peak, as in
``metrics.Step``). No array of events, where building the step functions
sorts every level's events once per level. Where one part's starts come
alone for a while (the requests in flight between the workers' first uses),
they are swept in a tight loop, and each level the part feeds is summed once,
at the loop's highest count: the same peak, as a sum of rounded terms never
falls when one term's count rises.

The same pass reads chosen levels on a grid of instants (the real lab's
probe reads threads and memory every 0.1 s: ``metrics.sampled_peak``), so
that a summary never builds a step function for them either.

``simlab.metrics`` prepares the arrays and chooses this path for large runs;
this module only holds the loop, so that its compile cache stays valid.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

__all__ = ["earliest", "positive_overlaps", "sweep_levels", "sweep_peaks"]


@njit(cache=True, inline="always")
def _run(  # noqa: PLR0917 - a compiled helper takes its arrays positionally
    starts: Any,
    ends: Any,
    sorted_ends: Any,
    i: int,
    j: int,
    hi: int,
    count: int,
    t0: float,
    bound: float,
) -> tuple[int, int, int, bool, int, int]:  # pragma: no cover - compiled
    """One part's instants from its start ``i`` (its next end to come:
    ``sorted_ends[j]``; ``count`` of its intervals open) up to the starts
    before ``bound``, its intervals ``:hi``: the next start and end, the
    count open after them, and the highest and lowest count at the instants
    in (t0, bound) where one of its intervals starts and lasts, and whether
    there is any. An interval of no length starts and ends at one instant,
    so it is never counted open."""
    high = 0
    low = 0
    seen = False
    # The count open is the intervals begun less the ends passed since ``j``.
    j0 = j
    while i < hi:
        t = starts[i]
        if t >= bound:
            break
        while j < hi and sorted_ends[j] <= t:
            j += 1
        grew = False
        while i < hi and starts[i] == t:
            count += 1
            if ends[i] > t:
                grew = True
            i += 1
        if grew and t > t0:
            n = count - (j - j0)
            if not seen:
                high, low, seen = n, n, True
            else:
                high = max(high, n)
                low = min(low, n)
    return i, j, count - (j - j0), seen, high, low


@njit(cache=True)
def _count_extremes(  # noqa: PLR0917 - a compiled helper takes its arrays positionally
    starts: Any, ends: Any, sorted_ends: Any, lo: int, hi: int, t0: float, t1: float
) -> tuple[bool, int, int]:  # pragma: no cover - compiled; tested through simlab.metrics
    """The highest and lowest count of open intervals of one part (its
    intervals ``lo:hi``) at the instants in (t0, t1) where one of them starts
    and lasts, and whether there is any: the merged sweep's numbers for a
    level of this part alone."""
    _, _, _, seen, high, low = _run(starts, ends, sorted_ends, lo, lo, hi, 0, t0, t1)
    return seen, high, low


@njit(cache=True)
def sweep_peaks(  # noqa: PLR0917 - one compiled loop, arrays positionally
    starts: Any,
    ends: Any,
    sorted_ends: Any,
    offsets: Any,
    weights: Any,
    bases: Any,
    t0: float,
    t1: float,
    level0: Any,
) -> Any:  # pragma: no cover - compiled; tested through simlab.metrics
    """Each level's highest value at the instants in (t0, t1), or at t0 (``level0``).

    ``sweep_levels`` without reads on a grid.
    """
    peaks, _ = sweep_levels(
        starts,
        ends,
        sorted_ends,
        offsets,
        weights,
        bases,
        t0,
        t1,
        level0,
        np.empty(0),
        np.empty(0, np.int64),
        np.arange(offsets.shape[0] - 1),
    )
    return peaks


@njit(cache=True)
def sweep_levels(  # noqa: PLR0912, PLR0915, PLR0917 - one compiled loop, arrays positionally
    starts: Any,
    ends: Any,
    sorted_ends: Any,
    offsets: Any,
    weights: Any,
    bases: Any,
    t0: float,
    t1: float,
    level0: Any,
    grid: Any,
    rows: Any,
    canon: Any,
) -> tuple[Any, Any]:  # pragma: no cover - compiled; tested through simlab.metrics
    """Each level's highest value at the instants in (t0, t1), or at t0
    (``level0``); and, in the same pass, levels ``rows`` read at each
    instant of ``grid`` (ascending, every instant under t1).

    Part ``p`` holds the intervals ``offsets[p]:offsets[p + 1]`` of ``starts``
    and ``ends``, sorted by start, and the same ends sorted in
    ``sorted_ends``; no start is nan; an end of inf never comes. Level ``l``
    is ``bases[l] + sum(weights[l, p] * count[p])``: the parts are swept once
    for every level that shares them. A read at ``g`` is the level after
    every event at or before ``g`` (``metrics.Step.at``): it is taken when
    the sweep has counted every start up to ``g``, and the ends up to ``g``.
    ``canon[p]`` is the part whose intervals part ``p`` reads: ``p`` itself,
    or an earlier part with the same intervals (then ``p``'s own slice is
    empty). A level still adds its weights column by column, so its sums
    are the same floats; the shared intervals are swept once.
    Returns the peaks and the reads (a row per entry of ``rows``).
    """
    n_levels, k = weights.shape
    # Which parts (and weights) each level sums, in ascending order: arrays
    # with a count per row (lists of lists would cost numba a reference count
    # per visit).
    sums = np.empty((n_levels, k), np.int64)
    n_sums = np.zeros(n_levels, np.int64)
    for lv in range(n_levels):
        for p in range(k):
            if weights[lv, p] != 0:
                sums[lv, n_sums[lv]] = p
                n_sums[lv] += 1
    peaks = level0.copy()
    # A level of one part peaks where its part's count does (or, for a
    # negative weight, where it is lowest): such a part is swept alone, a
    # tight loop, unless the merged sweep visits it anyway; only the levels
    # that sum several parts (or are read on the grid) need the sweep of
    # their parts merged.
    merged = np.zeros(k, np.bool_)
    for lv in range(n_levels):
        if n_sums[lv] > 1:
            for j in range(n_sums[lv]):
                merged[canon[sums[lv, j]]] = True
    for r in range(rows.shape[0]):
        for j in range(n_sums[rows[r]]):
            merged[canon[sums[rows[r], j]]] = True
    # Each part's highest and lowest count at the instants in (t0, t1) where
    # one of its intervals starts and lasts, for the one-part levels: kept by
    # the merged sweep for the parts it sweeps, else found by a sweep of the
    # part alone, once for every level that reads it.
    seen_of = np.zeros(k, np.bool_)
    high_of = np.zeros(k, np.int64)
    low_of = np.zeros(k, np.int64)
    # Which (several-part) levels each merged part feeds.
    feeds = np.empty((k, n_levels), np.int64)
    n_feeds = np.zeros(k, np.int64)
    for lv in range(n_levels):
        if n_sums[lv] > 1:
            for j in range(n_sums[lv]):
                p = canon[sums[lv, j]]
                # A level summing two parts of the same intervals is fed once.
                if n_feeds[p] == 0 or feeds[p, n_feeds[p] - 1] != lv:
                    feeds[p, n_feeds[p]] = lv
                    n_feeds[p] += 1
    swept = np.flatnonzero(merged)
    m = swept.shape[0]
    # Whether every level a part feeds reads it with weights of one sign: a
    # level is then monotone in the part's count (a float sum of terms, each
    # rounded, never falls as one term's count rises), so over a run of its
    # instants (below) its highest value is its value at the part's highest
    # count (or lowest, for a negative weight).
    mono = np.ones(k, np.bool_)
    for lv in range(n_levels):
        for p in range(k):
            pos = False
            neg = False
            for j in range(n_sums[lv]):
                q = sums[lv, j]
                if canon[q] == p:
                    pos = pos or weights[lv, q] > 0
                    neg = neg or weights[lv, q] < 0
            if pos and neg:
                mono[p] = False
    head = offsets[:-1].copy()
    tail = offsets[:-1].copy()  # the next end to come, in ``sorted_ends``
    counts = np.zeros(k, np.int64)
    stamp = np.full(n_levels, -1, np.int64)
    grown = np.empty(k, np.int64)
    instant = 0
    n_grid = grid.shape[0]
    n_rows = rows.shape[0]
    reads = np.empty((n_rows, n_grid))
    gi = 0
    while True:
        # The earliest start still to come, over every merged part.
        t = math.inf
        for x in range(m):
            p = swept[x]
            if head[p] < offsets[p + 1] and starts[head[p]] < t:
                t = starts[head[p]]
        # The grid's instants before t: every start at or before them is
        # counted; count their ends up to them, and read.
        while gi < n_grid and grid[gi] < t:
            at = grid[gi]
            for x in range(m):
                p = swept[x]
                j = tail[p]
                while j < offsets[p + 1] and sorted_ends[j] <= at:
                    j += 1
                counts[p] -= j - tail[p]
                tail[p] = j
            for r in range(n_rows):
                lv = rows[r]
                level = bases[lv]
                for j in range(n_sums[lv]):
                    q = sums[lv, j]
                    level += weights[lv, q] * counts[canon[q]]
                reads[r, gi] = level
            gi += 1
        if t >= t1:
            break
        # A run: while one part's starts come alone (no other part starts or
        # ends, no read is due, the window goes on), only its count changes,
        # so its instants are swept in a tight loop (``_run``, as a part alone is)
        # keeping its highest and lowest count, and each level it feeds is
        # summed once, at the count where it is highest (``mono``): the same
        # peaks as summing it at every instant, a fraction of the work where
        # one part holds most intervals (requests in flight beside the
        # workers' first uses).
        alone = -1
        for x in range(m):
            p = swept[x]
            if head[p] < offsets[p + 1] and starts[head[p]] == t:
                alone = p if alone == -1 else -2
        if alone >= 0 and mono[alone]:
            bound = t1
            if gi < n_grid and grid[gi] < bound:
                bound = grid[gi]
            for x in range(m):
                q = swept[x]
                if q != alone:
                    if head[q] < offsets[q + 1] and starts[head[q]] < bound:
                        bound = starts[head[q]]
                    if tail[q] < offsets[q + 1] and sorted_ends[tail[q]] < bound:
                        bound = sorted_ends[tail[q]]
            # Another part's end at t or before is the generic step's.
            if bound > t:
                p = alone
                head[p], tail[p], counts[p], seen, high, low = _run(
                    starts, ends, sorted_ends, head[p], tail[p], offsets[p + 1], counts[p],
                    t0, bound,
                )  # fmt: skip
                if seen:
                    if not seen_of[p]:
                        high_of[p], low_of[p], seen_of[p] = high, low, True
                    else:
                        high_of[p] = max(high_of[p], high)
                        low_of[p] = min(low_of[p], low)
                    for f in range(n_feeds[p]):
                        lv = feeds[p, f]
                        up = True
                        for jj in range(n_sums[lv]):
                            q = sums[lv, jj]
                            if canon[q] == p:
                                up = weights[lv, q] > 0
                                break
                        level = bases[lv]
                        for jj in range(n_sums[lv]):
                            q = sums[lv, jj]
                            cq = canon[q]
                            level += weights[lv, q] * (
                                (high if up else low) if cq == p else counts[cq]
                            )
                        peaks[lv] = max(peaks[lv], level)
                continue
        instant += 1
        n_grown = 0
        for x in range(m):
            p = swept[x]
            # The ends at or before t: an interval of no length starts and
            # ends at t, so it is never counted open.
            j = tail[p]
            while j < offsets[p + 1] and sorted_ends[j] <= t:
                j += 1
            counts[p] -= j - tail[p]
            tail[p] = j
            i = head[p]
            grew = False
            while i < offsets[p + 1] and starts[i] == t:
                counts[p] += 1
                if ends[i] > t:
                    grew = True
                i += 1
            head[p] = i
            if grew:
                grown[n_grown] = p
                n_grown += 1
        if t > t0:
            # Only a level with a part that grew can reach a new peak.
            for g in range(n_grown):
                p = grown[g]
                n = counts[p]
                if not seen_of[p]:
                    high_of[p], low_of[p], seen_of[p] = n, n, True
                else:
                    high_of[p] = max(high_of[p], n)
                    low_of[p] = min(low_of[p], n)
                for f in range(n_feeds[p]):
                    lv = feeds[p, f]
                    if stamp[lv] == instant:
                        continue
                    stamp[lv] = instant
                    level = bases[lv]
                    for j in range(n_sums[lv]):
                        q = sums[lv, j]
                        level += weights[lv, q] * counts[canon[q]]
                    peaks[lv] = max(peaks[lv], level)
    swept_alone = merged.copy()
    for lv in range(n_levels):
        if n_sums[lv] == 1:
            p = sums[lv, 0]
            c = canon[p]
            if not swept_alone[c]:
                seen_of[c], high_of[c], low_of[c] = _count_extremes(
                    starts, ends, sorted_ends, offsets[c], offsets[c + 1], t0, t1
                )
                swept_alone[c] = True
            if seen_of[c]:
                w = weights[lv, p]
                level = bases[lv]
                level += w * (high_of[c] if w > 0 else low_of[c])
                peaks[lv] = max(peaks[lv], level)
    return peaks, reads


@njit(cache=True)
def earliest(keys: Any, times: Any, size: int) -> Any:  # pragma: no cover - compiled
    """Each key's earliest time (inf for a key never seen), keys in [0, size):
    ``np.minimum.at`` in one loop (numpy's costs about 0.1 us an element)."""
    out = np.full(size, np.inf)
    for i in range(keys.shape[0]):
        out[keys[i]] = min(out[keys[i]], times[i])
    return out


@njit(cache=True)
def positive_overlaps(  # noqa: PLR0917 - a compiled loop takes its arrays positionally
    starts: Any, ends: Any, offsets: Any, t0: float, t1: float, out: Any
) -> Any:  # pragma: no cover - compiled; tested through simlab.metrics
    """Each part's overlaps of its intervals with [t0, t1) that are > 0, in
    order, written from the part's offset on in ``out``; returns how many
    each part has. ``min(end, t1) - max(start, t0)``: numpy's ``minimum``,
    ``maximum`` and subtraction, in one pass and without the mask and the
    copy that ``o[o > 0]`` makes (no end or start is nan)."""
    k = offsets.shape[0] - 1
    counts = np.zeros(k, np.int64)
    for p in range(k):
        n = offsets[p]
        for i in range(offsets[p], offsets[p + 1]):
            o = min(ends[i], t1) - max(starts[i], t0)
            if o > 0:
                out[n] = o
                n += 1
        counts[p] = n - offsets[p]
    return counts
