"""Regenerate ``docs/claims.md``, the claims ledger, from the committed data.

    .venv/bin/python docs/gen_claims.py           # rewrite docs/claims.md (make docs runs this)
    .venv/bin/python docs/gen_claims.py --check   # exit 1 if docs/claims.md is out of date

Everything in ``docs/claims.md`` above the ``MARKER`` line is written by hand
and kept as it is; everything below it is ``simlab.claims.markdown`` of the
ledger judged from ``data/`` (the repository's data root, whatever
``$SIMLAB_DATA`` says), so the page changes only when the data or a rule does.
"""

from __future__ import annotations

import sys
from pathlib import Path

from simlab.pages import rewrite_or_check, splice

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "claims.md"
MARKER = "<!-- Generated below by docs/gen_claims.py from simlab.claims.ledger(): do not edit. -->"


def reference() -> str:
    """The ledger judged from the repository's ``data/``, as Markdown."""
    from simlab.claims import ledger, markdown  # noqa: PLC0415 - the page, not the module, needs it

    return markdown(ledger(ROOT / "data"))


def render(current: str) -> str:
    """The page: its hand-written part up to the marker, then the generated ledger."""
    return splice(PAGE, current, MARKER, reference())


def main() -> int:
    return rewrite_or_check(PAGE, render, sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
