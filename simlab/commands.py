"""What ``simlab simulate`` and ``simlab compare`` do once their options are parsed.

Human output is a rich table on stdout; ``--json`` prints exactly one JSON
object instead. A progress bar goes to stderr when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from simlab.models import Analytic
from simlab.params import Architecture, Platform, Workload
from simlab.simulation import Result, compare, simulate

__all__ = ["compare_command", "simulate_command"]


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def _ci(ci: list[float] | None, digits: int = 1) -> str:
    return "-" if ci is None else f"[{_fmt(ci[0], digits)}, {_fmt(ci[1], digits)}]"


@contextmanager
def _progress(label: str) -> Iterator[Callable[[str, float], None] | None]:
    if not sys.stderr.isatty():
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=1.0)

        def tick(name: str, fraction: float) -> None:
            bar.update(task, description=f"{label} {name}", completed=fraction)

        yield tick


def _console() -> Console:
    # Piped output would otherwise be cut to 80 columns, truncating model names.
    return Console(width=None if sys.stdout.isatty() else 170)


def _run_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "duration": args.duration,
        "warmup": args.warmup,
        "seed": args.seed,
        "replications": args.replications,
        "engine": args.engine,
    }


def _header(
    console: Console,
    workload: Workload,
    platform: Platform,
    arch: Architecture,
    args: argparse.Namespace,
) -> None:
    w = workload
    conns = "persistent" if w.persistent else f"{w.requests_per_connection} requests per"
    arrivals = {
        "open": f"{w.rate:g} req/s open (Poisson)",
        "closed": f"closed loop, think {w.think!r}",
        "trace": "replayed trace",
    }[w.kind]
    cores = "unlimited" if platform.cores is None else platform.cores
    console.print(
        f"[bold]workload[/] {w.connections:,} {conns} connections, {arrivals}; "
        f"cpu {w.cpu!r}; {w.calls} x io {w.io!r} {w.fanout}\n"
        f"[bold]platform[/] {platform.name} ({cores} cores, {'GIL' if platform.gil else 'no GIL'})"
        f"   [bold]architecture[/] workers {arch.workers}, processes {arch.processes}, "
        f"backlog {'unbounded' if arch.backlog is None else arch.backlog}\n"
        f"[bold]run[/] {args.replications} replications x {args.duration:g} s "
        f"(+{args.warmup:g} s warm-up), seed {args.seed}"
    )


def simulate_command(
    args: argparse.Namespace, workload: Workload, platform: Platform, arch: Architecture
) -> int:
    with _progress("simulating") as tick:
        progress = None if tick is None else (lambda f: tick(args.model, f))
        result = simulate(
            args.model, workload, platform, arch, progress=progress, **_run_kwargs(args)
        )
    summary = dict(result.summary)
    if args.theory:
        summary["theory"] = _theory_json(result.analytic)
    if args.json:
        print(json.dumps(summary, indent=2, allow_nan=False))
        return 0
    console = _console()
    _header(console, workload, platform, arch, args)
    console.print(_summary_table(result))
    _stability(console, result)
    if args.theory:
        _theory_table(console, result)
    return 0


def compare_command(
    args: argparse.Namespace, workload: Workload, platform: Platform, arch: Architecture
) -> int:
    with _progress("simulating") as tick:
        results = compare(
            workload, platform, arch, models=args.models, progress=tick, **_run_kwargs(args)
        )
    if args.json:
        print(json.dumps({"results": [r.summary for r in results]}, indent=2, allow_nan=False))
        return 0
    console = _console()
    _header(console, workload, platform, arch, args)
    console.print(_compare_table(results))
    for warning in results[0].summary["warnings"] if results else []:
        console.print(f"[yellow]warning[/]: {warning}")
    for r in results:
        if not r.summary["stable"]:
            console.print(
                f"[red]{r.model}[/]: unstable: {'; '.join(r.summary['stability']['reasons'])}"
            )
    console.print(
        "[dim]answered = measured requests that got a response; latencies are over those. "
        "resident = memory the machine must have; reserved = thread stacks' virtual address "
        "space. Means over replications; 95% CIs in --json.[/]"
    )
    return 0


def _summary_table(r: Result) -> Table:
    s = r.summary
    lat, q, th, mem = s["latency_ms"], s["queue_delay_ms"], s["threads"], s["memory_mib"]
    t = Table(title=f"{r.model}", title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("95% CI", justify="right")
    rows: list[tuple[str, Any, list[float] | None]] = [
        ("throughput (req/s)", s["throughput_rps"], s["throughput_ci95"]),
        ("latency mean (ms)", lat["mean"], lat["mean_ci95"]),
        ("latency p50 (ms)", lat["p50"], lat["p50_ci95"]),
        ("latency p95 (ms)", lat["p95"], lat["p95_ci95"]),
        ("latency p99 (ms)", lat["p99"], lat["p99_ci95"]),
        ("queueing delay mean (ms)", q["mean"], q["mean_ci95"]),
        ("queueing delay p99 (ms)", q["p99"], q["p99_ci95"]),
        ("threads alive, peak", th["peak"], th["peak_ci95"]),
        ("threads busy, mean", th["busy_mean"], th["busy_mean_ci95"]),
        ("resident memory peak (MiB)", mem["peak"], mem["peak_ci95"]),
        ("reserved virtual peak (MiB)", mem["virtual_peak"], mem["virtual_peak_ci95"]),
        ("connections open, peak", s["connections"]["peak"], None),
        ("requests in flight, mean", s["in_flight"]["mean"], s["in_flight"]["mean_ci95"]),
        ("CPU utilisation", s["cpu_utilization"], s["cpu_utilization_ci95"]),
    ]
    for name, value, ci in rows:
        digits = 3 if name.startswith("CPU") else 1
        t.add_row(name, _fmt(value, digits), _ci(ci, digits))
    t.add_row(
        "completed / dropped / incomplete",
        f"{s['completed']:,} / {s['dropped']:,} / {s['incomplete']:,}",
        "",
    )
    return t


def _stability(console: Console, r: Result) -> None:
    s = r.summary
    for warning in s["warnings"]:
        console.print(f"[yellow]warning[/]: {warning}")
    loads = ", ".join(f"{k} {v:.3g}" for k, v in s["stability"]["offered_load"].items())
    if s["stable"]:
        console.print(f"[green]stable[/]  offered load rho: {loads or 'n/a (closed loop)'}")
    else:
        console.print(f"[red]unstable[/]: {'; '.join(s['stability']['reasons'])}")


def _theory_json(analytic: Analytic | str) -> dict[str, Any]:
    if isinstance(analytic, str):
        return {"applies": False, "reason": analytic}
    return {
        "applies": True,
        "queue": analytic.queue,
        "exact": analytic.exact,
        "note": analytic.note,
        "values": analytic.values,
    }


# Where each theory value sits in the summary: (block, key, CI key).
_THEORY_KEYS = {
    "latency_mean_ms": ("latency_ms", "mean", "mean_ci95"),
    "latency_p99_ms": ("latency_ms", "p99", "p99_ci95"),
    "queue_delay_mean_ms": ("queue_delay_ms", "mean", "mean_ci95"),
    "threads_busy_mean": ("threads", "busy_mean", "busy_mean_ci95"),
}


def _theory_table(console: Console, r: Result) -> None:
    a = r.analytic
    if isinstance(a, str):
        console.print(f"[yellow]theory[/]: no textbook reduction: {a}")
        return
    t = Table(
        title=f"theory: {a.queue} ({'exact' if a.exact else 'approximation'}; {a.note})",
        title_justify="left",
    )
    for col in ("metric", "simulated", "95% CI", "theory", "inside CI"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    for key, value in a.values.items():
        if key not in _THEORY_KEYS:
            t.add_row(key, "-", "-", _fmt(value, 4), "-")
            continue
        block, stat, ci_key = _THEORY_KEYS[key]
        sim = r.summary[block][stat]
        ci = r.summary[block][ci_key]
        inside = None if ci is None else ci[0] <= value <= ci[1]
        t.add_row(key, _fmt(sim, 3), _ci(ci, 3), _fmt(value, 3), _fmt(inside))
    console.print(t)


def _compare_table(results: list[Result]) -> Table:
    t = Table(title="simlab compare", title_justify="left")
    heads = [
        "model",
        "stable",
        "answered",
        "req/s",
        "lat mean",
        "p50",
        "p99",
        "queue mean",
        "threads",
        "busy",
        "resident MiB",
        "reserved MiB",
        "CPU %",
        "dropped",
    ]
    for h in heads:
        t.add_column(h, justify="left" if h == "model" else "right")
    for r in results:
        s = r.summary
        lat = s["latency_ms"]
        cpu = s["cpu_utilization"]
        t.add_row(
            r.model,
            "[green]yes[/]" if s["stable"] else "[red]no[/]",
            f"{100 * s['completed'] / s['requests']:.1f}%" if s["requests"] else "-",
            _fmt(s["throughput_rps"]),
            _fmt(lat["mean"]),
            _fmt(lat["p50"]),
            _fmt(lat["p99"]),
            _fmt(s["queue_delay_ms"]["mean"], 2),
            _fmt(s["threads"]["peak"], 0),
            _fmt(s["threads"]["busy_mean"]),
            _fmt(s["memory_mib"]["peak"]),
            _fmt(s["memory_mib"]["virtual_peak"]),
            _fmt(None if cpu is None else 100 * cpu),
            _fmt(s["dropped"]),
        )
    return t
