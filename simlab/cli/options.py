"""The command line's options: made from ``simlab.scenario.OPTIONS``, so every
subcommand names, checks and documents an option the same way.

A scenario option that is not given is absent from the parsed namespace
(``argparse.SUPPRESS``), so the scenario builder alone decides defaults.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

from simlab.errors import UserError
from simlab.overload import options as overload_options
from simlab.scenario import OPTIONS, PLATFORM_NUMBERS, Option

__all__ = [
    "Parser",
    "add_scenario_options",
    "arg_type",
    "given",
    "positive_float",
    "positive_int",
]

# Slow clients: the load generator trickles the request and reads the answer at that pace.
SLOW_CLIENTS = ("client_send_ms", "client_recv_ms", "client_dist", "request_kib", "response_kib")
WORKLOAD = (
    "scenario",
    "connections",
    "rate",
    "think_ms",
    "trace",
    "cpu_ms",
    "cpu_dist",
    "io_ms",
    "io_dist",
    "calls",
    "fanout",
    "requests_per_connection",
    *SLOW_CLIENTS,
)
PLATFORM = ("platform", "cores")
ARCHITECTURE = ("workers", "processes", "backlog")
# Two-tier's front, in simulation only (the real twin runs one front loop, per-request hops).
FRONT = ("fronts", "hop")
RUN = ("duration", "warmup", "seed", "engine", "replications", "timeline", "jobs")
# Overload dynamics (``simlab.overload.options``), one group each.
OVERLOAD = {
    "clients (timeouts and retries)": overload_options.CLIENT,
    "server limits": overload_options.SERVER,
    "backend": overload_options.BACKEND,
    "request mix": overload_options.MIX,
}


def add_overload_options(p: argparse.ArgumentParser) -> None:
    """The overload options, in their groups."""
    for title, names in OVERLOAD.items():
        add_scenario_options(p.add_argument_group(title), names)


def overload_names() -> tuple[str, ...]:
    return tuple(name for names in OVERLOAD.values() for name in names)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints the whole usage block; one line that names the option is enough.
        sys.stderr.write(f"simlab: error: {message} (see simlab {self._sub_name()}--help)\n")
        raise SystemExit(2)

    def _sub_name(self) -> str:
        parts = self.prog.split()
        return f"{parts[-1]} " if len(parts) > 1 else ""


def arg_type(option: Option) -> Callable[[str], Any]:
    """An argparse type that parses and checks like the scenario builder."""
    prefix = f"{option.flag}: "

    def parse(text: str) -> Any:
        try:
            return option.parse(text)
        except UserError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(prefix)) from None

    parse.__name__ = option.name
    return parse


def _number(kind: str, low: float, strict: bool) -> Callable[[str], Any]:
    return arg_type(Option("value", "", kind, "", low=low, strict=strict))


positive_int = _number("int", 1, False)
nonneg_int = _number("int", 0, False)
positive_float = _number("float", 0, True)
nonneg_float = _number("float", 0, False)


def add_scenario_options(
    group: argparse._ArgumentGroup | argparse.ArgumentParser,
    names: Iterable[str],
    *,
    defaults: dict[str, Any] | None = None,
    helps: dict[str, str] | None = None,
) -> None:
    """Add the scenario options ``names`` to ``group``, from the table.

    ``defaults`` gives a subcommand its own default for an option (a real run
    measures 10 s, not 60); otherwise a missing option is left to the builder.
    """
    for name in names:
        option = OPTIONS[name]
        default = (defaults or {}).get(name, argparse.SUPPRESS)
        shown = option.shown_default() if default is argparse.SUPPRESS else f" (default {default})"
        text = (helps or {}).get(name, option.help) + shown
        if option.kind == "bool":
            group.add_argument(
                option.flag,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=text,
            )
            continue
        kwargs: dict[str, Any] = {"type": arg_type(option), "default": default, "help": text}
        if option.choices:
            kwargs["choices"] = option.choices
            kwargs["type"] = str
        if option.metavar:
            kwargs["metavar"] = option.metavar
        group.add_argument(option.flag, **kwargs)


def add_set(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--set",
        type=_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a platform number: {', '.join(PLATFORM_NUMBERS)}",
    )


def _setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def given(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The scenario options among ``names`` that the command line set, plus ``--set``."""
    out = {name: getattr(args, name) for name in names if hasattr(args, name)}
    for key, raw in getattr(args, "set", []):
        if key not in PLATFORM_NUMBERS:
            raise UserError(
                f"--set: unknown platform number {key!r} (one of: {', '.join(PLATFORM_NUMBERS)})"
            )
        try:
            out[key] = float(raw)
        except ValueError:
            raise UserError(f"--set {key}: must be a number, got {raw!r}") from None
    return out


def choice(what: str, options: Sequence[str]) -> Callable[[str], str]:
    """An argparse type accepting one of ``options``, naming them when it refuses."""

    def parse(text: str) -> str:
        if text not in options:
            raise argparse.ArgumentTypeError(
                f"unknown {what.lower()} {text!r} (choose from: {', '.join(options)})"
            )
        return text

    parse.__name__ = what.lower()
    return parse


def name_list(what: str, options: Sequence[str]) -> Callable[[str], list[str]]:
    """An argparse type for a comma-separated subset of ``options``."""
    one = choice(what, options)

    def parse(text: str) -> list[str]:
        names = [t.strip() for t in text.split(",") if t.strip()]
        if not names:
            raise argparse.ArgumentTypeError(f"must name at least one {what.lower()}")
        return [one(n) for n in names]

    parse.__name__ = f"{what.lower()}_list"
    return parse
