"""Regenerate the reference part of ``docs/platforms.md`` from the presets and their sources.

    .venv/bin/python docs/gen_platforms.py           # rewrite it (make docs runs this)
    .venv/bin/python docs/gen_platforms.py --check   # exit 1 if it is out of date

Everything above the ``MARKER`` line is written by hand; below it, one table
per preset: each number and where it comes from (``simlab.platforms.SOURCES``,
or the preset's docstring for the numbers it does not list).
"""

from __future__ import annotations

import sys
from pathlib import Path

from simlab.pages import rewrite_or_check, splice

PAGE = Path(__file__).resolve().parent / "platforms.md"
MARKER = "<!-- Generated below by docs/gen_platforms.py from simlab.platforms: do not edit. -->"


def reference() -> str:
    """Every preset's numbers, each with its source, as Markdown."""
    from simlab.params import Platform  # noqa: PLC0415 - the page, not the module, needs them
    from simlab.platforms import PRESETS, preset_sources  # noqa: PLC0415

    default = Platform()
    parts: list[str] = []
    for name, make in PRESETS.items():
        p = make()
        sources = preset_sources(name)
        parts += [f"## `{name}`", "", (make.__doc__ or "").split("\n\n")[0].strip(), ""]
        parts += [
            f"Cores {p.cores if p.cores is not None else 'unlimited'}, "
            f"GIL {'yes' if p.gil else 'no'}.",
            "",
            "| number | value | source |",
            "|---|---|---|",
        ]
        for field in Platform.numeric_fields():
            value = getattr(p, field)
            if field in sources:
                source = sources[field]
            elif name != "cpython" and value == getattr(default, field):
                source = "as `cpython`"
            else:
                source = f"`{name}()` in `simlab/platforms.py` (its docstring)"
            parts.append(f"| `{field}` | {value:g} | {source} |")
        parts.append("")
    return "\n".join(parts)


def render(current: str) -> str:
    """The page: its hand-written part up to the marker, then the generated tables."""
    return splice(PAGE, current, MARKER, reference())


def main() -> int:
    return rewrite_or_check(PAGE, render, sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
