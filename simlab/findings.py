"""Rules that turn a results table into sentences.

Every sentence of an experiment's ``findings.md`` that states a direction, a
comparison or a cause is chosen by a rule from numbers in its results table,
so that the text cannot say what the data contradict. The rules the seven
experiments share live here:

- ``trend``: an ordinary least-squares slope with its 95% CI; it "rises" or
  "falls" only when the CI excludes 0, otherwise no trend is shown;
- ``elasticity`` and ``scaling``: the slope of log y against log x
  (y ~ x^b), which is "linear" when b's CI lies within a stated band around 1,
  "sub-linear" or "super-linear" when b is both significantly and materially
  away from 1, and "undetermined" when the CI cannot tell;
- ``monotone``: Kendall's tau and its p-value, for a direction that need not be a
  straight line (a gap that opens up at high load): it "rises" or "falls" only
  when p < alpha;
- ``compare``: a value against a reference with a stated relative threshold:
  more, less, or the same within the threshold;
- ``within_noise``: two single readings whose difference is within what the
  spread of their neighbours (a residual standard deviation) allows;
- ``hypothesis``: how a cause the table cannot show is written, with the run
  that would test it;
- ``RESIDENT``: what each source's ``resident_mib`` means, so that findings
  that put measured memory beside simulated memory say what is compared.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

__all__ = [
    "MEASURED_MACHINE",
    "RESIDENT",
    "SHARE_LEFT",
    "Comparison",
    "Direction",
    "Monotone",
    "Relation",
    "ResidentDefinition",
    "ResidentGap",
    "Scaling",
    "Trend",
    "compare",
    "definitions_differ",
    "definitions_text",
    "elasticity",
    "hypothesis",
    "joined",
    "machine_cores",
    "measured_definition",
    "monotone",
    "ranges_apart",
    "resident_gap",
    "scaling",
    "share_left",
    "trend",
    "within_noise",
]

Direction = Literal["rises", "falls", "none"]
Scaling = Literal["linear", "sub-linear", "super-linear", "undetermined"]
Relation = Literal["more", "less", "same"]


@dataclass(frozen=True)
class Trend:
    """A least-squares slope with its two-sided 95% confidence interval."""

    slope: float
    lo: float
    hi: float
    points: int

    @property
    def direction(self) -> Direction:
        """ "rises" or "falls" when the CI excludes 0; "none" when it does not
        (or when two points leave no degrees of freedom for a CI)."""
        if self.lo > 0:
            return "rises"
        if self.hi < 0:
            return "falls"
        return "none"

    def scaled(self, k: float) -> Trend:
        """The same trend in other units (slope and CI times k, k > 0)."""
        return Trend(self.slope * k, self.lo * k, self.hi * k, self.points)

    def ci(self, fmt: str = ".2f") -> str:
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            return f"{self.points} points: no CI"
        return f"95% CI {self.lo:{fmt}} to {self.hi:{fmt}}"


def trend(x: ArrayLike, y: ArrayLike) -> Trend:
    """OLS slope of y on x, CI from the t distribution with n - 2 degrees of freedom.

    With fewer than three points (or x constant) the CI is infinite, so the
    direction is "none": two readings do not make a trend.
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if len(xs) != len(ys):
        raise ValueError(f"x and y differ in length: {len(xs)} and {len(ys)}")
    if len(xs) < 2 or np.ptp(xs) == 0:
        return Trend(math.nan, -math.inf, math.inf, len(xs))
    if np.ptp(ys) == 0:
        # Exactly flat: no spread to estimate, and none needed.
        return Trend(0.0, 0.0, 0.0, len(xs))
    fit = stats.linregress(xs, ys)
    slope = float(fit.slope)
    if len(xs) < 3:
        return Trend(slope, -math.inf, math.inf, len(xs))
    half = float(stats.t.ppf(0.975, len(xs) - 2)) * float(fit.stderr)
    return Trend(slope, slope - half, slope + half, len(xs))


def elasticity(x: ArrayLike, y: ArrayLike) -> Trend:
    """The exponent b of y ~ x^b: the slope of log y against log x, with its CI."""
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if (xs <= 0).any() or (ys <= 0).any():
        raise ValueError("elasticity needs positive x and y")
    return trend(np.log(xs), np.log(ys))


@dataclass(frozen=True)
class Monotone:
    """Kendall's rank correlation of y with x, and its two-sided p-value."""

    tau: float
    p: float
    alpha: float

    @property
    def direction(self) -> Direction:
        """ "rises" or "falls" when p < alpha; "none" otherwise."""
        if not self.p < self.alpha:
            return "none"
        return "rises" if self.tau > 0 else "falls"

    def describe(self) -> str:
        return f"Kendall's tau {self.tau:+.2f}, p = {self.p:.3f}"


