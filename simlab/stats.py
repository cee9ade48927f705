"""Confidence intervals and warm-up truncation: the one place that turns repeated
estimates into an interval, and a transient into a point to cut it at.

``ci95`` is the two-sided 95% t interval for the mean of independent
estimates: independent replications of a simulation, or batch means of one
long real run. It needs at least two finite values.

``positive_ci95`` is the same interval for a quantity that cannot be
negative (a mean latency), cut at zero.

``quantile_ci95`` is the pooled quantile of several independent samples and
its 95% interval, found by inverting an interval for the distribution
function (a mean of indicators, to which the t interval applies) instead of
averaging per-sample quantiles (biased low and skewed on short runs).

``mser5`` is White's MSER-5 truncation rule for the warm-up of one run.

``bootstrap_ci`` is the percentile bootstrap for the mean of a few repeated
real runs: how far they spread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from simlab import kernels

__all__ = [
    "bootstrap_ci",
    "ci95",
    "mser5",
    "positive_ci95",
    "quantile_ci95",
    "quantiles_ci95",
    "t975",
]

# MSER-5 averages the output in batches of this many observations.
MSER_BATCH = 5


# scipy's t.ppf(0.975, dof) for dof = 1..64, as it computes them (a test checks
# each): importing scipy.stats takes longer than a planner's whole search, and
# replications rarely number more than 65.
T975 = (
    12.706204736174694,
    4.302652729749462,
    3.1824463052837078,
    2.7764451051977934,
    2.5705818356363146,
    2.4469118511449786,
    2.364624251592784,
    2.306004135204166,
    2.262157162798205,
    2.228138851986274,
    2.200985160091639,
    2.1788128296672284,
    2.1603686564627913,
    2.144786687917804,
    2.131449545559776,
    2.1199052992212546,
    2.1098155778333156,
    2.1009220402410382,
    2.0930240544083087,
    2.085963447265864,
    2.0796138447276795,
    2.0738730679040254,
    2.0686576104190486,
    2.0638985616280245,
    2.0595385527532972,
    2.0555294386428735,
    2.0518305164802846,
    2.0484071417952454,
    2.045229642132703,
    2.0422724563012378,
    2.039513446396408,
    2.0369333434601016,
    2.0345152974493383,
    2.0322445093177186,
    2.030107928250343,
    2.0280940009804502,
    2.0261924630291093,
    2.0243941639119694,
    2.022690920036761,
    2.021075390306273,
    2.019540970441376,
    2.0180817028184443,
    2.016692199227824,
    2.0153675744437636,
    2.014103388880846,
    2.012895598919429,
    2.0117405137297655,
    2.010634757624232,
    2.0095752371292392,
    2.008559112100761,
    2.007583770315836,
    2.006646805061688,
    2.0057459953178687,
    2.0048792881880564,
    2.0040447832891455,
    2.003240718847872,
    2.002465459291007,
    2.0017174841452356,
    2.000995378088267,
    2.0002978220142604,
    1.999623584994939,
    1.9989715170333788,
    1.998340542520741,
    1.997729654317693,
)


def t975(dof: int) -> float:
    """The 97.5th percentile of Student's t with ``dof`` degrees of freedom."""
    if 1 <= dof <= len(T975):
        return T975[dof - 1]
    # scipy is heavy to import; only callers that need an interval load it.
    from scipy import stats  # noqa: PLC0415

    return float(stats.t.ppf(0.975, dof))


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    return x[np.isfinite(x)]


