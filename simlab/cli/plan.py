"""``simlab plan`` (and its inverse questions), ``simlab sweep`` and ``simlab dashboard``."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from simlab.cli import MODULES, options
from simlab.cli import burst as burst_cli
from simlab.cli.output import console, fmt, print_json, say, steps
from simlab.errors import UserError
from simlab.params import Architecture
from simlab.provenance import ROOT, json_safe
from simlab.registry import MODEL_NAMES
from simlab.scenario import Scenario, build

if TYPE_CHECKING:
    # The planner, the sweeps (numpy, scipy, pandas, SimPy) and rich load when
    # a command runs, not when the parser is built: --help stays quick.
    from simlab.planner import Goals, PlanReport
    from simlab.planner.search import Plan

__all__ = ["COMMANDS", "add_commands"]

SCENARIO = (*options.WORKLOAD, *options.PLATFORM, "gil")
DASHBOARD_STOP_S = 10.0


# Each command and its one-line help: its entry in the command table, which
# ``simlab --help`` lists without importing this module.
COMMANDS = MODULES["plan"]


def add_commands(sub: argparse._SubParsersAction[options.Parser]) -> None:
    p = sub.add_parser("plan", help=COMMANDS["plan"])
    wl = p.add_argument_group("workload")
    options.add_scenario_options(wl, tuple(n for n in options.WORKLOAD if n != "trace"))
    pl = p.add_argument_group("platform")
    options.add_scenario_options(pl, (*options.PLATFORM, "gil"))
    pl.add_argument(
        "--platforms",
        type=_platform_list,
        metavar="A,B,...",
        help="instead of --platform: size every model on each of these platforms "
        "(presets or profiles, e.g. cpython,jvm,go) and rank by memory and by cores",
    )
    options.add_set(pl)
    goals = p.add_argument_group("goals")
    goals.add_argument(
        "--slo-p99-ms",
        type=options.positive_float,
        default=100.0,
        help="p99 latency goal (default 100)",
    )
    goals.add_argument("--slo-mean-ms", type=options.positive_float, help="mean latency goal")
    goals.add_argument("--memory-gib", type=options.positive_float, help="memory budget, GiB")
    goals.add_argument(
        "--memory-basis",
        choices=["resident", "reserved"],
        default="resident",
        help="what the budget counts: resident memory, or reserved virtual (thread stacks)",
    )
    q = p.add_argument_group("questions")
    which = q.add_mutually_exclusive_group()
    which.add_argument(
        "--max-connections",
        action="store_true",
        help="instead: the most connections each model fits in --memory-gib",
    )
    which.add_argument(
        "--max-rate",
        action="store_true",
        help="instead: the highest rate each model serves within the latency goal",
    )
    q.add_argument(
        "--workers", type=options.positive_int, help="inverse questions: hold this pool size"
    )
    q.add_argument(
        "--processes", type=options.positive_int, help="inverse questions: hold this count"
    )
    options.add_scenario_options(q, ("backlog",))
    s = p.add_argument_group("search")
    s.add_argument(
        "--models",
        type=options.name_list("model", MODEL_NAMES),
        help="comma-separated subset (default all)",
    )
    s.add_argument(
        "--max-processes",
        type=options.positive_int,
        help="most processes to try (default 4 per core)",
    )
    s.add_argument(
        "--analytic", action="store_true", help="skip the DES check (formulas only; faster)"
    )
    s.add_argument(
        "--seed", type=options.nonneg_int, default=1, help="root seed of the DES (default 1)"
    )
    s.add_argument(
        "--replications",
        type=options.positive_int,
        default=5,
        help="DES replications (default 5)",
    )
    s.add_argument(
        "--des-requests",
        type=options.positive_int,
        default=4000,
        help="measured requests per DES replication (default 4000)",
    )
    burst_cli.add_burst_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=plan_command)

    swp = sub.add_parser("sweep", help=COMMANDS["sweep"])
    swp.add_argument("file", type=Path, metavar="FILE.toml", help="the sweep file")
    swp.add_argument(
        "--workers", type=options.positive_int, help="local processes (default: one per core)"
    )
    swp.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run on Dask: a scheduler address, or 'local' for a LocalCluster on loopback",
    )
    swp.add_argument(
        "--out", type=Path, help="output directory (default $SIMLAB_DATA/sweeps/NAME/)"
    )
    swp.add_argument("--no-plots", action="store_true", help="skip the figures")
    swp.add_argument("--json", action="store_true", help="print a JSON summary")
    swp.set_defaults(run=sweep_command)

    dash = sub.add_parser("dashboard", help=COMMANDS["dashboard"])
    dash.add_argument("--port", type=options.positive_int, default=8501, help="port (default 8501)")
    dash.set_defaults(run=dashboard_command)


def _goals(args: argparse.Namespace) -> Goals:
    from simlab.planner import Goals  # noqa: PLC0415 - see TYPE_CHECKING above

    return Goals(
        p99_ms=args.slo_p99_ms,
        mean_ms=args.slo_mean_ms,
        memory_gib=args.memory_gib,
        basis=args.memory_basis,
    )


def _given_arch(args: argparse.Namespace, backlog: int | None) -> Architecture | None:
    """The configuration the inverse questions hold fixed, when one is given."""
    if args.workers is None and args.processes is None:
        return None
    return Architecture(workers=args.workers or 1, processes=args.processes or 1, backlog=backlog)


def _platform_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError("must name at least one platform")
    return names


def plan_command(args: argparse.Namespace) -> int:
    given = options.given(args, (*SCENARIO, "backlog", *burst_cli.CLIENT))
    s: Scenario = build(given)
    steady = burst_cli.steady_workload(args, s.workload)
    goals = _goals(args)
    check: Literal["des", "analytic"] = "analytic" if args.analytic else "des"
    backlog = s.architecture.backlog
    if args.platforms is not None:
        if "platform" in given:
            raise UserError("--platforms: give --platform or --platforms, not both")
        if args.max_connections or args.max_rate:
            raise UserError(
                "--platforms: answers the plan itself, not --max-connections/--max-rate"
            )
        if args.burst is not None:
            raise UserError("--platforms: not with --burst")
        return _plan_platforms(args, given, goals, check, backlog)
    if args.max_connections:
        return _max_connections(args, s, goals, backlog)
    if args.max_rate:
        return _max_rate(args, s, goals, check, backlog)
    from simlab.planner import plan  # noqa: PLC0415 - see TYPE_CHECKING above

    with steps("planning") as tick:
        report = plan(
            steady,
            s.platform,
            goals,
            models=args.models,
            max_processes=args.max_processes,
            check=check,
            seed=args.seed,
            replications=args.replications,
            requests=args.des_requests,
            backlog=backlog,
            progress=lambda name, f: tick(name, round(f * 100), 100),
        )
    bursts = None
    if args.burst is not None:
        with steps("under the burst") as tick:
            bursts = burst_cli.burst_report(
                args, report, s.workload, s.platform, backlog,
                progress=lambda name, f: tick(name, round(f * 100), 100),
            )  # fmt: skip
    if args.json:
        out = report.to_dict()
        if bursts is not None:
            out["burst"] = {
                "peak_rps": args.burst.peak,
                "duration_s": args.burst.duration,
                "recover_within_s": args.recover_within_s,
                "plans": [b.to_dict() for b in bursts],
            }
        print_json(json_safe(out))
        return 0
    _print_plan(report)
    if bursts is not None:
        burst_cli.print_bursts(bursts, args.burst, args.recover_within_s, s.workload)
    return 0


def _plan_platforms(
    args: argparse.Namespace,
    given: dict[str, object],
    goals: Goals,
    check: Literal["des", "analytic"],
    backlog: int | None,
) -> int:
    from rich.table import Table  # noqa: PLC0415 - see TYPE_CHECKING above

    from simlab.planner.platforms import plan_platforms  # noqa: PLC0415

    # Each platform with the same overrides (--cores, --gil, --set) on top.
    platforms = [build({**given, "platform": name}).platform for name in args.platforms]
    workload = build(given).workload
    with steps("planning per platform") as tick:
        report = plan_platforms(
            workload,
            platforms,
            goals,
            models=args.models,
            max_processes=args.max_processes,
            check=check,
            seed=args.seed,
            replications=args.replications,
            requests=args.des_requests,
            backlog=backlog,
            progress=lambda name, f: tick(name, round(f * 100), 100),
        )
    if args.json:
        print_json(report.to_dict())
        return 0
    out = console()
    for title, ranked in (("by memory", report.by_memory), ("by cores", report.by_cores)):
        t = Table(title=f"simlab plan across platforms, {title}", title_justify="left")
        for h in ("rank", "model", "platform", "workers", "processes", "threads"):
            t.add_column(h, justify="left" if h in ("model", "platform") else "right")
        for h in ("resident MiB", "reserved MiB", "cores busy", "p99 ms", "checked by"):
            t.add_column(h, justify="left" if h == "checked by" else "right")
        for k, c in enumerate(ranked, 1):
            p = c.plan
            t.add_row(
                str(k),
                p.model,
                c.platform,
                fmt(p.workers),
                fmt(p.processes),
                fmt(p.threads),
                fmt(p.memory_mib),
                fmt(p.virtual_mib),
                fmt(c.cores_busy, 2),
                fmt(p.latency_ms.get("p99")),
                p.engine,
            )
        out.print(t)
    for name, r in report.reports.items():
        for p in r.plans:
            if not p.feasible:
                out.print(f"[red]{p.model} on {name}[/]: {p.reason}")
    out.print(f"\n{report.explanation}")
    return 0


def _checked_by(p: Plan) -> str:
    """``des`` (confirmed by simulation) with the engine that ran it, or ``analytic``."""
    engines = sorted({c.ran for c in p.checks})
    return f"{p.engine} ({', '.join(engines)})" if p.engine == "des" and engines else p.engine


def _print_plan(report: PlanReport) -> None:
    out = console()
    g = report.goals
    budget = f", memory <= {g.memory_gib:g} GiB {g.basis}" if g.memory_gib is not None else ""
    mean = f", mean <= {g.mean_ms:g} ms" if g.mean_ms is not None else ""
    w = report.workload
    out.print(
        f"[bold]goals[/] p99 <= {g.p99_ms:g} ms{mean}{budget}   "
        f"[bold]workload[/] {w.connections:,} connections, {w.rate:g} req/s, "
        f"cpu {w.cpu!r}, {w.calls} x io {w.io!r} {w.fanout}   "
        f"[bold]platform[/] {report.platform.name} "
        f"({report.platform.cores or 'unlimited'} cores)"
    )
    from rich.table import Table  # noqa: PLC0415 - see TYPE_CHECKING above

    t = Table(title="simlab plan", title_justify="left")
    heads = (
        "model",
        "feasible",
        "workers",
        "processes",
        "threads",
        "resident MiB",
        "reserved MiB",
        "p50 ms",
        "p99 ms",
        "p99 95% CI",
        "CPU %",
        "max conns",
        "checked by",
    )
    for h in heads:
        t.add_column(h, justify="left" if h in ("model", "checked by") else "right")
    for p in report.plans:
        lat = p.latency_ms
        interval = lat.get("p99_ci95")
        mark = "[green]*[/] " if p.model == report.recommended else ""
        t.add_row(
            mark + p.model,
            "[green]yes[/]" if p.feasible else "[red]no[/]",
            fmt(p.workers),
            fmt(p.processes),
            fmt(p.threads),
            fmt(p.memory_mib),
            fmt(p.virtual_mib),
            fmt(lat.get("p50")),
            fmt(lat.get("p99")),
            "-" if not interval else f"[{fmt(interval[0])}, {fmt(interval[1])}]",
            fmt(None if p.cpu_utilization is None else 100 * p.cpu_utilization),
            fmt(p.max_connections),
            _checked_by(p),
        )
    out.print(t)
    for p in report.plans:
        if p.reason:
            out.print(f"[red]{p.model}[/]: {p.reason}")
        for note in p.notes:
            out.print(f"[dim]{p.model}: {note}[/]")
    out.print(f"\n[bold]recommended[/]: {report.recommended or 'none'}")
    out.print(report.explanation)


def _max_connections(
    args: argparse.Namespace, s: Scenario, goals: Goals, backlog: int | None
) -> int:
    if goals.memory_gib is None:
        raise UserError("--max-connections needs a budget: give --memory-gib")
    from rich.table import Table  # noqa: PLC0415 - see TYPE_CHECKING above

    from simlab.planner import max_connections  # noqa: PLC0415

    limits = max_connections(
        s.workload,
        s.platform,
        goals,
        models=args.models,
        architecture=_given_arch(args, backlog),
    )
    if args.json:
        print_json(
            json_safe(
                {"max_connections": limits, "memory_gib": goals.memory_gib, "basis": goals.basis}
            )
        )
        return 0
    t = Table(
        title=f"most connections within {goals.memory_gib:g} GiB {goals.basis}",
        title_justify="left",
    )
    t.add_column("model")
    t.add_column("max connections", justify="right")
    for name, n in limits.items():
        t.add_row(name, fmt(n))
    console().print(t)
    return 0


def _max_rate(
    args: argparse.Namespace,
    s: Scenario,
    goals: Goals,
    check: Literal["des", "analytic"],
    backlog: int | None,
) -> int:
    from rich.table import Table  # noqa: PLC0415 - see TYPE_CHECKING above

    from simlab.planner import max_rate  # noqa: PLC0415

    with steps("max rate") as tick:
        tick("searching", 0, 1)
        limits = max_rate(
            s.workload,
            s.platform,
            goals,
            models=args.models,
            architecture=_given_arch(args, backlog),
            check=check,
            seed=args.seed,
            replications=args.replications,
            requests=args.des_requests,
        )
    if args.json:
        print_json({"max_rate": [r.to_dict() for r in limits]})
        return 0
    t = Table(title=f"highest rate with p99 <= {goals.p99_ms:g} ms", title_justify="left")
    for h in ("model", "workers", "processes", "max req/s", "DES p99 ms", "what gives way"):
        t.add_column(h, justify="left" if h in ("model", "what gives way") else "right")
    for r in limits:
        des = r.confirmed.latency_ms.get("p99") if r.confirmed is not None else None
        t.add_row(r.model, fmt(r.workers), fmt(r.processes), fmt(r.max_rate_rps), fmt(des), r.limit)
    console().print(t)
    return 0


def sweep_command(args: argparse.Namespace) -> int:
    from simlab.sweep import load_spec, sweep  # noqa: PLC0415 - see TYPE_CHECKING above

    spec = load_spec(args.file)
    if args.dask is not None and not args.dask.strip():
        raise UserError("--dask: give a scheduler address or 'local'")
    runs = len(spec.points()) * len(spec.models)
    with steps(f"sweep {spec.name}") as tick:
        result = sweep(
            spec,
            workers=args.workers,
            dask=args.dask,
            out=args.out,
            progress=lambda k, n, what: tick(what, k, n),
            plots=not args.no_plots,
        )
    summary = {
        "name": spec.name,
        "runs": runs,
        "computed": result.computed,
        "reused": result.reused,
        "out": str(result.out),
        "table": [str(result.out / "results.parquet"), str(result.out / "results.csv")],
        "plots": [str(p) for p in result.plots],
        "unstable": int((~result.table["stable"].astype(bool)).sum()),
    }
    if args.json:
        print_json(summary)
        return 0
    out = console()
    out.print(
        f"[bold]sweep {spec.name}[/]: {runs} runs ({result.computed} computed now, "
        f"{result.reused} kept from before) -> {result.out}"
    )
    if summary["unstable"]:
        out.print(f"[yellow]{summary['unstable']} runs are unstable (see 'stability')[/]")
    for p in result.plots:
        out.print(f"figure: {p}")
    return 0


def dashboard_command(args: argparse.Namespace) -> int:
    """Run ``streamlit run app.py`` on 127.0.0.1 in the foreground until Ctrl-C."""
    app = ROOT / "app.py"
    if not app.exists():
        raise UserError(f"dashboard: {app} is missing (run from a clone of simlab)")
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(args.port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    say(f"dashboard on http://127.0.0.1:{args.port} (Ctrl-C stops it)")
    proc = subprocess.Popen(cmd)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=DASHBOARD_STOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 130
