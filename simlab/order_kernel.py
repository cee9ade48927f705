"""Order statistics of a large array by buckets of its values' bits, in two passes.

A percentile reads the values of one or two ranks (``stats._OrderStats``).
numpy finds them by partitioning the whole array around the ranks: about
60 ms for three ranks of 5,000,000 latencies here, the most of a long run's
pooled percentiles. A float64's bits, read as an unsigned integer with the
sign bit set (a negative value's bits all flipped), sort as the values do;
their top 16 bits split the values into 65,536 ordered buckets. One pass
counts each bucket and finds its smallest and largest value
(``bucket_counts``); the buckets that hold the ranks asked for follow from
the counts, and where such a bucket's smallest and largest are equal, that
is the rank's value; a second pass copies the values of the other such
buckets alone, in order (``gather_buckets``), and a partition of that small
set gives each rank's value. An order statistic is one value of the
array however it is found: the same floats as the whole array's partition.

-0.0 goes into +0.0's bucket: the two compare equal, and a bucket must hold
every value equal to any it holds. A nan has no rank (the caller leaves an
array with one to numpy).

``simlab.stats`` chooses this path for large arrays when the kernels are
compiled; this module only holds the loops, so that its compile cache stays
valid.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

__all__ = ["BUCKET_BITS", "bucket_counts", "gather_buckets"]

# The bits of a value's key that pick its bucket: 2 ** 16 buckets (a count
# table of 512 KiB, in the cache), each one sixteenth of a binade.
BUCKET_BITS = 16


@njit(cache=True)
def _bucket(bits: Any) -> Any:  # pragma: no cover - compiled
    """The bucket of a float64 by its bits: higher bucket, higher value."""
    top = np.uint64(1) << np.uint64(63)
    if bits == top:
        bits = np.uint64(0)  # -0.0 == +0.0: the same bucket
    key = ~bits if bits & top else bits | top
    return key >> np.uint64(64 - BUCKET_BITS)


@njit(cache=True)
def bucket_counts(values: Any) -> Any:  # pragma: no cover - compiled; tested through simlab.stats
    """How many of ``values`` fall in each bucket, in the buckets' order,
    and each bucket's smallest and largest value (nan where it has none): a
    bucket whose smallest and largest are equal holds one value however
    many times (a queue delay's zeros), so its ranks need no gathering."""
    bits = values.view(np.uint64)
    size = 1 << BUCKET_BITS
    counts = np.zeros(size, np.int64)
    low = np.full(size, np.nan)
    high = np.full(size, np.nan)
    for i in range(bits.shape[0]):
        b = _bucket(bits[i])
        v = values[i]
        if counts[b] == 0:
            low[b] = v
            high[b] = v
        elif v < low[b]:
            low[b] = v
        elif v > high[b]:
            high[b] = v
        counts[b] += 1
    return counts, low, high


@njit(cache=True)
def gather_buckets(values: Any, wanted: Any, out: Any) -> int:  # pragma: no cover - compiled
    """Copy the values whose bucket is ``wanted`` into ``out``, in their
    order; returns how many."""
    bits = values.view(np.uint64)
    n = 0
    for i in range(bits.shape[0]):
        if wanted[_bucket(bits[i])]:
            out[n] = values[i]
            n += 1
    return n
