"""The claims ledger: every claim of the notes, judged from the committed data.

Each row gives the claim in the notes' words (Chinese) and in English, the
verdict (confirmed, refined, contradicted, not testable here, not yet
measured) with its reason, the numbers the reason cites, the files they came
from, and the command that reproduces them. Verdicts are computed by each
claim's rule (``simlab.claims.base``) from the data root's experiments,
measurements and calibrated profile, and from short analytic model runs on
that profile; a claim whose evidence file is absent is "not yet measured",
naming the file.

    from simlab.claims import ledger
    rows = ledger()            # from $SIMLAB_DATA (default ./data)
    print(markdown(rows))      # docs/claims.md's table
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simlab.claims import costs, generations, scale  # noqa: F401 - they register the claims
from simlab.claims.base import CLAIMS, VERDICTS, Claim, Finding, Verdict
from simlab.claims.evidence import Evidence, MissingFileError
from simlab.provenance import json_safe

__all__ = ["CLAIMS", "VERDICTS", "Row", "ledger", "markdown", "summary"]


@dataclass(frozen=True)
class Row:
    """One judged claim."""

    id: str
    topic: str
    zh: str
    en: str
    verdict: Verdict
    reason: str
    numbers: dict[str, Any]
    sources: list[str]
    command: str
    missing: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = json_safe(
            {
                "id": self.id,
                "topic": self.topic,
                "claim_zh": self.zh,
                "claim_en": self.en,
                "verdict": self.verdict,
                "reason": self.reason,
                "numbers": self.numbers,
                "sources": self.sources,
                "command": self.command,
                "missing": self.missing,
            }
        )
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


def _judge(c: Claim, root: Path | None) -> Row:
    ev = Evidence(root)
    missing = None
    try:
        f = c.rule(ev)
    except MissingFileError as exc:
        missing = exc.path
        f = Finding("not yet measured", f"missing {exc.path}: run {c.command}", {})
    return Row(
        id=c.id,
        topic=c.topic,
        zh=c.zh,
        en=c.en,
        verdict=f.verdict,
        reason=f.reason,
        numbers=f.numbers,
        sources=sorted(set(ev.used)),
        command=c.command,
        missing=missing,
    )


def ledger(root: Path | None = None, *, only: list[str] | None = None) -> list[Row]:
    """Judge every claim (or those whose id is in ``only``) from ``root``
    (default: the data root, ``$SIMLAB_DATA`` or ./data)."""
    chosen = [c for c in CLAIMS if only is None or c.id in only]
    return [_judge(c, root) for c in chosen]


def summary(rows: list[Row]) -> dict[str, int]:
    """How many rows have each verdict, in the verdicts' order."""
    n = Counter(r.verdict for r in rows)
    return {v: n[v] for v in VERDICTS if n[v]}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _numbers(numbers: dict[str, Any]) -> str:
    parts = []
    for k, v in numbers.items():
        text = str(v)
        if isinstance(v, float):
            text = f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        elif isinstance(v, int):
            text = f"{v:,}"
        parts.append(f"{k}={text}")
    return "; ".join(parts)


def markdown(rows: list[Row]) -> str:
    """The ledger as Markdown: a summary table, then one section per claim."""
    counts = ", ".join(f"{n} {v}" for v, n in summary(rows).items())
    out = [
        f"{len(rows)} claims: {counts}.",
        "",
        "| claim | notes | verdict |",
        "|---|---|---|",
    ]
    out += [f"| [{r.en}](#{r.id}) | {_cell(r.zh)} | **{r.verdict}** |" for r in rows]
    for r in rows:
        out += [
            "",
            f"### {r.id}",
            "",
            f"> {r.zh}",
            "",
            f"*{r.en}*",
            "",
            f"**{r.verdict}**: {r.reason}.",
            "",
        ]
        if r.numbers:
            out += [f"- numbers: {_cell(_numbers(r.numbers))}"]
        if r.sources:
            out += [f"- from: {', '.join(f'`{s}`' for s in r.sources)}"]
        out += [f"- reproduce: `{r.command}`"]
    return "\n".join(out) + "\n"
