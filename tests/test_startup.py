"""Startup: ``import simlab`` and ``simlab --help`` load none of the heavy libraries.

Checked with ``python -X importtime``, which lists every module a process
imports: these tests check which modules load, never how long they take (the
times are in benchmarks/, measured against a baseline in the same run).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from simlab.cli import MODULES, build_parser, command_module
from simlab.cli.options import Parser
from simlab.registry import MODEL_NAMES

# Loaded only by the commands that use them.
HEAVY = ("scipy", "pandas", "numba")
# Not needed to print help either: numpy alone costs more than the rest of --help.
NOT_FOR_HELP = (*HEAVY, "numpy", "simpy", "rich", "asyncio", "simlab.real")


def imported(*args: str) -> set[str]:
    """Every module that ``python -X importtime ARGS`` imports."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":  # the header line
                names.add(name)
    assert "encodings" in names or "simlab" in names, "importtime printed nothing"
    return names


def loaded(names: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in packages))


def test_import_simlab_loads_no_heavy_library() -> None:
    names = imported("-c", "import simlab")
    assert "simlab" in names
    assert loaded(names, HEAVY) == []


@pytest.mark.parametrize("argv", [["--help"], ["simulate", "--help"], ["plan", "--help"]])
def test_help_loads_no_heavy_library(argv: list[str]) -> None:
    names = imported("-m", "simlab", *argv)
    assert "simlab.cli" in names
    assert loaded(names, NOT_FOR_HELP) == []


def test_running_a_command_does_load_its_engine() -> None:
    # The check above could pass by importing nothing at all: a real command
    # must show the libraries it uses, so the parsing of importtime is sound.
    names = imported("-m", "simlab", "simulate", MODEL_NAMES[0], "--duration", "1", "--json")
    assert loaded(names, ("numpy", "simpy")) != []


def test_a_simulation_loads_only_what_it_uses() -> None:
    # What the DES's whole process was spared: numpy's masked arrays (the
    # summary's percentiles, simlab.stats.percentiles), the measured run's
    # results, the other commands' modules and the fast engine (``--engine
    # des`` never runs it). Two replications, so the percentiles' intervals
    # are computed too.
    names = imported(
        "-m", "simlab", "simulate", MODEL_NAMES[0], "--engine", "des", "--duration", "1",
        "--replications", "2", "--json",
    )  # fmt: skip
    assert "simlab.stats" in names
    spared = ("numpy.ma", "simlab.measured", "simlab.cli.lab", "simlab.cli.claims", "simlab.fast")
    assert loaded(names, spared) == []


def _commands(parser: argparse.ArgumentParser) -> list[tuple[str, str | None]]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(c.dest, c.help) for c in sub._choices_actions]


def test_stub_commands_match_the_full_parser() -> None:
    # --help lists stubs made from each module's COMMANDS: the same commands,
    # in the same order and with the same help, as the parsers built in full.
    full = _commands(build_parser())
    assert _commands(build_parser("")) == full
    for commands in MODULES.values():
        for name in commands:
            assert _commands(build_parser(name)) == full


def test_each_module_builds_the_commands_of_its_entry() -> None:
    # A command is looked up in the table and built by the module of its entry:
    # that module must add exactly those parsers (a command it forgot, or one it
    # added under another module's entry, would leave a stub or a clash).
    for module, commands in MODULES.items():
        parser = Parser(prog="simlab")
        command_module(module).add_commands(parser.add_subparsers(parser_class=Parser))
        assert [name for name, _ in _commands(parser)] == list(commands)


@pytest.mark.parametrize("module", list(MODULES))
def test_a_command_imports_only_its_own_module(module: str) -> None:
    command = next(iter(MODULES[module]))
    names = imported("-m", "simlab", command, "--help")
    others = {f"simlab.cli.{m}" for m in MODULES if m != module}
    assert f"simlab.cli.{module}" in names
    assert sorted(names & others) == []
