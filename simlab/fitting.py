"""Robust linear fits with bootstrap intervals, and whether the data identify each parameter.

Calibration fits the platform's costs to real runs. Three rules keep what it
writes honest:

- **Robust.** A few disturbed runs (the machine is shared) must not drag the
  fit: the loss is soft-L1 (``scipy.optimize.least_squares``), which counts
  a residual quadratically up to the noise scale and linearly beyond it.
- **Intervals that mean something.** Each parameter's 95% interval is the
  percentile bootstrap over runs (the rows are resampled with replacement
  and refitted), which stays valid where the (J^T J)^-1 formula does not,
  at a bound in particular.
- **Identified or not.** A parameter is *identified* when its interval
  excludes zero and its estimate is off its bound. Otherwise the runs do not
  pin it down: calibration then keeps the preset's value and labels it an
  assumption, and no interval is shown for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BOOTSTRAPS", "Fit", "fit_robust"]

BOOTSTRAPS = 400
# A bounded estimate this close to its bound (relative to the data's scale)
# sits on it.
AT_BOUND = 1e-6
# Zero in any unit a fit is made in (µs, KiB, a fraction): no cost is that small.
ZERO = 1e-6
# An interval whose low end is under this share of its own estimate reaches
# the bound: Go's call_us came out 19 µs [0.002, 97] on 6 December, the
# bootstrap's 2.5th percentile a draw the solver left a hair above 0.
BOUND_SHARE = 0.01


@dataclass(frozen=True)
class Fit:
    """A robust linear fit: estimates, bootstrap intervals, identification, residuals."""

    names: tuple[str, ...]
    values: tuple[float, ...]
    ci95: tuple[tuple[float, float], ...]
    identified: tuple[bool, ...]
    residuals: tuple[float, ...]
    rows: int

    def value(self, name: str) -> float:
        return self.values[self.names.index(name)]

    def is_identified(self, name: str) -> bool:
        return self.identified[self.names.index(name)]

    def parameter(
        self, name: str, *, preset: float, scale: float = 1.0, method: str = ""
    ) -> dict[str, Any]:
        """How a profile records ``name``: the estimate and its interval when the
        data identify it, else the preset's value labelled as an assumption."""
        k = self.names.index(name)
        if self.identified[k]:
            lo, hi = self.ci95[k]
            return {
                "value": self.values[k] * scale,
                "ci95": [lo * scale, hi * scale],
                "identified": True,
                "method": method,
            }
        lo, hi = self.ci95[k]
        why = (
            "its estimate sits on its bound (zero)"
            if abs(self.values[k]) <= AT_BOUND * max(1.0, abs(hi))
            else f"its bootstrap interval [{lo * scale:.3g}, {hi * scale:.3g}] spans zero"
        )
        return {
            "value": preset,
            "identified": False,
            "assumption": f"not identified by these runs ({why}); the preset's value",
            "estimate": self.values[k] * scale,
            "method": method,
        }


def _solve(
    x: np.ndarray, y: np.ndarray, lower: np.ndarray, start: np.ndarray, scale: float
) -> np.ndarray:
    from scipy import optimize  # noqa: PLC0415 - only calibration needs scipy's solver

    result = optimize.least_squares(
        lambda th: x @ th - y,
        start,
        bounds=(lower, np.inf),
        loss="soft_l1",
        f_scale=scale,
        method="trf",
    )
    solved: np.ndarray = result.x
    return solved


def off_the_bound(value: float, ci95: tuple[float, float], floor: float = ZERO) -> bool:
    """Whether a parameter held at or above zero is identified: its estimate
    and its interval's low end above ``floor``, and the low end above
    ``BOUND_SHARE`` of the estimate (an interval reaching down to a hair
    above the bound reaches the bound)."""
    lo = ci95[0]
    return lo > max(floor, BOUND_SHARE * value) and value > floor


def fit_robust(
    x: np.ndarray,
    y: np.ndarray,
    names: tuple[str, ...],
    *,
    nonnegative: bool = True,
    boots: int = BOOTSTRAPS,
    seed: int = 0,
) -> Fit:
    """y ~ x @ theta by soft-L1 least squares (theta >= 0 when ``nonnegative``),
    with percentile-bootstrap intervals over the rows."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, p = x.shape
    if n < p:
        raise ValueError(f"{n} rows cannot fit {p} parameters")
    # A column no run pays carries no information: it is left at zero, out of
    # the fit (and reported as not identified), so that it does not make every
    # bootstrap resample degenerate.
    paid = np.abs(x).sum(axis=0) > 0
    if not paid.all():
        inner = fit_robust(x[:, paid], y, tuple(np.array(names)[paid]),
                           nonnegative=nonnegative, boots=boots, seed=seed)  # fmt: skip
        values, ci, ok = np.zeros(p), [(0.0, 0.0)] * p, [False] * p
        for k_in, k in enumerate(np.flatnonzero(paid)):
            values[k], ci[k], ok[k] = inner.values[k_in], inner.ci95[k_in], inner.identified[k_in]
        return Fit(names, tuple(float(v) for v in values), tuple(ci), tuple(ok),
                   inner.residuals, n)  # fmt: skip
    lower = np.zeros(p) if nonnegative else np.full(p, -np.inf)
    plain = np.linalg.lstsq(x, y, rcond=None)[0]
    start = np.maximum(plain, lower + 1e-12) if nonnegative else plain
    # The noise scale: the median absolute residual of the plain fit (MAD),
    # so soft-L1 treats as outliers only what is far beyond it.
    resid = x @ plain - y
    scale = max(float(np.median(np.abs(resid - np.median(resid)))) * 1.4826, 1e-9)
    theta = _solve(x, y, lower, start, scale)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(boots):
        pick = rng.integers(0, n, n)
        xb = x[pick]
        if np.linalg.matrix_rank(xb) < p:
            continue  # a resample that cannot separate the parameters says nothing
        draws.append(_solve(xb, y[pick], lower, theta, scale))
    boot = np.array(draws) if draws else np.tile(theta, (1, 1))
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    # "On the bound" is within AT_BOUND of it on the scale of the largest
    # estimate, or under ZERO in the parameter's own unit (µs, KiB): the solver
    # leaves a parameter at its bound a hair above it, and when every estimate
    # is there the scale of the largest is that hair too. An interval that
    # reaches down to it, or under BOUND_SHARE of its own estimate, spans zero.
    floor = max(AT_BOUND * float(np.abs(theta).max()), ZERO)
    identified = tuple(
        off_the_bound(float(theta[k]), (float(lo[k]), float(hi[k])), floor)
        if nonnegative
        else bool(lo[k] > 0 or hi[k] < 0)
        for k in range(p)
    )
    return Fit(
        names=names,
        values=tuple(float(v) for v in theta),
        ci95=tuple((float(a), float(b)) for a, b in zip(lo, hi, strict=True)),
        identified=identified,
        residuals=tuple(float(r) for r in x @ theta - y),
        rows=n,
    )


def median_with_ci(values: list[float], *, seed: int = 0) -> tuple[float, list[float] | None]:
    """A median and its 95% percentile-bootstrap interval."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if len(v) == 0:
        return math.nan, None
    if len(v) < 3:
        return float(np.median(v)), None
    rng = np.random.default_rng(seed)
    meds = np.median(v[rng.integers(0, len(v), (BOOTSTRAPS, len(v)))], axis=1)
    lo, hi = np.percentile(meds, [2.5, 97.5])
    return float(np.median(v)), [float(lo), float(hi)]
