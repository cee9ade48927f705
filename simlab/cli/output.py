"""How the command line shows things: numbers, tables on stdout, progress on stderr.

Human output is a rich table on stdout; ``--json`` prints exactly one JSON
object instead. Progress goes to stderr: a bar on a terminal, one line per
step otherwise, so that a log stays readable and stdout stays clean.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["ci", "console", "fmt", "print_json", "say", "steps"]

# Piped output would otherwise be cut to 80 columns, truncating model names.
PIPED_WIDTH = 170


def fmt(x: Any, digits: int = 1) -> str:
    """A number for reading: thousands separated, ``digits`` decimals under 1,000."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def ci(interval: list[float] | None, digits: int = 1) -> str:
    return "-" if interval is None else f"[{fmt(interval[0], digits)}, {fmt(interval[1], digits)}]"


def console() -> Console:
    # rich loads when something is printed, not when the parser is built (--help).
    from rich.console import Console  # noqa: PLC0415

    return Console(width=None if sys.stdout.isatty() else PIPED_WIDTH)


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, allow_nan=False))


def say(message: str) -> None:
    """One line of news on stderr."""
    sys.stderr.write(f"simlab: {message}\n")
    sys.stderr.flush()


@contextmanager
def steps(label: str) -> Iterator[Callable[[str, int, int], None]]:
    """Progress on stderr as ``tick(what, k, n)``: a bar on a terminal, else a line a step."""
    if not sys.stderr.isatty():
        yield lambda what, k, n: print(f"simlab: [{k}/{n}] {what}", file=sys.stderr, flush=True)
        return
    from rich.console import Console  # noqa: PLC0415 - see console()
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    cols = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*cols, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=1)

        def tick(what: str, k: int, n: int) -> None:
            bar.update(task, description=f"{label}: {what}", completed=k, total=n)

        yield tick


@contextmanager
def fractions(label: str) -> Iterator[Callable[[str, float], None] | None]:
    """Progress as ``tick(name, fraction)`` for long simulations: a bar on a
    terminal only (a line per tick would flood a log)."""
    if not sys.stderr.isatty():
        yield None
        return
    with steps(label) as tick:
        yield lambda name, f: tick(name, round(f * 100), 100)
