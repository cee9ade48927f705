"""The ``simlab`` command line.

Options are named the same in every subcommand (``simlab.scenario.OPTIONS``).
A bad option or input gets one line naming it on stderr and exit status 2,
never a traceback. A real run that could not be carried out says why, exit
status 1. Anything else is a bug in simlab: it is reported as one, with
where it happened, exit status 1 (``SIMLAB_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from types import FrameType, ModuleType

from simlab import __version__
from simlab.cli.options import Parser
from simlab.errors import RunFailed, UserError

__all__ = [
    "MODULES",
    "build_parser",
    "command_module",
    "keep_freed_memory",
    "leave_heap",
    "main",
]


# Each command module (``simlab.cli.NAME``) with its commands and their one-line
# help, in the order ``simlab --help`` lists them; each module's ``COMMANDS`` is
# its entry here. The table lets --help list every command and a command import
# its own module only: the others cost start-up (the real lab's options, the
# claims') that a simulation would pay for nothing.
MODULES: dict[str, dict[str, str]] = {
    "simulate": {
        "simulate": "simulate one model",
        "compare": "every model side by side",
    },
    "plan": {
        "plan": "the smallest configuration of each model for a goal",
        "sweep": "run a what-if sweep file (resumable; local or Dask)",
        "dashboard": "start the Streamlit dashboard on 127.0.0.1",
    },
    "lab": {
        "serve": "run one real server (or peer) in the foreground",
        "measure": "measure a real server under load (or 'memory')",
        "calibrate": "fit a platform profile to real runs on this machine",
        "validate": "held-out real runs against the calibrated simulation",
        "usl": "fit the Universal Scalability Law to closed-loop real runs",
    },
    "claims": {
        "claims": "the notes' claims, each with its verdict from the committed data",
    },
}


def command_module(name: str) -> ModuleType:
    """The command module ``simlab.cli.NAME`` (a key of ``MODULES``), imported."""
    # The import statement's machinery (``__import__``), not importlib's: only
    # the former is what ``python -X importtime`` reports, and the startup
    # tests read which modules a command loads from it.
    module = f"{__name__}.{name}"
    __import__(module)
    return sys.modules[module]


def build_parser(command: str | None = None) -> Parser:
    """The command line's parser.

    Given ``command``, only the parsers of its module are built in full; every
    other command is a stub that carries its one-line help. Building the real
    lab's parsers asks the peers for their names, which loads asyncio and
    numpy: ``simlab --help`` and ``simlab simulate --help`` need none of it.
    ``None`` builds every parser (the reference in docs/cli.md).
    """
    parser = Parser(prog="simlab", description=__doc__)
    parser.add_argument("--version", action="version", version=f"simlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module, commands in MODULES.items():
        if command is None or command in commands:
            command_module(module).add_commands(sub)
        else:
            for name, text in commands.items():
                sub.add_parser(name, help=text)
    return parser


def _command(argv: Sequence[str]) -> str:
    """The command word of ``argv`` ("" if none): the first that is not an option
    (the top level takes no option with a value)."""
    return next((a for a in argv if not a.startswith("-")), "")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # Whatever Ctrl-C does here: a KeyboardInterrupt, or, where simlab runs
    # inside another program (a test run), that program's own SIGINT handler,
    # which then learns that it was asked to stop and not only simlab's command.
    on_ctrl_c = signal.getsignal(signal.SIGINT)
    if callable(on_ctrl_c) and on_ctrl_c is not _interrupt:
        on_ctrl_c(signum, frame)
    raise KeyboardInterrupt


# Commands that only simulate: their BLAS calls are all small, so a pool of
# OpenBLAS threads spinning beside them only costs (on two cores, about a fifth
# of the default plan's time). Set before numpy loads; a user's setting wins.
SIMULATING = ("simulate", "compare", "plan", "sweep")


# glibc's mallopt parameters (malloc.h) and the values a simulating command sets.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest (half its 64 MiB heap)
TRIM_THRESHOLD = (1 << 31) - 1

# Commands with no server to stop (their replications' workers, if any, are
# stopped and reaped before they print): run as the program, they leave
# their heap to the kernel at exit.
IN_PROCESS = ("simulate", "compare")


def keep_freed_memory() -> None:
    """Let a simulating command reuse the memory it frees instead of asking
    the kernel for fresh pages.

    glibc serves an allocation over its mmap threshold (128 KiB at first) by
    mapping new pages and unmaps them when it is freed, so each of a large
    run's arrays of a few MiB (the kernels' outputs, the summary's passes)
    faults in and zeroes pages anew: about a fifth of a 500,000-request fast
    run's CPU was the kernel's page faults. Served from the heap and kept
    there when freed, the next array reuses those pages. Only the simulating
    commands: the real lab's servers keep glibc's defaults, so their memory
    is what calibration measured. Nothing else changes (no result depends
    on where an array lives); where glibc is not the C library, nothing is
    done.
    """
    import ctypes  # noqa: PLC0415 - only the simulating commands need it

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def leave_heap() -> None:
    """Let the exiting interpreter skip its last garbage collection.

    A DES run leaves its model, its events and its request arrays in
    reference cycles that no collection reached during the run; at exit the
    interpreter's final collection walks them and frees them one by one,
    about 30 ms of a 50,000-request ``simulate`` (a tenth of its CPU) for
    memory the kernel takes back whole anyway. Frozen, the collector leaves
    them alone; the output is already written, atexit handlers still run
    and every object freed by its count is still finalised. Only for the
    program (``main()`` with no argv): a test that calls ``main`` keeps a
    collector that frees what each call leaves.
    """
    gc.freeze()


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    command = _command(given)
    if command in SIMULATING and "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if command in SIMULATING:
        keep_freed_memory()
    args = build_parser(command).parse_args(given)
    # SIGTERM (kill, timeout) and SIGHUP (a closed terminal) stop simlab the
    # way Ctrl-C does, so that every process it started is stopped too.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        code: int = args.run(args)
        if argv is None and command in IN_PROCESS:
            leave_heap()
        return code
    except UserError as exc:
        sys.stderr.write(f"simlab: error: {exc}\n")
        return 2
    except RunFailed as exc:
        sys.stderr.write(f"simlab: failed: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("simlab: interrupted\n")
        return 130
    except Exception as exc:
        if os.environ.get("SIMLAB_DEBUG"):
            traceback.print_exc()
        where = traceback.extract_tb(exc.__traceback__)[-1]
        sys.stderr.write(
            f"simlab: internal error (a bug in simlab, not in your input): "
            f"{type(exc).__name__}: {exc}\n"
            f"  at {os.path.basename(where.filename)}:{where.lineno} in {where.name}; "
            "rerun with SIMLAB_DEBUG=1 for the traceback, and please report it\n"
        )
        return 1
    finally:
        # A program that called main() (a test) gets its own handlers back.
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    raise SystemExit(main())
