"""Confidence intervals: the one place that turns repeated estimates into an interval.

``ci95`` is the two-sided 95% t interval for the mean of independent
estimates: independent replications of a simulation, or batch means of one
long real run. It needs at least two finite values.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["bootstrap_ci", "ci95", "t975"]


def t975(dof: int) -> float:
    """The 97.5th percentile of Student's t with ``dof`` degrees of freedom."""
    # scipy is heavy to import; only callers that need an interval load it.
    from scipy import stats  # noqa: PLC0415

    return float(stats.t.ppf(0.975, dof))


def ci95(values: list[float] | np.ndarray) -> list[float] | None:
    """Two-sided 95% t interval for the mean of independent values (None if fewer than 2).

    mean +- t(0.975, n-1) s / sqrt(n), with s the sample standard deviation.
    Non-finite values (a replication with no answered request) are left out.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return None
    half = t975(len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    m = float(x.mean())
    return [m - half, m + half]


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