def monotone(x: ArrayLike, y: ArrayLike, alpha: float = 0.05) -> Monotone:
    """Whether y rises or falls with x, in rank only (no straight line assumed)."""
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if len(xs) != len(ys):
        raise ValueError(f"x and y differ in length: {len(xs)} and {len(ys)}")
    if len(xs) < 3 or np.ptp(ys) == 0 or np.ptp(xs) == 0:
        return Monotone(0.0, 1.0, alpha)
    result = stats.kendalltau(xs, ys)
    tau, pvalue = float(result.statistic), float(result.pvalue)
    return Monotone(tau, pvalue if math.isfinite(pvalue) else 1.0, alpha)


def scaling(b: Trend, tol: float = 0.1) -> Scaling:
    """How y grows with x, from the exponent b (``elasticity``) and a band of +-tol around 1.

    - "linear": b's whole CI is inside [1 - tol, 1 + tol];
    - "sub-linear": b's CI is below 1 and b itself below 1 - tol (significant and material);
    - "super-linear": the mirror image above 1 + tol;
    - "undetermined": anything else (the CI straddles the band's edge).
    """
    if b.hi < 1 and b.slope < 1 - tol:
        return "sub-linear"
    if b.lo > 1 and b.slope > 1 + tol:
        return "super-linear"
    if b.lo >= 1 - tol and b.hi <= 1 + tol:
        return "linear"
    return "undetermined"


@dataclass(frozen=True)
class Comparison:
    """``value`` against ``reference``: the relation holds beyond a relative threshold ``tol``."""

    value: float
    reference: float
    tol: float

    @property
    def ratio(self) -> float:
        return self.value / self.reference if self.reference else math.inf

    @property
    def relative(self) -> float:
        """(value - reference) / reference: +0.2 is 20% more."""
        return self.ratio - 1

    @property
    def relation(self) -> Relation:
        """ "more" or "less" when value differs from reference by more than tol of it."""
        if abs(self.value - self.reference) <= self.tol * abs(self.reference):
            return "same"
        return "more" if self.value > self.reference else "less"

    def pick(self, *, more: str, less: str, same: str) -> str:
        """The wording the data choose: every statement of a comparison has all three."""
        return {"more": more, "less": less, "same": same}[self.relation]


def compare(value: float, reference: float, tol: float) -> Comparison:
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    return Comparison(float(value), float(reference), tol)


def within_noise(a: float, b: float, sd: float, z: float = 1.96) -> bool:
    """Whether two single readings, each with standard deviation sd, differ by no more
    than z standard deviations of their difference (sd x sqrt 2)."""
    if not math.isfinite(sd):
        return True
    return abs(a - b) <= z * sd * math.sqrt(2)


def ranges_apart(a: ArrayLike, b: ArrayLike) -> bool:
    """Whether two sets of repeated runs differ beyond their own spread: two runs
    or more each, and every run of one above every run of the other (one run
    each shows no spread, so never). A weak rule with few runs: two sets of
    the same quantity land apart by chance 1 time in 3 with two runs each, 1
    in 10 with three; the sentences that use it say how many runs they had."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if min(len(x), len(y)) < 2:
        return False
    return bool(x.min() > y.max() or y.min() > x.max())


# A fall that a second condition leaves under half as large is that condition's
# ("share_left", gil_overload_collapse and the claims that read it).
SHARE_LEFT = 0.5


def share_left(
    fewest: ArrayLike,
    most: ArrayLike,
    fewest_then: ArrayLike,
    most_then: ArrayLike,
    *,
    draws: int = 400,
    seed: int = 0,
) -> tuple[float, tuple[float, float] | None]:
    """How much of a fall is left under a second condition: the fall from
    ``fewest`` to ``most`` (runs' means, a fraction of the fewest's) under it
    (``fewest_then`` to ``most_then``) over the fall under the first; and its
    95% interval over resamples of the runs (each set drawn with replacement;
    a resample with no first fall is left out), None with fewer than two runs
    in a set or no fall in any resample. The ratio is undefined (nan) where
    the first fall is none."""
    sets = [np.asarray(v, dtype=float) for v in (fewest, most, fewest_then, most_then)]

    def left(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> float:
        fall = 1 - b.mean() / a.mean()
        return float((1 - d.mean() / c.mean()) / fall) if fall != 0 else math.nan

    point = left(*sets)
    if min(len(v) for v in sets) < 2:
        return point, None
    rng = np.random.default_rng(seed)
    values = np.array([left(*(rng.choice(v, len(v)) for v in sets)) for _ in range(draws)])
    values = values[np.isfinite(values)]
    if not len(values):
        return point, None  # no fall in any resample: no share to bound
    lo, hi = np.percentile(values, [2.5, 97.5])
    return point, (float(lo), float(hi))


def hypothesis(claim: str, test: str) -> str:
    """A cause the table cannot show, written as such, with the run that would test it."""
    return (
        f"Hypothesis (not shown by this table): {claim.rstrip('.')}. "
        f"Run that would test it: {test.rstrip('.')}."
    )


def joined(items: Sequence[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def machine_cores(df: pd.DataFrame) -> int | None:
    """The measuring machine's cores, from the ``machine`` column ``Experiment`` writes
    ("<cpu> x<cores>"); None when the column is missing or says otherwise."""
    if "machine" not in df.columns or df.empty:
        return None
    found = re.search(r" x(\d+)$", str(df["machine"].iloc[0]))
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class ResidentDefinition:
    """What the ``resident_mib`` column holds for one source."""

    meaning: str
    # Whether the client end of each loopback connection (the load generator's
    # socket buffers) is counted: the one difference that can be sized from the
    # profile, so that a gap between the sources is split into that and the rest.
    client_ends: bool


# How each source's resident_mib is obtained. Measured runs have had two
# definitions: runs that record ``memory_definition`` in their parameters count
# the server's own kernel memory (its memory cgroup, ``simlab.real.kernel``) and
# leave the load generator's sockets out, as the models do; older runs took the
# whole machine's kernel growth, client ends included. A finding names the one
# its run used (``measured_definition``), so that it attributes part of a gap to
# the definitions only when they differ.
MEASURED_MACHINE = "measured (machine)"
RESIDENT: dict[str, ResidentDefinition] = {
    "measured": ResidentDefinition(
        "the server's process tree's PSS plus its own kernel memory (its memory "
        "cgroup's kernel charge plus one TCP socket object per accepted connection), "
        "which leaves out the load generator's and the backend's sockets",
        client_ends=False,
    ),
    MEASURED_MACHINE: ResidentDefinition(
        "the server's process tree's PSS plus the whole machine's kernel-memory growth "
        "during the run (slab, kernel stacks, page tables), which includes the load "
        "generator's and the backend's sockets",
        client_ends=True,
    ),
    "simulated": ResidentDefinition(
        "the model's user memory plus its kernel memory per unit, counting each "
        "connection's server end only (the profile's connection_kernel_kib)",
        client_ends=False,
    ),
}


def measured_definition(params: dict[str, object] | None) -> str:
    """The ``RESIDENT`` key of a run's measured memory, from the parameters it recorded
    (``memory_definition``); runs that predate the record used the machine's growth."""
    if params and isinstance(params.get("memory_definition"), str):
        return str(params["memory_definition"])
    return MEASURED_MACHINE


