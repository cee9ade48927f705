"""``simlab plan --burst``: the steady plans, then each one under a burst
(``simlab.overload.burst``)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from simlab.cli import options
from simlab.cli.output import console, fmt
from simlab.errors import UserError
from simlab.overload import options as overload_options
from simlab.params import Architecture, Platform, Workload

if TYPE_CHECKING:
    # The burst's simulation (numpy, SimPy) and rich load when --burst runs,
    # not when the parser is built: --help stays quick.
    from simlab.overload.burst import Burst, BurstPlan, BurstRun
    from simlab.planner import PlanReport

__all__ = ["CLIENT", "add_burst_options", "burst_report", "print_bursts", "steady_workload"]

CLIENT = overload_options.CLIENT
DEFAULT_RECOVER_S = 30.0


def _burst(text: str) -> Burst:
    from simlab.overload.burst import parse_burst  # noqa: PLC0415 - see TYPE_CHECKING

    try:
        return parse_burst(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_burst_options(p: argparse.ArgumentParser) -> None:
    """The burst and the clients' timeout policy, in their groups."""
    b = p.add_argument_group("burst")
    b.add_argument(
        "--burst",
        type=_burst,
        metavar="PEAK/s for DURATION",
        help="also check each plan under a burst from the steady --rate to PEAK for "
        "DURATION (e.g. '2000/s for 10s'), with the clients' timeout policy below",
    )
    b.add_argument(
        "--recover-within-s",
        type=options.positive_float,
        default=DEFAULT_RECOVER_S,
        help="a plan survives the burst when it is healthy again this long after the "
        f"burst ends (default {DEFAULT_RECOVER_S:g})",
    )
    options.add_scenario_options(p.add_argument_group("clients (timeouts and retries)"), CLIENT)


def steady_workload(args: argparse.Namespace, workload: Workload) -> Workload:
    """The workload the steady plan is made for: the burst's clients policy
    matters only under the burst."""
    if getattr(args, "burst", None) is None:
        given = [n for n in CLIENT if hasattr(args, n)]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise UserError(f"{flag}: the clients' timeout policy needs --burst")
        return workload
    if getattr(args, "max_rate", False) or getattr(args, "max_connections", False):
        raise UserError("--burst: checks the plans; not with --max-rate or --max-connections")
    if workload.schedule is not None or workload.rate is None:
        raise UserError("--burst: give --rate as a number, the steady rate the burst rises from")
    if args.burst.peak <= workload.rate:
        raise UserError(
            f"--burst: the peak ({args.burst.peak:g}/s) must be above the steady --rate "
            f"({workload.rate:g}/s)"
        )
    return replace(workload, clients=None)


def burst_report(
    args: argparse.Namespace,
    report: PlanReport,
    workload: Workload,
    platform: Platform,
    backlog: int | None,
    *,
    progress: Any = None,
) -> list[BurstPlan]:
    """Each feasible steady plan under the burst."""
    default = Architecture()
    plans = [
        (
            p.model,
            Architecture(
                workers=p.workers if p.workers is not None else default.workers,
                processes=p.processes or 1,
                backlog=backlog,
            ),
        )
        for p in report.plans
        if p.feasible
    ]
    from simlab.overload.burst import plan_bursts  # noqa: PLC0415 - see TYPE_CHECKING

    return plan_bursts(
        plans,
        workload,
        platform,
        args.burst,
        args.recover_within_s,
        seed=args.seed,
        replications=args.replications,
        progress=progress,
    )


def _recovered(run: BurstRun | None) -> str:
    if run is None:
        return "-"
    if run.recovered_s is None:
        return "[red]no[/]"
    mark = "[green]" if run.survives else "[yellow]"
    return f"{mark}{run.recovered_s:g} s[/]"


def print_bursts(bursts: list[BurstPlan], burst: Burst, within: float, workload: Workload) -> None:
    out = console()
    c = workload.clients
    policy = (
        "no client timeout"
        if c is None or c.timeout is None
        else f"clients give up after {c.timeout * 1e3:g} ms, {c.retries} retries"
        + (f", a retry budget of {c.budget:g}" if c.budget is not None else "")
    )
    from rich.table import Table  # noqa: PLC0415 - see TYPE_CHECKING

    t = Table(
        title=f"under a burst of {burst.text()} ({policy}); survives: healthy within {within:g} s",
        title_justify="left",
    )
    heads = ("model", "workers", "processes", "recovered", "goodput/s", "with a limit", "limit",
             "with a retry budget", "recommendation")  # fmt: skip
    for h in heads:
        t.add_column(h, justify="left" if h in ("model", "recommendation") else "right")
    for b in bursts:
        t.add_row(
            b.model,
            fmt(b.workers),
            fmt(b.processes),
            _recovered(b.plain),
            fmt(b.plain.goodput_rps),
            _recovered(b.limited),
            fmt(b.limited.max_inflight if b.limited is not None else None),
            _recovered(b.budgeted),
            b.recommendation,
        )
    out.print(t)
    if not bursts:
        out.print("[yellow]no steady plan is feasible: nothing to check under the burst[/]")
