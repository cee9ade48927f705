"""``simlab simulate`` and ``simlab compare``: one model, or every model side by side."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from simlab.cli import options
from simlab.cli.output import ci, console, fmt, fractions, print_json
from simlab.models import Analytic
from simlab.registry import MODEL_NAMES
from simlab.scenario import Scenario, build
from simlab.simulation import Result, compare, simulate

__all__ = ["add_commands"]

# ``--loops`` (several event loops per async process) is for ``simulate`` only:
# the real async server runs one loop per process, and the other models in
# ``compare`` have no loop to add.
# ``--fronts`` and ``--hop`` (two-tier's front) are for simulate and compare.
SIMULATED_ARCHITECTURE = (*options.ARCHITECTURE, "loops", *options.FRONT)
SCENARIO = (
    *options.WORKLOAD,
    *options.PLATFORM,
    "gil",
    *SIMULATED_ARCHITECTURE,
    *options.RUN,
)


def add_commands(sub: argparse._SubParsersAction[options.Parser]) -> None:
    sim = sub.add_parser("simulate", help="simulate one model")
    sim.add_argument(
        "model", type=options.choice("MODEL", MODEL_NAMES), metavar="MODEL",
        help=", ".join(MODEL_NAMES),
    )  # fmt: skip
    sim.add_argument(
        "--theory",
        action="store_true",
        help="print the textbook value beside the simulated one where one applies",
    )
    _add_scenario(sim, SIMULATED_ARCHITECTURE)
    sim.set_defaults(run=simulate_command)
    cmp_ = sub.add_parser("compare", help="every model side by side")
    cmp_.add_argument(
        "--models",
        type=options.name_list("model", MODEL_NAMES),
        help="comma-separated subset (default all)",
    )
    _add_scenario(cmp_, (*options.ARCHITECTURE, *options.FRONT))
    cmp_.set_defaults(run=compare_command)


def _add_scenario(
    p: argparse.ArgumentParser, architecture: tuple[str, ...] = options.ARCHITECTURE
) -> None:
    options.add_scenario_options(p.add_argument_group("workload"), options.WORKLOAD)
    pl = p.add_argument_group("platform")
    options.add_scenario_options(pl, (*options.PLATFORM, "gil"))
    options.add_set(pl)
    options.add_scenario_options(p.add_argument_group("architecture"), architecture)
    options.add_scenario_options(p.add_argument_group("run"), options.RUN)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def scenario_of(args: argparse.Namespace) -> Scenario:
    return build(options.given(args, SCENARIO))


def simulate_command(args: argparse.Namespace) -> int:
    s = scenario_of(args)
    with fractions("simulating") as tick:
        progress = None if tick is None else (lambda f: tick(args.model, f))
        result = simulate(
            args.model, s.workload, s.platform, s.architecture, progress=progress,
            **s.run.kwargs(),
        )  # fmt: skip
    summary = result.summary.to_dict()
    if args.theory:
        summary["theory"] = _theory_json(result.analytic)
    if args.json:
        print_json(summary)
        return 0
    out = console()
    _header(out, s)
    out.print(_summary_table(result))
    _stability(out, result)
    if args.theory:
        _theory_table(out, result)
    return 0


def compare_command(args: argparse.Namespace) -> int:
    s = scenario_of(args)
    with fractions("simulating") as tick:
        results = compare(
            s.workload, s.platform, s.architecture, models=args.models, progress=tick,
            **s.run.kwargs(),
        )  # fmt: skip
    if args.json:
        print_json({"results": [r.summary.to_dict() for r in results]})
        return 0
    out = console()
    _header(out, s)
    out.print(_compare_table(results))
    for warning in results[0].summary.warnings if results else ():
        out.print(f"[yellow]warning[/]: {warning}")
    for r in results:
        if not r.summary.stable:
            out.print(f"[red]{r.model}[/]: unstable: {'; '.join(r.summary.stability.reasons)}")
    out.print(
        "[dim]answered = measured requests that got a response; latencies are over those. "
        "resident = memory the machine must have; reserved = thread stacks' virtual address "
        "space. Means over replications; 95% CIs in --json.[/]"
    )
    return 0


def _header(out: Console, s: Scenario) -> None:
    w, platform, arch, run = s.workload, s.platform, s.architecture, s.run
    conns = "persistent" if w.persistent else f"{w.requests_per_connection} requests per"
    arrivals = {
        "open": f"{w.rate:g} req/s open (Poisson)",
        "closed": f"closed loop, think {w.think!r}",
        "trace": "replayed trace",
    }[w.kind]
    cores = "unlimited" if platform.cores is None else platform.cores
    out.print(
        f"[bold]workload[/] {w.connections:,} {conns} connections, {arrivals}; "
        f"cpu {w.cpu!r}; {w.calls} x io {w.io!r} {w.fanout}\n"
        f"[bold]platform[/] {platform.name} ({cores} cores, {'GIL' if platform.gil else 'no GIL'})"
        f"   [bold]architecture[/] workers {arch.workers}, processes {arch.processes}, "
        f"backlog {'unbounded' if arch.backlog is None else arch.backlog}\n"
        f"[bold]run[/] {run.replications} replications x {run.duration:g} s "
        f"(+{run.warmup:g} s warm-up), seed {run.seed}"
    )


def _summary_table(r: Result) -> Table:
    s = r.summary
    lat, q, th, mem = s.latency_ms, s.queue_delay_ms, s.threads, s.memory_mib
    t = Table(title=f"{r.model}", title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("95% CI", justify="right")
    rows: list[tuple[str, Any, list[float] | None]] = [
        ("throughput (req/s)", s.throughput_rps, s.throughput_ci95),
        ("latency mean (ms)", lat.mean, lat.mean_ci95),
        ("latency p50 (ms)", lat.p50, lat.p50_ci95),
        ("latency p95 (ms)", lat.p95, lat.p95_ci95),
        ("latency p99 (ms)", lat.p99, lat.p99_ci95),
        ("queueing delay mean (ms)", q.mean, q.mean_ci95),
        ("queueing delay p99 (ms)", q.p99, q.p99_ci95),
        ("threads alive, peak", th.peak, th.peak_ci95),
        ("threads busy, mean", th.busy_mean, th.busy_mean_ci95),
        ("resident memory peak (MiB)", mem.peak, mem.peak_ci95),
        ("reserved virtual peak (MiB)", mem.virtual_peak, mem.virtual_peak_ci95),
        ("connections open, peak", s.connections.peak, None),
        ("requests in flight, mean", s.in_flight.mean, s.in_flight.mean_ci95),
        ("CPU utilisation", s.cpu_utilization, s.cpu_utilization_ci95),
    ]
    for name, value, interval in rows:
        digits = 3 if name.startswith("CPU") else 1
        t.add_row(name, fmt(value, digits), ci(interval, digits))
    t.add_row(
        "completed / dropped / incomplete",
        f"{s.completed:,} / {s.dropped:,} / {s.incomplete:,}",
        "",
    )
    return t


def _stability(out: Console, r: Result) -> None:
    s = r.summary
    for warning in s.warnings:
        out.print(f"[yellow]warning[/]: {warning}")
    loads = ", ".join(f"{k} {v:.3g}" for k, v in s.stability.offered_load.items())
    if s.stable:
        out.print(f"[green]stable[/]  offered load rho: {loads or 'n/a (closed loop)'}")
    else:
        out.print(f"[red]unstable[/]: {'; '.join(s.stability.reasons)}")


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


def _theory_table(out: Console, r: Result) -> None:
    a = r.analytic
    if isinstance(a, str):
        out.print(f"[yellow]theory[/]: no textbook reduction: {a}")
        return
    t = Table(
        title=f"theory: {a.queue} ({'exact' if a.exact else 'approximation'}; {a.note})",
        title_justify="left",
    )
    for col in ("metric", "simulated", "95% CI", "theory", "inside CI"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    for key, value in a.values.items():
        if key not in _THEORY_KEYS:
            t.add_row(key, "-", "-", fmt(value, 4), "-")
            continue
        block, stat, ci_key = _THEORY_KEYS[key]
        part = getattr(r.summary, block)
        sim, interval = getattr(part, stat), getattr(part, ci_key)
        inside = None if interval is None else interval[0] <= value <= interval[1]
        t.add_row(key, fmt(sim, 3), ci(interval, 3), fmt(value, 3), fmt(inside))
    out.print(t)


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
        lat = s.latency_ms
        cpu = s.cpu_utilization
        t.add_row(
            r.model,
            "[green]yes[/]" if s.stable else "[red]no[/]",
            f"{100 * s.completed / s.requests:.1f}%" if s.requests else "-",
            fmt(s.throughput_rps),
            fmt(lat.mean),
            fmt(lat.p50),
            fmt(lat.p99),
            fmt(s.queue_delay_ms.mean, 2),
            fmt(s.threads.peak, 0),
            fmt(s.threads.busy_mean),
            fmt(s.memory_mib.peak),
            fmt(s.memory_mib.virtual_peak),
            fmt(None if cpu is None else 100 * cpu),
            fmt(s.dropped),
        )
    return t