@dataclass(frozen=True)
class ResidentGap:
    """Measured against simulated resident memory, in words, and whether they agree once
    put on one definition."""

    text: str
    agree: bool


def definitions_differ(measured: str = "measured") -> str | None:
    """How the two sources' resident_mib differ, in words, or None when they do not.

    ``measured`` is the ``RESIDENT`` key of the measured runs' definition."""
    m, s = RESIDENT[measured].client_ends, RESIDENT["simulated"].client_ends
    if m == s:
        return None
    return (
        f"the {'measured' if m else 'simulated'} one counts the client end of every "
        f"connection, the {'simulated' if m else 'measured'} one does not"
    )


def definitions_text(agree_tol: float, measured: str = "measured") -> str:
    """The paragraph that says what each resident number is, before they are compared."""
    differ = definitions_differ(measured)
    return (
        "The measured and simulated resident columns are "
        + (f"defined differently ({differ})" if differ else "defined alike")
        + f". Measured rows' resident_mib is {RESIDENT[measured].meaning}; simulated "
        f"rows' is {RESIDENT['simulated'].meaning}. Rule: the two agree when within "
        f"{agree_tol:.0%} of the measured value."
    )


def resident_gap(
    measured: float,
    simulated: float,
    *,
    client_ends: float,
    tol: float,
    unit: str = "MiB",
    ends: str = "",
    measured_as: str = "measured",
) -> ResidentGap:
    """One computed sentence on measured against simulated resident memory.

    ``client_ends`` is the memory of the client ends the two definitions may differ
    on (in ``unit``; ``ends`` says how it was reckoned). While ``RESIDENT`` says the
    measured number counts them and the simulated one does not, the simulated number
    is also put on the measured definition and the rule applied to both versions;
    once the definitions agree, only the plain comparison is made.
    """
    raw = compare(simulated, measured, tol)
    words = raw.pick(
        more=f"the simulation is {raw.relative:.0%} above the measurement",
        less=f"the simulation is {-raw.relative:.0%} below the measurement",
        same=f"the two agree within {tol:.0%} ({raw.relative:+.0%})",
    )
    if definitions_differ(measured_as) is None:
        return ResidentGap(words, raw.relation == "same")
    sign = 1.0 if RESIDENT[measured_as].client_ends else -1.0
    adjusted = compare(simulated + sign * client_ends, measured, tol)
    rest = adjusted.pick(
        more=f"the simulation is still {adjusted.relative:.0%} above it",
        less=f"the simulation is still {-adjusted.relative:.0%} below it",
        same=f"the two agree within {tol:.0%} ({adjusted.relative:+.0%})",
    )
    side = "measurement" if RESIDENT[measured_as].client_ends else "simulation"
    action = "added to" if sign > 0 else "taken off"
    how = f": {ends}" if ends else ""
    return ResidentGap(
        f"{words}; with the client ends that only the {side} counts "
        f"({client_ends:,.1f} {unit}{how}) {action} the simulation, {rest}",
        adjusted.relation == "same",
    )
