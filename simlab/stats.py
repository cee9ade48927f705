"""Confidence intervals: the one place that turns repeated estimates into an interval.

``ci95`` is the two-sided 95% t interval for the mean of independent
estimates: independent replications of a simulation, or batch means of one
long real run. It needs at least two finite values.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["bootstrap_ci", "ci95", "t975"]


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
