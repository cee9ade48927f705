"""Regenerate the reference part of ``docs/cli.md`` from the command line's own parser.

    .venv/bin/python docs/gen_cli.py           # rewrite docs/cli.md (make docs runs this)
    .venv/bin/python docs/gen_cli.py --check   # exit 1 if docs/cli.md is out of date

Everything in ``docs/cli.md`` above the ``MARKER`` line is written by hand
and kept as it is; everything below it is ``simlab --help`` and each
subcommand's ``--help``, taken from ``simlab.cli.build_parser()``. The
output is deterministic: the help is formatted at a fixed width, whatever
the terminal, so the committed page changes only when the parser does.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from simlab.pages import rewrite_or_check, splice

PAGE = Path(__file__).resolve().parent / "cli.md"
MARKER = "<!-- Generated below by docs/gen_cli.py from simlab.cli.build_parser(): do not edit. -->"
WIDTH = "100"  # columns argparse formats the help to


def reference() -> str:
    """``simlab --help`` and every subcommand's ``--help``, as Markdown."""
    from simlab.cli import build_parser  # noqa: PLC0415 - the page, not the module, needs it

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summary = {a.dest: a.help for a in sub._choices_actions}
    # argparse asks shutil.get_terminal_size for the width, which reads $COLUMNS first.
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parts = ["## `simlab`", "", "```text", parser.format_help().rstrip(), "```"]
        for name, command in sub.choices.items():
            parts += ["", f"## `simlab {name}`", "", f"{summary[name]}.", ""]
            parts += ["```text", command.format_help().rstrip(), "```"]
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(parts) + "\n"


def render(current: str) -> str:
    """The page: its hand-written part up to the marker, then the generated reference."""
    return splice(PAGE, current, MARKER, reference())


def main() -> int:
    return rewrite_or_check(PAGE, render, sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
