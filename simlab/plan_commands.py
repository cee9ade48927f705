"""What ``simlab plan`` (and its inverse questions) and ``simlab sweep`` print."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

from simlab.lab_commands import _steps
from simlab.params import Architecture, Platform, Workload
from simlab.planner import Goals, PlanReport, max_connections, max_rate, plan
from simlab.provenance import json_safe
from simlab.sweep import SweepError, load_spec, sweep

__all__ = ["dashboard_command", "plan_command", "sweep_command"]


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 170)


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.{digits}f}"


def goals_from(args: argparse.Namespace) -> Goals:
    return Goals(
        p99_ms=args.slo_p99_ms,
        mean_ms=args.slo_mean_ms,
        memory_gib=args.memory_gib,
        basis=args.memory_basis,
    )


def _given_arch(args: argparse.Namespace) -> Architecture | None:
    """The configuration the inverse questions hold fixed, when one is given."""
    if args.workers is None and args.processes is None:
        return None
    return Architecture(
        workers=args.workers or 1, processes=args.processes or 1, backlog=args.backlog
    )


def plan_command(args: argparse.Namespace, workload: Workload, platform: Platform) -> int:
    goals = goals_from(args)
    check: Literal["des", "analytic"] = "analytic" if args.analytic else "des"
    if args.max_connections:
        return _max_connections(args, workload, platform, goals)
    if args.max_rate:
        return _max_rate(args, workload, platform, goals, check)
    with _steps("planning") as tick:
        report = plan(
            workload,
            platform,
            goals,
            models=args.models,
            max_processes=args.max_processes,
            check=check,
            seed=args.seed,
            replications=args.replications,
            requests=args.des_requests,
            backlog=args.backlog,
            progress=lambda name, f: tick(name, round(f * 100), 100),
        )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, allow_nan=False))
        return 0
    _print_plan(report)
    return 0


def _print_plan(report: PlanReport) -> None:
    console = _console()
    g = report.goals
    budget = f", memory <= {g.memory_gib:g} GiB {g.basis}" if g.memory_gib is not None else ""
    mean = f", mean <= {g.mean_ms:g} ms" if g.mean_ms is not None else ""
    w = report.workload
    console.print(
        f"[bold]goals[/] p99 <= {g.p99_ms:g} ms{mean}{budget}   "
        f"[bold]workload[/] {w.connections:,} connections, {w.rate:g} req/s, "
        f"cpu {w.cpu!r}, {w.calls} x io {w.io!r} {w.fanout}   "
        f"[bold]platform[/] {report.platform.name} "
        f"({report.platform.cores or 'unlimited'} cores)"
    )
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
        ci = lat.get("p99_ci95")
        mark = "[green]*[/] " if p.model == report.recommended else ""
        t.add_row(
            mark + p.model,
            "[green]yes[/]" if p.feasible else "[red]no[/]",
            _fmt(p.workers),
            _fmt(p.processes),
            _fmt(p.threads),
            _fmt(p.memory_mib),
            _fmt(p.virtual_mib),
            _fmt(lat.get("p50")),
            _fmt(lat.get("p99")),
            "-" if not ci else f"[{_fmt(ci[0])}, {_fmt(ci[1])}]",
            _fmt(None if p.cpu_utilization is None else 100 * p.cpu_utilization),
            _fmt(p.max_connections),
            p.engine,
        )
    console.print(t)
    for p in report.plans:
        if p.reason:
            console.print(f"[red]{p.model}[/]: {p.reason}")
        for note in p.notes:
            console.print(f"[dim]{p.model}: {note}[/]")
    console.print(f"\n[bold]recommended[/]: {report.recommended or 'none'}")
    console.print(report.explanation)


def _max_connections(
    args: argparse.Namespace, workload: Workload, platform: Platform, goals: Goals
) -> int:
    if goals.memory_gib is None:
        raise ValueError("--max-connections needs a budget: give --memory-gib")
    limits = max_connections(
        workload, platform, goals, models=args.models, architecture=_given_arch(args)
    )
    if args.json:
        out = {"max_connections": limits, "memory_gib": goals.memory_gib, "basis": goals.basis}
        print(json.dumps(json_safe(out), indent=2))
        return 0
    t = Table(
        title=f"most connections within {goals.memory_gib:g} GiB {goals.basis}",
        title_justify="left",
    )
    t.add_column("model")
    t.add_column("max connections", justify="right")
    for name, n in limits.items():
        t.add_row(name, _fmt(n))
    _console().print(t)
    return 0


def _max_rate(
    args: argparse.Namespace,
    workload: Workload,
    platform: Platform,
    goals: Goals,
    check: Literal["des", "analytic"],
) -> int:
    with _steps("max rate") as tick:
        tick("searching", 0, 1)
        limits = max_rate(
            workload,
            platform,
            goals,
            models=args.models,
            architecture=_given_arch(args),
            check=check,
            seed=args.seed,
            replications=args.replications,
            requests=args.des_requests,
        )
    if args.json:
        print(json.dumps({"max_rate": [r.to_dict() for r in limits]}, indent=2, allow_nan=False))
        return 0
    t = Table(title=f"highest rate with p99 <= {goals.p99_ms:g} ms", title_justify="left")
    for h in ("model", "workers", "processes", "max req/s", "DES p99 ms", "what gives way"):
        t.add_column(h, justify="left" if h in ("model", "what gives way") else "right")
    for r in limits:
        des = r.confirmed.latency_ms.get("p99") if r.confirmed is not None else None
        t.add_row(
            r.model,
            _fmt(r.workers),
            _fmt(r.processes),
            _fmt(r.max_rate_rps),
            _fmt(des),
            r.limit,
        )
    _console().print(t)
    return 0


def sweep_command(args: argparse.Namespace) -> int:
    try:
        spec = load_spec(args.file)
    except SweepError as exc:
        raise ValueError(str(exc)) from None
    if args.dask is not None and not args.dask.strip():
        raise ValueError("--dask: give a scheduler address or 'local'")
    runs = len(spec.points()) * len(spec.models)
    with _steps(f"sweep {spec.name}") as tick:
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
        print(json.dumps(summary, indent=2))
        return 0
    console = _console()
    console.print(
        f"[bold]sweep {spec.name}[/]: {runs} runs ({result.computed} computed now, "
        f"{result.reused} kept from before) -> {result.out}"
    )
    if summary["unstable"]:
        console.print(f"[yellow]{summary['unstable']} runs are unstable (see 'stability')[/]")
    for p in result.plots:
        console.print(f"figure: {p}")
    return 0


def dashboard_command(args: argparse.Namespace) -> int:
    """Run ``streamlit run app.py`` on 127.0.0.1 in the foreground until Ctrl-C."""
    import subprocess  # noqa: PLC0415 - only this command starts a child

    from simlab.provenance import ROOT  # noqa: PLC0415

    app = ROOT / "app.py"
    if not app.exists():
        raise ValueError(f"dashboard: {app} is missing (run from a clone of simlab)")
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
    print(f"simlab dashboard on http://127.0.0.1:{args.port} (Ctrl-C stops it)", file=sys.stderr)
    proc = subprocess.Popen(cmd)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 130
