"""Small rules that turn the overload experiments' tables into sentences.

Every sentence of their findings that states a direction, a comparison or a
verdict is chosen here from numbers, so that the text cannot say what the
data contradict:

- ``recovery_text``: "recovered N s after the spike ended", or "had not
  recovered T s after it", from a run's ``recovered_s``;
- ``onset``: the smallest spike that tipped a run over (did not recover),
  with the largest below it that did not, from a sweep;
- ``ratio_verdict``: two sizes' ratio and whether it lies within a factor;
- ``compare``: more, less or about the same, with a stated relative threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Onset", "compare", "onset", "ratio_verdict", "recovery_text"]

Relation = Literal["more", "less", "same"]


def recovery_text(recovered_s: float | None, after_s: float) -> str:
    """How a run ended after its spike, in words."""
    if recovered_s is None or (isinstance(recovered_s, float) and math.isnan(recovered_s)):
        return f"had not recovered {after_s:g} s after the spike ended"
    if recovered_s <= 0:
        return "was healthy again as soon as the spike ended"
    return f"recovered {recovered_s:g} s after the spike ended"


@dataclass(frozen=True)
class Onset:
    """The smallest tipping spike of a sweep (None: none tipped) and the
    largest smaller one that recovered (None: none did)."""

    tipped: float | None
    held: float | None

    def text(self, unit: str = "x") -> str:
        if self.tipped is None:
            return "no spike in the sweep tipped it over"
        if self.held is None:
            return f"every spike tipped it over, from {self.tipped:g}{unit} on"
        return (
            f"it tipped over at a {self.tipped:g}{unit} spike; "
            f"a {self.held:g}{unit} spike still recovered"
        )


def onset(sizes: Sequence[float], recovered: Sequence[float | None]) -> Onset:
    """The onset of a metastable failure along a sweep of spike sizes: the
    smallest size that did not recover, from which every larger one did not
    either (a lone failure below a recovery does not count as the onset)."""
    pairs = sorted(zip(sizes, recovered, strict=True))

    def failed(r: float | None) -> bool:
        return r is None or (isinstance(r, float) and math.isnan(r))

    tipped: float | None = None
    for k, (size, _) in enumerate(pairs):
        if all(failed(r) for _, r in pairs[k:]):
            tipped = size
            break
    held = None
    for size, r in pairs:
        if not failed(r) and (tipped is None or size < tipped):
            held = size
    return Onset(tipped, held)


def ratio_verdict(a: float, b: float, factor: float) -> tuple[float, bool]:
    """a / b, and whether it lies within [1 / factor, factor]."""
    r = a / b
    return r, 1 / factor <= r <= factor


def compare(value: float, reference: float, tol: float) -> Relation:
    """ "more" or "less" than the reference by more than ``tol`` (relative), else "same"."""
    if reference == 0:
        return "same" if value == 0 else ("more" if value > 0 else "less")
    rel = (value - reference) / abs(reference)
    if rel > tol:
        return "more"
    if rel < -tol:
        return "less"
    return "same"
