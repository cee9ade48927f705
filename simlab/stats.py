"""Confidence intervals: the one place that turns repeated estimates into an interval.

``ci95`` is the two-sided 95% t interval for the mean of independent
estimates: independent replications of a simulation, or batch means of one
long real run. It needs at least two finite values.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ci95", "t975"]


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
