"""Time-varying load: a piecewise-constant rate schedule.

A flash sale is not a steady Poisson stream: the rate steps up for a while
and comes back down. ``Schedule`` holds the rate as breakpoints
``(time_s, rate)``, each rate holding from its time until the next
breakpoint, and the last one holding to the end of the run. It is written
two ways:

- text, segments separated by commas: ``100/s for 60s, 2000/s for 10s,
  100/s for 120s`` (a rate in requests/s, ``/s`` optional; a duration in
  ``s``, ``ms`` or ``min``, seconds when no unit is given); the last
  segment may leave out its duration (``..., 100/s``);
- a CSV file of ``time_s,rate`` rows (a header line is allowed, ``#``
  starts a comment), times sorted and starting at 0.

Arrivals are Poisson with that rate (time rescaling: a gap that crosses a
breakpoint carries its unused share of the unit-rate exponential into the
next segment, so every segment is exactly Poisson at its own rate). The
schedule is normalised when it is built: segments of zero length are
dropped and neighbours of equal rate merged, so that a schedule which is
one constant rate draws the very same arrivals as ``--rate`` with that rate.

This module imports nothing heavier than the standard library: the real
load generator follows the same schedule.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simlab.errors import UserError

__all__ = ["Schedule", "parse_rate", "read_schedule"]

_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "ms": 1e-3, "min": 60.0, "m": 60.0}
_SEGMENT = re.compile(
    r"^\s*(?P<rate>[-+0-9.eE]+)\s*(?:/\s*s|rps|req/s)?\s*"
    r"(?:for\s+(?P<dur>[-+0-9.eE]+)\s*(?P<unit>[a-z]*)\s*)?$"
)


@dataclass(frozen=True)
class Schedule:
    """Rates ``rates[k]`` (requests/s) from ``times[k]`` (s) until ``times[k + 1]``;
    the last rate holds for ever. ``span`` is the length the schedule was
    written for (its last segment's end), None when its last segment is open."""

    times: tuple[float, ...]
    rates: tuple[float, ...]
    span: float | None = None

    def __post_init__(self) -> None:
        if not self.times:
            raise UserError("a rate schedule needs at least one segment")
        if len(self.times) != len(self.rates):
            raise UserError("a rate schedule needs one rate per breakpoint")
        if self.times[0] != 0:
            raise UserError(f"a rate schedule must start at time 0, not {self.times[0]:g} s")
        for k, (t, r) in enumerate(zip(self.times, self.rates, strict=True)):
            if not (math.isfinite(t) and t >= 0):
                raise UserError(f"time {t!r} of segment {k + 1} must be a finite number >= 0")
            if not (math.isfinite(r) and r >= 0):
                raise UserError(f"rate {r!r} of segment {k + 1} must be a finite number >= 0")
            if k and t <= self.times[k - 1]:
                raise UserError(
                    f"times must increase: segment {k + 1} starts at {t:g} s, "
                    f"not after {self.times[k - 1]:g} s"
                )
        if max(self.rates) <= 0:
            raise UserError("a rate schedule needs a rate above 0 somewhere")
        if self.span is not None and not (math.isfinite(self.span) and self.span > 0):
            raise UserError(f"schedule length {self.span!r} must be > 0")

    @classmethod
    def of(cls, segments: list[tuple[float, float]], *, open_end: bool = False) -> Schedule:
        """From ``(rate, seconds)`` segments, normalised (zero-length segments
        dropped, equal neighbours merged); ``open_end``: the last one has no length."""
        times: list[float] = []
        rates: list[float] = []
        t = 0.0
        for rate, seconds in segments:
            if seconds == 0:
                continue
            if rates and rates[-1] == rate:
                t += seconds
                continue
            times.append(t)
            rates.append(rate)
            t += seconds
        if not rates:
            raise UserError("a rate schedule needs a segment longer than 0 s")
        return cls(tuple(times), tuple(rates), None if open_end else t)

    @classmethod
    def steps(cls, times: list[float], rates: list[float]) -> Schedule:
        """From breakpoints (a CSV's rows), normalised; the last rate holds for ever."""
        if not times:
            raise UserError("a rate schedule needs at least one row")
        out_t: list[float] = []
        out_r: list[float] = []
        for t, r in zip(times, rates, strict=True):
            if out_r and r == out_r[-1]:
                continue
            out_t.append(t)
            out_r.append(r)
        # Checked before merging would hide an unsorted row behind an equal rate.
        cls(tuple(times), tuple(rates))
        return cls(tuple(out_t), tuple(out_r))

    @property
    def constant(self) -> bool:
        return len(self.rates) == 1

    def rate_at(self, t: float) -> float:
        k = 0
        while k + 1 < len(self.times) and self.times[k + 1] <= t:
            k += 1
        return self.rates[k]

    def expected(self, t0: float, t1: float) -> float:
        """Expected arrivals in [t0, t1): the integral of the rate."""
        total = 0.0
        for k, (start, rate) in enumerate(zip(self.times, self.rates, strict=True)):
            end = self.times[k + 1] if k + 1 < len(self.times) else math.inf
            lo, hi = max(start, t0), min(end, t1)
            if hi > lo:
                total += rate * (hi - lo)
        return total

    def mean_rate(self, t1: float | None = None) -> float:
        """The mean rate over [0, t1); by default over the schedule's length, or,
        for a schedule whose last segment is open, that segment's rate (the
        load it settles at)."""
        end = t1 if t1 is not None else self.span
        if end is None or end <= 0:
            return self.rates[-1]
        return self.expected(0.0, end) / end

    @property
    def peak(self) -> float:
        return max(self.rates)

    def settles_at(self) -> float | None:
        """When the last segment begins if it comes after a higher rate (the end
        of the spike, from which recovery is timed), else None."""
        if len(self.rates) < 2 or max(self.rates[:-1]) <= self.rates[-1]:
            return None
        return self.times[-1]

    def describe(self) -> dict[str, Any]:
        return {
            "times_s": list(self.times),
            "rates_rps": list(self.rates),
            "length_s": self.span,
        }

    def text(self) -> str:
        """The schedule written as ``--rate`` takes it."""
        parts = []
        for k, rate in enumerate(self.rates):
            end = self.times[k + 1] if k + 1 < len(self.times) else self.span
            if end is None:
                parts.append(f"{rate:g}/s")
            else:
                parts.append(f"{rate:g}/s for {end - self.times[k]:g}s")
        return ", ".join(parts)


def parse_schedule(text: str) -> Schedule:
    """A schedule from its text form (``100/s for 60s, 2000/s for 10s, 100/s``)."""
    pieces = text.split(",")
    if not any(p.strip() for p in pieces):
        raise UserError("the rate schedule is empty")
    segments: list[tuple[float, float]] = []
    open_end = False
    for k, piece in enumerate(pieces, 1):
        m = _SEGMENT.match(piece.lower())
        if m is None:
            raise UserError(
                f"segment {k} ({piece.strip()!r}) is not 'RATE/s for DURATION' "
                "(e.g. '100/s for 60s')"
            )
        rate = _number(m["rate"], f"segment {k}'s rate")
        if rate < 0:
            raise UserError(f"segment {k}'s rate ({rate:g}/s) must be >= 0")
        if m["dur"] is None:
            if k != len(pieces):
                raise UserError(
                    f"segment {k} needs a duration ('for ...'); only the last may omit it"
                )
            open_end = True
            segments.append((rate, math.inf))
            continue
        unit = m["unit"] or ""
        if unit not in _UNITS:
            raise UserError(f"segment {k}'s duration unit {unit!r} is not s, ms or min")
        seconds = _number(m["dur"], f"segment {k}'s duration") * _UNITS[unit]
        if seconds < 0:
            raise UserError(f"segment {k}'s duration ({seconds:g} s) must be >= 0")
        segments.append((rate, seconds))
    if open_end:
        *head, (last_rate, _) = segments
        return Schedule.of([*head, (last_rate, 1.0)], open_end=True)
    return Schedule.of(segments)


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{what} ({text!r}) is not a number") from None
    if not math.isfinite(value):
        raise UserError(f"{what} ({text!r}) must be finite")
    return value


def read_schedule(path: Path) -> Schedule:
    """A schedule from a CSV of ``time_s,rate`` rows: piecewise constant, the
    last rate holding to the end of the run."""
    try:
        with path.open(newline="") as fh:
            rows = [r for r in csv.reader(fh) if r and r[0].strip() and not r[0].startswith("#")]
    except OSError as exc:
        raise UserError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    if rows:
        try:
            float(rows[0][0])
        except ValueError:
            rows = rows[1:]  # a header line
    if not rows:
        raise UserError(f"{str(path)!r} holds no time_s,rate rows")
    times: list[float] = []
    rates: list[float] = []
    for k, row in enumerate(rows, 1):
        try:
            times.append(float(row[0]))
            rates.append(float(row[1]))
        except (ValueError, IndexError):
            raise UserError(f"row {k} of {str(path)!r} is not 'time_s,rate': {row!r}") from None
    try:
        return Schedule.steps(times, rates)
    except UserError as exc:
        raise UserError(f"{str(path)!r}: {exc}") from None


def parse_rate(value: Any) -> float | Schedule:
    """What ``--rate`` takes: a number (requests/s), a schedule's text, or a CSV file
    (a value ending in ``.csv``). Raises UserError without the option's name."""
    if isinstance(value, bool):
        raise UserError(f"must be a number > 0 or a schedule, got {value!r}")
    if isinstance(value, int | float):
        rate = float(value)
        if not (math.isfinite(rate) and rate > 0):
            raise UserError(f"must be a number > 0 or a schedule, got {value!r}")
        return rate
    if isinstance(value, Schedule):
        return value
    if isinstance(value, Path) or (isinstance(value, str) and value.strip().endswith(".csv")):
        return read_schedule(Path(str(value).strip()))
    if not isinstance(value, str):
        raise UserError(f"must be a number > 0 or a schedule, got {value!r}")
    try:
        rate = float(value)
    except ValueError:
        return parse_schedule(value)
    return parse_rate(rate)
