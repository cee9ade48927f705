"""``simlab simulate`` and ``simlab compare``: one model, or every model side by side."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from simlab.cli import MODULES, options
from simlab.cli.output import ci, console, fmt, fractions, print_json, say
from simlab.registry import MODEL_NAMES
from simlab.scenario import Scenario, build

if TYPE_CHECKING:
    # The engines (numpy, SimPy, numba) and rich load when a command runs, not
    # when the parser is built: --help stays quick.
    from rich.console import Console
    from rich.table import Table

    from simlab.models import Analytic
    from simlab.simulation import Result

__all__ = ["COMMANDS", "add_commands"]

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
    *options.overload_names(),
)


# Each command and its one-line help: its entry in the command table, which
# ``simlab --help`` lists without importing this module.
COMMANDS = MODULES["simulate"]


def add_commands(sub: argparse._SubParsersAction[options.Parser]) -> None:
    sim = sub.add_parser("simulate", help=COMMANDS["simulate"])
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
    cmp_ = sub.add_parser("compare", help=COMMANDS["compare"])
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
    options.add_overload_options(p)
    options.add_scenario_options(p.add_argument_group("run"), options.RUN)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def scenario_of(args: argparse.Namespace) -> Scenario:
    return build(options.given(args, SCENARIO))


def simulate_command(args: argparse.Namespace) -> int:
    from simlab.simulation import simulate  # noqa: PLC0415 - see TYPE_CHECKING above

    s = scenario_of(args)
    with fractions("simulating") as tick:
        progress = None if tick is None else (lambda f: tick(args.model, f))
        # The command prints the summary only: no per-request tables, so a
        # long run's replications let their arrays go as they are summarised.
        result = simulate(
            args.model, s.workload, s.platform, s.architecture, progress=progress,
            tables=False, **s.run.kwargs(),
        )  # fmt: skip
    if result.summary.engine_reason:
        say(f"--engine auto runs the DES: {result.summary.engine_reason}")
    summary = result.summary.to_dict()
    if args.theory:
        summary["theory"] = _theory_json(result.analytic)
    if args.json:
        print_json(summary)
        # The JSON carries them; a reader of the terminal sees them too.
        for warning in result.summary.warnings:
            say(f"warning: {warning}")
        return 0
    out = console()
    _header(out, s, warmup_s=result.summary.warmup_s)
    out.print(_summary_table(result))
    _stability(out, result)
    for line in overload_lines(result.summary):
        out.print(line)
    if args.theory:
        _theory_table(out, result)
    return 0


def compare_command(args: argparse.Namespace) -> int:
    from simlab.simulation import compare  # noqa: PLC0415 - see TYPE_CHECKING above

    s = scenario_of(args)
    with fractions("simulating") as tick:
        # Summaries only, as for simulate: each replication's arrays let go
        # as it is summarised (and the replications free to run side by side).
        results = compare(
            s.workload, s.platform, s.architecture, models=args.models, progress=tick,
            tables=False, **s.run.kwargs(),
        )  # fmt: skip
    for r in results:
        if r.summary.engine_reason:
            say(f"{r.model}: --engine auto runs the DES: {r.summary.engine_reason}")
    if args.json:
        print_json({"results": [r.summary.to_dict() for r in results]})
        for warning in _warnings(results):
            say(f"warning: {warning}")
        return 0
    out = console()
    _header(out, s)
    out.print(_compare_table(results))
    for warning in _warnings(results):
        out.print(f"[yellow]warning[/]: {warning}")
    for r in results:
        if not r.summary.stable:
            out.print(f"[red]{r.model}[/]: unstable: {'; '.join(r.summary.stability.reasons)}")
        for line in overload_lines(r.summary, prefix=f"{r.model}: "):
            out.print(line)
    out.print(
        "[dim]answered = measured requests that got a response; latencies are over those. "
        "resident = memory the machine must have; reserved = thread stacks' virtual address "
        "space. Means over replications; 95% CIs in --json.[/]"
    )
    return 0


def _warnings(results: list[Result]) -> list[str]:
    """Each distinct warning once: those all models share as they are, the
    others (a run too short for one model's bottleneck) under the model's name."""
    if not results:
        return []
    common = set.intersection(*(set(r.summary.warnings) for r in results))
    out = [w for w in results[0].summary.warnings if w in common]
    for r in results:
        out += [f"{r.model}: {w}" for w in r.summary.warnings if w not in common]
    return out


def _header(out: Console, s: Scenario, *, warmup_s: float | None = None) -> None:
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
        f"(+{_warmup(run.warmup, warmup_s)} warm-up), seed {run.seed}"
    )


def _warmup(asked: float | str, chosen: float | None) -> str:
    if asked != "auto":
        return f"{asked:g} s"
    return "auto" if chosen is None else f"auto: {chosen:.3g} s"


def _summary_table(r: Result) -> Table:
    from rich.table import Table  # noqa: PLC0415 - see TYPE_CHECKING above

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
        ("threads alive, peak (read every 0.1 s)", th.peak, th.peak_ci95),
        ("threads alive, peak (exact)", th.peak_exact, th.peak_exact_ci95),
        ("threads busy, mean", th.busy_mean, th.busy_mean_ci95),
        ("resident memory peak (MiB, probe's reads)", mem.peak, mem.peak_ci95),
        ("resident memory peak (MiB, exact)", mem.peak_exact, mem.peak_exact_ci95),
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


def overload_lines(s: Any, prefix: str = "") -> list[str]:
    """The overload block in words (``simlab.overload``), for a simulated or a
    measured summary; nothing when it has none."""
    o = getattr(s, "overload", None)
    if o is None:
        return []
    wasted = f" ({o.wasted_share:.0%} of the answers wasted)" if o.wasted_share else ""
    lines = [
        f"{prefix}[bold]overload[/] goodput {fmt(o.goodput_rps)}/s of "
        f"{fmt(s.throughput_rps)}/s answered{wasted}; {o.retries:,} retries, "
        f"{o.timeouts:,} timeouts; users answered in time: "
        f"{'-' if o.users_served is None else f'{o.users_served:.1%}'}"
    ]
    if o.dropped_by:
        lines.append(
            f"{prefix}dropped: " + ", ".join(f"{k} {v:,}" for k, v in o.dropped_by.items())
        )
    if o.bids_share is not None:
        lines.append(f"{prefix}bids received by the deadline: {o.bids_share:.1%}")
    rec = o.recovery
    if rec is not None:
        after = s.warmup_s + s.duration_s - rec.spike_end_s
        from simlab.overload.rules import recovery_text  # noqa: PLC0415

        lines.append(f"{prefix}after the spike (at {rec.spike_end_s:g} s) it "
                     f"{recovery_text(rec.recovered_s, after)}")  # fmt: skip
    return lines


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
    from rich.table import Table  # noqa: PLC0415 - see TYPE_CHECKING above

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
    from rich.table import Table  # noqa: PLC0415 - see TYPE_CHECKING above

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