def ci95(values: Sequence[float] | np.ndarray) -> list[float] | None:
    """Two-sided 95% t interval for the mean of independent values (None if fewer than 2).

    mean +- t(0.975, n-1) s / sqrt(n), with s the sample standard deviation.
    Non-finite values (a replication with no answered request) are left out.
    """
    x = _finite(values)
    if len(x) < 2:
        return None
    half = t975(len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    m = float(x.mean())
    return [m - half, m + half]


def positive_ci95(values: Sequence[float] | np.ndarray) -> list[float] | None:
    """A 95% interval for the mean of independent values of a quantity that is
    never negative (a mean latency, a mean queue delay): the t interval of
    ``ci95`` with its ends cut at 0.

    The cut loses no coverage: the true mean is not below 0 either, so the
    cut interval holds it exactly when the uncut one does. A t interval on
    the logarithms would stay positive too, but it multiplies the spread of
    the logs by t: two replications of a queue delay of 0.001 and 0.1 ms
    (t = 12.7 with one degree of freedom) give 10^-14 to 10^12 ms, and any
    replication with no delay at all has no logarithm. A mean of
    replications is a linear statistic, so the t interval is the right shape
    for it once the runs are long enough (``simlab.simulation.RUN_RELAXATIONS``);
    the skewed quantities are the percentiles, which ``quantile_ci95`` covers.
    Non-finite values are left out; fewer than two give None.
    """
    x = _finite(values)
    if len(x) < 2:
        return None
    if (x < 0).any():
        raise ValueError("positive_ci95 needs values >= 0")
    ci = ci95(x)
    assert ci is not None
    return [max(0.0, ci[0]), max(0.0, ci[1])]


def quantile_ci95(
    samples: Sequence[np.ndarray], q: float
) -> tuple[float | None, list[float] | None]:
    """The ``q``-th percentile of the pooled samples and its 95% interval.

    Each sample is one independent replication's values (its requests'
    latencies, say). The estimate is the percentile of all values pooled,
    x = Q(q). The interval inverts an interval for the distribution
    function at x: each replication r gives F_r = its share of values <= x,
    an unbiased estimate of F(x) (a mean of indicators), and
    d = t(0.975, R-1) sd(F_r) / sqrt(R) is the half-width of the t interval
    for their mean. The interval for the quantile is then
    [Q(q - 100 d), Q(q + 100 d)] on the pooled values (Q of a level <= 0 is
    the smallest value, of a level >= 100 the largest).

    Why not a t interval over the replications' own percentiles: a p99 of a
    short run of a queue near saturation is biased low (its rare long
    excursions are missed more often than not) and skewed, so that interval
    sat wholly under the true value most of the time and could reach below
    zero. The indicators have no such bias, the pooled percentile uses every
    request, and the interval is made of observed values: never negative,
    longer on the tail's side, and exactly 0 where most values are 0 (a
    queue delay's median). ``samples`` that are empty are left out; with
    fewer than two left the interval is None.
    """
    return quantiles_ci95(samples, [q])[0]


def quantiles_ci95(
    samples: Sequence[np.ndarray], qs: Sequence[float]
) -> list[tuple[float | None, list[float] | None]]:
    """``quantile_ci95`` for each of ``qs``, the same numbers: the samples are
    pooled once (``_OrderStats``), and the percentiles at every level read
    from it rather than from a ``np.percentile`` call per set of levels. A
    percentile is the same number whichever other levels are asked with it."""
    kept = [np.asarray(a, dtype=np.float64) for a in samples if len(a)]
    if not kept:
        return [(None, None) for _ in qs]
    pooled = _OrderStats(kept)
    xs = pooled.percentiles(list(qs))
    if len(kept) < 2:
        return [(x, None) for x in xs]
    levels: list[float] = []
    for q, x in zip(qs, xs, strict=True):
        shares = [float(np.count_nonzero(a <= x)) / len(a) for a in kept]
        half = t975(len(kept) - 1) * float(np.std(shares, ddof=1)) / math.sqrt(len(kept))
        levels += [min(max(q - 100 * half, 0.0), 100.0), min(max(q + 100 * half, 0.0), 100.0)]
    ends = pooled.percentiles(levels)
    return [(x, ends[2 * k : 2 * k + 2]) for k, x in enumerate(xs)]


# From this many values on, where the kernels are compiled (``kernels.ready``),
# the order statistics come from buckets of the values' bits
# (``simlab.order_kernel``) instead of a partition of the whole array: the
# same floats. Under it a partition is as quick.
BUCKETS_MIN = 100_000


class _OrderStats:
    """``np.percentile(values, levels)`` (its default, linear method), the same
    floats, for several sets of levels asked one after another of one array
    (``values``, which may be reordered in place), or of the array that a
    list of arrays would make end to end (never made where it need not be).

    A percentile by that method reads only two order statistics, the values
    of ranks ``floor(v)`` and ``floor(v) + 1`` where ``v = (n - 1) q / 100``
    (both the largest value for ``v >= n - 1``), and interpolates between
    them as numpy's ``_lerp`` does. ``np.percentile`` finds them by a
    partition around every rank and the smallest and largest values too, at
    each call. Here each set of levels finds the ranks it reads and no
    others: a small array is partitioned around them, in place (a list of
    arrays is first put end to end, in a copy); a large one
    (``BUCKETS_MIN``) is counted once into buckets of its values' bits, and
    each set gathers and partitions the buckets that hold its ranks alone
    (``_by_buckets``; a bucket of one value, such as a queue delay's zeros,
    needs no gathering), from the arrays where they are. An order statistic
    is one value of the array however it is found. On 5,000,000 latencies
    (AMD EPYC, numpy 2.4) a partition around three ranks took about 60 ms,
    the buckets about 20; the copy that put five replications end to end,
    40 MB never touched before, up to 80 ms more (this virtual machine's
    page faults). The arithmetic (the virtual index, its floor, the weight
    and the interpolation) is numpy's own, in its order, on float64 arrays;
    ``tests/test_stats.py`` checks the floats against ``np.percentile``. An
    array holding a nan falls back to numpy, whose answer is then nan.
    """

    def __init__(self, values: np.ndarray | Sequence[np.ndarray]) -> None:
        self._pieces = [values] if isinstance(values, np.ndarray) else list(values)
        self.n = sum(len(p) for p in self._pieces)
        self.has_nan = any(bool(np.isnan(p).any()) for p in self._pieces)
        # The buckets' running counts, counts, smallest and largest values.
        self._buckets: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def values(self) -> np.ndarray:
        """The values end to end: the array given, or one copy of the list's."""
        if len(self._pieces) != 1:
            self._pieces = [np.concatenate(self._pieces)]
        return self._pieces[0]

    def percentiles(self, levels: list[float]) -> list[float]:
        if self.has_nan:
            return [float(v) for v in np.percentile(self.values, levels)]
        n = self.n
        q = np.true_divide(np.asarray(levels, dtype=np.float64), 100)
        virtual = (n - 1) * q
        below = np.floor(virtual)
        above = below + 1
        top = virtual >= n - 1
        below[top] = -1
        above[top] = -1
        below[virtual < 0] = 0
        above[virtual < 0] = 0
        prev, nxt = below.astype(np.intp), above.astype(np.intp)
        # -1 is the largest value: rank n - 1.
        # The distinct ranks, ascending, by ``sorted(set())``: ``np.unique``
        # would import ``numpy.ma`` (about 10 ms a process) for a few numbers.
        ranks = sorted({int(k) % n for k in (*prev, *nxt)})
        value = dict(zip(ranks, self._ranked(ranks), strict=True))
        a = np.array([value[int(k) % n] for k in prev], dtype=np.float64)
        b = np.array([value[int(k) % n] for k in nxt], dtype=np.float64)
        t = np.asanyarray(virtual - prev, dtype=virtual.dtype)
        diff = b - a
        out = np.add(a, diff * t)
        np.subtract(b, diff * (1 - t), out=out, where=t >= 0.5)
        return [float(v) for v in out]

    def _ranked(self, ranks: list[int]) -> np.ndarray:
        """The values of ``ranks`` (ascending, distinct) in the sorted array."""
        if self.n >= BUCKETS_MIN and kernels.ready():
            return self._by_buckets(ranks)
        at = np.array(ranks, dtype=np.intp)
        self.values.partition(at)
        found: np.ndarray = self.values[at]
        return found

    def _by_buckets(self, ranks: list[int]) -> np.ndarray:
        """``_ranked`` from the buckets of the values' bits
        (``simlab.order_kernel``): a rank in a bucket of one value is that
        value; the other buckets that hold the ranks are gathered in order
        and partitioned. A rank's place among the gathered values is its
        rank less the values of the buckets left out below its own."""
        from simlab.kernels import bucket_counts, gather_buckets  # noqa: PLC0415

        if self._buckets is None:
            counts, low, high = bucket_counts(self._pieces[0])
            for piece in self._pieces[1:]:
                more, lows, highs = bucket_counts(piece)
                counts += more
                # Where one side has no value (nan), the other's.
                np.fmin(low, lows, out=low)
                np.fmax(high, highs, out=high)
            self._buckets = np.cumsum(counts), counts, low, high
        cumulative, counts, low, high = self._buckets
        at = np.array(ranks, dtype=np.int64)
        # A rank's bucket: the first whose running count exceeds it.
        bucket = np.searchsorted(cumulative, at, side="right")
        found: np.ndarray = low[bucket]
        mixed = low[bucket] != high[bucket]
        if not mixed.any():
            return found
        wanted = np.zeros(len(counts), dtype=np.int8)
        wanted[bucket[mixed]] = 1
        left_out = np.cumsum(np.where(wanted == 1, 0, counts))
        gathered = np.empty(int(counts[wanted == 1].sum()))
        put = 0
        for piece in self._pieces:
            put += gather_buckets(piece, wanted, gathered[put:])
        place = at[mixed] - left_out[bucket[mixed]]
        gathered.partition(place)
        found[mixed] = gathered[place]
        return found


def mser5(series: Sequence[float] | np.ndarray) -> int | None:
    """How many leading observations to drop as warm-up, by MSER-5 (White 1997).

    The rule: average the series in consecutive batches of 5, Z_1..Z_k
    (a partial last batch is dropped). For each d, the batches after the
    first d have mean Zbar(d) and

        MSER(d) = sum_{j > d} (Z_j - Zbar(d))^2 / (k - d)^2,

    an estimate of the squared standard error of the truncated mean that
    grows when a transient is kept (it inflates the sum) and when too much
    is thrown away (fewer batches to average). The warm-up is 5 d*
    observations, with d* the d that minimises MSER(d) over d <= k/2: a
    minimum that can only be reached by dropping more than half the run
    means the run is too short to show its steady state, and the answer is
    None. None too when there are fewer than 4 batches (nothing to compare).
    A constant series needs no warm-up (0).

    The batch of 5 smooths single observations without hiding a transient
    (White, Cobb and Spratt 2000 found MSER-5 the most robust of the MSER
    variants; JMT uses it for the same purpose).
    """
    x = np.asarray(series, dtype=np.float64)
    k = len(x) // MSER_BATCH
    if k < 4:
        return None
    z = x[: k * MSER_BATCH].reshape(k, MSER_BATCH).mean(axis=1)
    # Centred first, so that the sums of squares below do not cancel.
    z = z - z.mean()
    # Sums over the batches after d, for every d at once (from the right).
    tail_sum = np.cumsum(z[::-1])[::-1]
    tail_sq = np.cumsum((z * z)[::-1])[::-1]
    last = k // 2
    kept = k - np.arange(last + 1)  # k - d batches remain after dropping d
    s1, s2 = tail_sum[: last + 1], tail_sq[: last + 1]
    # The sum of squared deviations, clipped at 0 against rounding.
    sse = np.maximum(s2 - s1 * s1 / kept, 0.0)
    mser = sse / kept.astype(np.float64) ** 2
    best = int(np.argmin(mser))
    if best == last:
        return None
    return best * MSER_BATCH


def bootstrap_ci(
    values: list[float] | np.ndarray, *, resamples: int = 10_000, seed: int = 0
) -> list[float] | None:
    """95% percentile-bootstrap interval for the mean of a few independent values.

    The values are resampled with replacement ``resamples`` times and the
    interval is the 2.5th and 97.5th percentiles of the resampled means
    (Efron and Tibshirani 1993, ch. 13). With three values it can only be as
    wide as their range allows: it says how far repeated real runs spread,
    not a guarantee of coverage. None with fewer than two finite values.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (resamples, len(x)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return [float(lo), float(hi)]
