"""The interval and truncation primitives: positive intervals, quantile intervals, MSER-5."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest

from simlab import kernels, stats
from simlab.stats import _OrderStats, ci95, mser5, positive_ci95, quantile_ci95, t975

# ----------------------------------------------------------------- MSER-5


def test_mser5_cuts_a_step_transient_where_it_ends():
    """A series whose first 500 values sit 5 noise sd above the rest: the rule
    must drop all of them. Keeping even one high batch adds about 25 to the
    sum of squares, far more than one batch more or less changes the
    divisor. Past the step it may trim a little more at random, as it does
    on a stationary series (a few percent of the run at most, below)."""
    rng = np.random.default_rng(7)
    x = rng.normal(0.0, 1.0, 5000)
    x[:500] += 5.0
    cut = mser5(x)
    assert cut is not None
    assert 500 <= cut <= 650


def test_mser5_cuts_an_exponential_transient_once_it_is_under_the_noise():
    """A transient 10 e^{-t/200} over unit noise: the cut falls where the
    transient's size is about one batch mean's noise (sd 1/sqrt(5) ~ 0.45,
    reached at t = 200 ln(10/0.45) ~ 620), certainly after one time constant
    and before the transient is 0.05 (t ~ 1060)."""
    rng = np.random.default_rng(11)
    t = np.arange(20_000)
    x = 10.0 * np.exp(-t / 200.0) + rng.normal(0.0, 1.0, len(t))
    cut = mser5(x)
    assert cut is not None
    assert 200 <= cut <= 1060


def test_mser5_keeps_a_stationary_series():
    rng = np.random.default_rng(3)
    cuts = [mser5(rng.exponential(1.0, 10_000)) for _ in range(20)]
    # A stationary series has no transient: the rule may still drop a few
    # batches at random, never a large share of the run.
    assert all(c is not None and c < 1_000 for c in cuts), cuts
    assert mser5(np.full(100, 3.0)) == 0


def test_mser5_says_when_the_run_is_too_short():
    # Still climbing at the end: the minimum is at the edge of the allowed cut.
    assert mser5(np.linspace(0.0, 1.0, 1000)) is None
    # Fewer than 4 batches of 5: nothing to compare.
    assert mser5([1.0] * 19) is None


# ------------------------------------------------------------- intervals


def test_positive_ci95_is_the_t_interval_cut_at_zero():
    x = [12.0, 15.0, 18.0, 30.0, 14.0]
    assert positive_ci95(x) == ci95(x)
    # Two replications far apart: the t interval reaches far below 0; the cut
    # one starts at 0 and keeps the upper end.
    values = [5.0, 80.0]
    sym = ci95(values)
    assert sym is not None and sym[0] < 0
    assert positive_ci95(values) == [0.0, sym[1]]
    # Values orders of magnitude apart stay a sane interval (a t interval on
    # logs would run from 1e-14 to 1e12 here).
    lo, hi = positive_ci95([0.001, 0.1])  # type: ignore[misc]
    assert lo == 0.0 and 0.1 < hi < 1.0


def test_positive_ci95_handles_zeros():
    assert positive_ci95([0.0, 0.0, 0.0]) == [0.0, 0.0]
    lo, hi = positive_ci95([0.0, 0.0, 3.0])  # type: ignore[misc]
    assert lo == 0.0 and hi > 1.0
    assert positive_ci95([1.0]) is None
    assert positive_ci95([1.0, math.nan]) is None
    with pytest.raises(ValueError, match=">= 0"):
        positive_ci95([-1.0, 2.0])


def test_quantile_ci95_is_the_pooled_quantile_with_an_inverted_interval():
    rng = np.random.default_rng(5)
    samples = [rng.exponential(1.0, 20_000) for _ in range(5)]
    value, ci = quantile_ci95(samples, 99)
    pooled = np.concatenate(samples)
    assert value == pytest.approx(float(np.percentile(pooled, 99)))
    assert ci is not None
    lo, hi = ci
    assert lo < value < hi
    # The shares of each sample under the estimate, and the half-width of their interval.
    shares = [float(np.mean(a <= value)) for a in samples]
    half = t975(4) * float(np.std(shares, ddof=1)) / math.sqrt(5)
    assert lo == pytest.approx(float(np.percentile(pooled, 99 - 100 * half)))
    assert hi == pytest.approx(float(np.percentile(pooled, 99 + 100 * half)))
    # Independent exponential samples: the interval holds ln(100) = 4.605.
    assert lo <= math.log(100) <= hi


def test_quantile_ci95_with_mostly_zero_values():
    """A queue delay: most requests never wait. The median is exactly 0 with an
    interval [0, 0]; no NaN, nothing negative; the p99 is positive."""
    rng = np.random.default_rng(2)
    samples = []
    for _ in range(4):
        waits = np.zeros(5_000)
        some = rng.random(5_000) < 0.2
        waits[some] = rng.exponential(1.0, int(some.sum()))
        samples.append(waits)
    value, ci = quantile_ci95(samples, 50)
    assert value == 0.0 and ci == [0.0, 0.0]
    value, ci = quantile_ci95(samples, 99)
    assert value is not None and value > 0
    assert ci is not None and 0 <= ci[0] <= value <= ci[1]


def test_quantile_ci95_edges():
    assert quantile_ci95([], 99) == (None, None)
    assert quantile_ci95([np.empty(0), np.empty(0)], 99) == (None, None)
    value, ci = quantile_ci95([np.array([1.0, 2.0, 3.0])], 50)
    assert value == 2.0 and ci is None
    # Replications that disagree wildly: the interval runs to the extremes, not beyond.
    value, ci = quantile_ci95([np.full(100, 1.0), np.full(100, 50.0)], 50)
    assert ci == [1.0, 50.0]


def _percentile_cases(seed: int, trials: int) -> Iterator[tuple[np.ndarray, list[list[float]]]]:
    """Arrays (ties, zeros, one value, huge and tiny magnitudes, -0.0 beside
    0.0, infinities) and sets of levels asked one after another of each
    (levels at and near 0 and 100, levels between found ranks)."""
    rng = np.random.default_rng(seed)
    for trial in range(trials):
        n = int(rng.integers(1, 60)) if trial % 3 else int(rng.integers(1000, 5000))
        kind = trial % 6
        if kind == 0:
            values = rng.exponential(1.0, n)
        elif kind == 1:
            values = np.where(rng.random(n) < 0.7, 0.0, rng.exponential(1.0, n))
        elif kind == 2:
            values = rng.integers(0, 5, n).astype(np.float64) * 0.1
        elif kind == 3:
            values = rng.lognormal(0.0, 2.0, n)
        elif kind == 4:
            values = rng.normal(0, 1, n) * 10.0 ** rng.integers(-300, 300, n)
        else:
            values = np.where(rng.random(n) < 0.5, -0.0, rng.normal(0, 1, n))
            values[::7], values[::11] = np.inf, -np.inf
        sets = []
        for _ in range(3):
            levels = [float(x) for x in rng.uniform(0, 100, int(rng.integers(1, 7)))]
            levels += [0.0, 100.0, 50.0, 99.99999, 1e-9][: int(rng.integers(0, 6))]
            sets.append(levels)
        yield values, sets


def _numpys(values: np.ndarray, levels: list[float]) -> list[float]:
    with np.errstate(invalid="ignore"):  # inf - inf between two infinite ranks: nan
        return [float(v) for v in np.percentile(values, levels)]


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_sorted_percentiles_are_numpys_floats() -> None:
    """``_OrderStats`` reads numpy's linear percentiles from the values
    partitioned around the ranks each set reads: every float must be
    ``np.percentile``'s."""
    for trial, (values, sets) in enumerate(_percentile_cases(7, 300)):
        sel = _OrderStats(values.copy())
        for levels in sets:
            got = sel.percentiles(levels)
            assert np.array_equal(got, _numpys(values, levels), equal_nan=True), (trial, levels)
    # A nan anywhere: numpy's answer (nan), as before.
    got = _OrderStats(np.array([1.0, np.nan, 2.0])).percentiles([50.0])
    assert math.isnan(got[0])


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("compiled", ["built", "jit"])
def test_percentiles_by_buckets_are_numpys_floats(compiled, monkeypatch) -> None:
    """From ``BUCKETS_MIN`` values on, the ranks come from buckets of the
    values' bits (``simlab.order_kernel``), from one array or from several
    where they lie (a replication each): the same floats as numpy's on the
    arrays end to end. Here every array takes that path."""
    if compiled == "jit":
        monkeypatch.setattr(kernels, "aot_module", lambda: None)
    else:
        assert kernels.aot_module() is not None, "the kernels are not built: run make"
    monkeypatch.setattr(stats, "BUCKETS_MIN", 0)
    monkeypatch.setattr(kernels, "ready", lambda: True)
    rng = np.random.default_rng(11)
    for trial, (values, sets) in enumerate(_percentile_cases(13, 120)):
        cuts = np.sort(rng.integers(0, len(values) + 1, int(rng.integers(0, 4))))
        pieces = [p for p in np.split(values.copy(), cuts) if len(p)]
        sel = _OrderStats(pieces if trial % 2 else values.copy())
        for levels in sets:
            got = sel.percentiles(levels)
            assert np.array_equal(got, _numpys(values, levels), equal_nan=True), (trial, levels)
    # The pooled percentiles and their intervals: the same whichever way.
    samples = [np.where(rng.random(3000) < 0.6, 0.0, rng.exponential(1.0, 3000)) for _ in range(4)]
    by_buckets = stats.quantiles_ci95(samples, (50, 95, 99))
    monkeypatch.setattr(stats, "BUCKETS_MIN", 10**12)
    assert by_buckets == stats.quantiles_ci95(samples, (50, 95, 99))
