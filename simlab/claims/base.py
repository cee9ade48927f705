"""A claim of the notes, the rule that judges it, and the judged row.

A rule reads its evidence (``simlab.claims.evidence``) and returns a
``Finding``: the verdict, the reason, and the numbers the reason cites. The
verdict is always chosen by comparisons inside the rule, so that changing
the data changes the verdict; no verdict is stored anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from simlab.claims.evidence import Evidence

__all__ = [
    "CLAIMS",
    "VERDICTS",
    "Claim",
    "Finding",
    "Verdict",
    "claim",
    "judge",
]

Verdict = Literal["confirmed", "refined", "contradicted", "not testable here", "not yet measured"]
VERDICTS: tuple[Verdict, ...] = (
    "confirmed",
    "refined",
    "contradicted",
    "not testable here",
    "not yet measured",
)


@dataclass(frozen=True)
class Finding:
    """What a rule concluded from its evidence."""

    verdict: Verdict
    reason: str
    numbers: dict[str, Any] = field(default_factory=dict)


Rule = Callable[[Evidence], Finding]


@dataclass(frozen=True)
class Claim:
    """One claim of the notes: its words, the English, and how to reproduce its evidence."""

    id: str
    topic: str
    zh: str
    en: str
    command: str
    rule: Rule


CLAIMS: list[Claim] = []


def claim(id: str, topic: str, zh: str, en: str, command: str) -> Callable[[Rule], Rule]:
    """Register ``rule`` as the judge of a claim (in the order the ledger shows)."""

    def register(rule: Rule) -> Rule:
        if any(c.id == id for c in CLAIMS):
            raise ValueError(f"claim id {id!r} registered twice")
        CLAIMS.append(Claim(id=id, topic=topic, zh=zh, en=en, command=command, rule=rule))
        return rule

    return register


def judge(
    *,
    holds: bool,
    partly: bool = False,
    yes: str,
    no: str,
    part: str = "",
    numbers: dict[str, Any],
) -> Finding:
    """The common shape of a verdict: confirmed when the claim ``holds``,
    refined when it holds only ``partly`` (in one sense, or under a condition),
    contradicted otherwise; each with its own reason."""
    if holds:
        return Finding("confirmed", yes, numbers)
    if partly:
        return Finding("refined", part, numbers)
    return Finding("contradicted", no, numbers)
