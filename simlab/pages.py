"""Pages of ``docs/`` whose lower part is generated: the ``docs/gen_*.py`` scripts.

Each such page keeps everything above its marker line as written by hand and
replaces everything below it with what its script generates, so the page
changes only when its source (the parser, the presets, the data) does.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["rewrite_or_check", "splice"]


def splice(page: Path, current: str, marker: str, generated: str) -> str:
    """The page: its hand-written part up to ``marker``, then ``generated``."""
    if marker not in current:
        raise SystemExit(f"{page}: the line {marker!r} is missing")
    intro = current.split(marker, 1)[0]
    return f"{intro}{marker}\n\n{generated}"


def rewrite_or_check(page: Path, render: Callable[[str], str], argv: Sequence[str]) -> int:
    """Rewrite ``page`` from ``render`` or, with ``--check``, exit 1 if it is out of date."""
    check = list(argv) == ["--check"]
    current = page.read_text(encoding="utf-8")
    wanted = render(current)
    if wanted == current:
        return 0
    if check:
        sys.stderr.write(f"{page} is out of date: run make docs\n")
        return 1
    page.write_text(wanted, encoding="utf-8")
    print(f"rewrote {page}")
    return 0
