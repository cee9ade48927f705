"""Service-time distributions: each knows its own mean and coefficient of variation.

Every distribution draws in bulk from an explicit ``numpy.random.Generator`` (no
global random state) and has a ``repr`` that can be pasted back into Python.
Values are in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from simlab.errors import UserError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    FloatArray = NDArray[np.float64]

__all__ = [
    "RESEND_AT_ONCE",
    "Distribution",
    "Empirical",
    "Exponential",
    "Fixed",
    "LogNormal",
    "parse_distribution",
]


@runtime_checkable
class Distribution(Protocol):
    """What the models need from a distribution."""

    @property
    def mean(self) -> float: ...

    @property
    def cv(self) -> float: ...

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> FloatArray: ...

    # Hashable, so that derived quantities can be cached per distribution.
    def __hash__(self) -> int: ...


def _check_mean(name: str, mean: float) -> None:
    if not math.isfinite(mean) or mean < 0:
        raise UserError(f"{name}(mean={mean!r}) must be a finite number >= 0")


@dataclass(frozen=True)
class Fixed:
    """Every draw equals ``value``: cv = 0."""

    value: float

    def __post_init__(self) -> None:
        _check_mean("Fixed", self.value)

    @property
    def mean(self) -> float:
        return self.value

    @property
    def cv(self) -> float:
        return 0.0

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> FloatArray:
        import numpy as np  # noqa: PLC0415 - numpy loads on first draw, not on import

        return np.full(size, self.value, dtype=np.float64)

    def __repr__(self) -> str:
        return f"Fixed({self.value!r})"


@dataclass(frozen=True)
class Exponential:
    """Exponential with the given mean: cv = 1 (memoryless, as in M/M/c)."""

    mean: float

    def __post_init__(self) -> None:
        _check_mean("Exponential", self.mean)

    @property
    def cv(self) -> float:
        return 1.0 if self.mean > 0 else 0.0

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> FloatArray:
        if self.mean == 0:
            import numpy as np  # noqa: PLC0415 - numpy loads on first draw, not on import

            return np.zeros(size, dtype=np.float64)
        return rng.exponential(self.mean, size)

    def __repr__(self) -> str:
        return f"Exponential({self.mean!r})"


# A closed loop's client that resends as soon as it is answered: the simulation
# needs a positive think time, so it gets one microsecond, and exponential, as
# the real load generator's clients think (``simlab.real.loadgen``).
RESEND_AT_ONCE = Exponential(1e-6)


@dataclass(frozen=True)
class LogNormal:
    """Lognormal parameterised by its own mean and cv (not by the underlying normal).

    With sigma^2 = ln(1 + cv^2) and mu = ln(mean) - sigma^2 / 2, the draws have
    exactly the requested mean and cv. Heavy right tail for large cv, which is
    what real database and API latencies look like.
    """

    mean: float
    cv: float = 1.0

    def __post_init__(self) -> None:
        _check_mean("LogNormal", self.mean)
        if not math.isfinite(self.cv) or self.cv <= 0:
            raise UserError(f"LogNormal(cv={self.cv!r}) must be a finite number > 0")

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> FloatArray:
        if self.mean == 0:
            import numpy as np  # noqa: PLC0415 - numpy loads on first draw, not on import

            return np.zeros(size, dtype=np.float64)
        sigma2 = math.log1p(self.cv**2)
        mu = math.log(self.mean) - sigma2 / 2
        return rng.lognormal(mu, math.sqrt(sigma2), size)

    def __repr__(self) -> str:
        return f"LogNormal({self.mean!r}, cv={self.cv!r})"


@dataclass(frozen=True)
class Empirical:
    """Resamples (with replacement) from observed values, such as measured latencies."""

    samples: tuple[float, ...]
    _values: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.samples:
            raise UserError("Empirical(samples=()) needs at least one sample")
        import numpy as np  # noqa: PLC0415 - numpy loads on first use, not on import

        values = np.asarray(self.samples, dtype=np.float64)
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise UserError("Empirical(samples) must all be finite and >= 0")
        # Cached because the models ask for mean and cv in their hot set-up paths.
        object.__setattr__(self, "_values", values)

    @property
    def mean(self) -> float:
        return float(self._values.mean())

    @property
    def cv(self) -> float:
        m = self.mean
        return float(self._values.std() / m) if m > 0 else 0.0

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> FloatArray:
        return rng.choice(self._values, size=size)

    def __repr__(self) -> str:
        return f"Empirical({self.samples!r})"


def scaled(dist: Distribution, factor: float) -> Distribution:
    """The same shape with its mean multiplied by ``factor``."""
    if isinstance(dist, Fixed):
        return Fixed(dist.value * factor)
    if isinstance(dist, Exponential):
        return Exponential(dist.mean * factor)
    if isinstance(dist, LogNormal):
        return LogNormal(dist.mean * factor, cv=dist.cv)
    if isinstance(dist, Empirical):
        return Empirical(tuple(x * factor for x in dist.samples))
    raise TypeError(f"cannot scale {dist!r}")


def parse_distribution(spec: str, mean_s: float, *, option: str = "distribution") -> Distribution:
    """Build a distribution from a CLI spec and a mean in seconds.

    Specs: ``fixed``, ``exp``, ``lognormal`` (cv 1), ``lognormal:CV``, and
    ``empirical:FILE`` where FILE holds one value in milliseconds per line
    (the mean then comes from the file and ``mean_s`` is ignored).
    """
    kind, _, arg = spec.strip().partition(":")
    kind = kind.lower()
    if kind == "fixed" and not arg:
        return Fixed(mean_s)
    if kind in ("exp", "exponential") and not arg:
        return Exponential(mean_s)
    if kind == "lognormal":
        if not arg:
            return LogNormal(mean_s)
        try:
            cv = float(arg)
        except ValueError:
            raise UserError(f"{option}: lognormal cv must be a number, got {arg!r}") from None
        if not math.isfinite(cv) or cv <= 0:
            raise UserError(f"{option}: lognormal cv(={arg}) must be > 0")
        return LogNormal(mean_s, cv=cv)
    if kind == "empirical" and arg:
        return _read_empirical(Path(arg), option)
    raise UserError(
        f"{option}: unknown distribution {spec!r} "
        "(use fixed, exp, lognormal, lognormal:CV or empirical:FILE)"
    )


def _read_empirical(path: Path, option: str) -> Empirical:
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(
            f"{option}: cannot read samples file {str(path)!r}: {exc.strerror}"
        ) from None
    values: list[float] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            values.append(float(line) / 1000.0)
        except ValueError:
            raise UserError(f"{option}: {path}:{lineno}: not a number: {line!r}") from None
    try:
        return Empirical(tuple(values))
    except ValueError as exc:
        raise UserError(f"{option}: {path}: {exc}") from None
