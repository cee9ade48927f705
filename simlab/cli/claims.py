"""``simlab claims``: the notes' claims, each judged from the committed data."""

from __future__ import annotations

import argparse

from simlab.cli import MODULES, options
from simlab.cli.output import console, print_json

__all__ = ["COMMANDS", "add_commands"]

# Each command and its one-line help: its entry in the command table, which
# ``simlab --help`` lists without importing this module.
COMMANDS = MODULES["claims"]


def _ids() -> tuple[str, ...]:
    # Reading the ids loads the claims' rules (pandas, the planner): only when asked.
    from simlab.claims import CLAIMS  # noqa: PLC0415

    return tuple(c.id for c in CLAIMS)


def add_commands(sub: argparse._SubParsersAction[options.Parser]) -> None:
    p = sub.add_parser(
        "claims",
        help=COMMANDS["claims"],
        description="Every claim of the notes, judged by a rule from the data root's "
        "experiments, measurements and calibrated profile ($SIMLAB_DATA, default ./data).",
    )
    p.add_argument(
        "--only",
        type=_claim_list,
        metavar="ID[,ID...]",
        help="only these claims (ids as in the ledger)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=claims_command)


def _claim_list(text: str) -> list[str]:
    return options.name_list("claim", _ids())(text)


def claims_command(args: argparse.Namespace) -> int:
    from rich.table import Table  # noqa: PLC0415 - rich loads when a table is printed

    from simlab.claims import ledger, summary  # noqa: PLC0415

    rows = ledger(only=args.only)
    if args.json:
        print_json({"claims": [r.to_dict() for r in rows], "verdicts": summary(rows)})
        return 0
    out = console()
    t = Table(title="the notes, claim by claim", title_justify="left", show_lines=True)
    t.add_column("claim", ratio=2)
    t.add_column("verdict", ratio=1)
    t.add_column("reason (from data)", ratio=5)
    t.add_column("reproduce", ratio=2)
    colour = {"confirmed": "green", "refined": "yellow", "contradicted": "red"}
    for r in rows:
        c = colour.get(r.verdict, "dim")
        t.add_row(f"{r.id}\n{r.zh}\n{r.en}", f"[{c}]{r.verdict}[/]", r.reason, r.command)
    out.print(t)
    out.print(", ".join(f"{n} {v}" for v, n in summary(rows).items()))
    return 0
