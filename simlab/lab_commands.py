"""What ``simlab calibrate``, ``simlab validate`` and ``simlab usl`` do and print."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from simlab.calibrate import calibrate
from simlab.params import Architecture, Platform
from simlab.platforms import load_platform
from simlab.usl import usl_study
from simlab.validate import GOALS, validate

__all__ = ["calibrate_command", "usl_command", "validate_command"]


@contextmanager
def _steps(label: str) -> Iterator[Callable[[str, int, int], None]]:
    """Progress on stderr: a bar on a terminal, one line per step otherwise."""
    if not sys.stderr.isatty():
        yield lambda what, k, n: print(f"simlab: [{k}/{n}] {what}", file=sys.stderr, flush=True)
        return
    cols = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*cols, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=1)

        def tick(what: str, k: int, n: int) -> None:
            bar.update(task, description=f"{label}: {what}", completed=k, total=n)

        yield tick


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 150)


def calibrate_command(args: argparse.Namespace) -> int:
    with _steps("calibrating") as tick:
        profile = calibrate(args.name, quick=args.quick, refit=args.refit, progress=tick)
    if args.json:
        print(json.dumps(profile, indent=2))
        return 0
    t = Table(title=f"profile {args.name} (data/profiles/{args.name}.json)", title_justify="left")
    for col in ("parameter", "value", "95% CI", "how"):
        t.add_column(col, justify="left" if col in ("parameter", "how") else "right")
    for key, p in profile["parameters"].items():
        if isinstance(p, dict):
            ci = p.get("ci95")
            t.add_row(
                key,
                f"{p['value']:,.2f}",
                "-" if ci is None else f"[{ci[0]:,.2f}, {ci[1]:,.2f}]",
                p.get("note", "least squares"),
            )
        else:
            t.add_row(key, str(p), "-", "this machine")
    _console().print(t)
    return 0


def validate_command(args: argparse.Namespace) -> int:
    _platform(args.platform)  # a missing or corrupt profile fails here, before any run
    with _steps("validating") as tick:
        result = validate(args.platform, quick=args.quick, out_dir=args.out, progress=tick)
    if args.json:
        print(json.dumps({"rows": result["rows"], "summary": result["summary"]}, indent=2))
        return 0
    console = _console()
    t = Table(title="held-out configurations: predicted vs measured", title_justify="left")
    for col in ("model", "config", "metric", "predicted", "measured", "error"):
        t.add_column(col, justify="left" if col in ("model", "config", "metric") else "right")
    for r in result["rows"]:
        err = "-" if r["rel_error"] is None else f"{r['rel_error']:.1%}"
        t.add_row(
            r["model"], r["config"], r["metric"], _num(r["predicted"]), _num(r["measured"]), err
        )
    console.print(t)
    s = Table(title="median absolute relative error", title_justify="left")
    for col in ("metric", "error", "goal", "met"):
        s.add_column(col)
    for metric, value in result["summary"].items():
        met = value is not None and value <= GOALS[metric]
        s.add_row(
            metric,
            "-" if value is None else f"{value:.1%}",
            f"{GOALS[metric]:.0%}",
            "[green]yes[/]" if met else "[red]no[/]",
        )
    console.print(s)
    return 0


def _platform(spec: str) -> Platform:
    try:
        return load_platform(spec)
    except ValueError as exc:
        raise ValueError(f"--{exc}") from None  # "--platform: ...", naming the option


def _num(x: Any) -> str:
    if x is None:
        return "-"
    return f"{x:,.3g}" if abs(x) < 100 else f"{x:,.0f}"


def usl_command(args: argparse.Namespace, arch: Architecture) -> int:
    levels = args.levels or ([1, 2, 4, 8, 16] if args.quick else [1, 2, 4, 8, 16, 32, 64])
    platform = _platform(args.platform)
    with _steps("usl") as tick:
        result = usl_study(
            args.target,
            levels=levels,
            cpu_ms=args.cpu_ms,
            io_ms=args.io_ms,
            calls=args.calls,
            arch=arch,
            platform=platform,
            duration=args.duration,
            warmup=args.warmup,
            progress=tick,
        )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    console = _console()
    t = Table(title=f"{args.target}: throughput against concurrency", title_justify="left")
    for col in ("N", "measured req/s", "simulated req/s"):
        t.add_column(col, justify="right")
    for p in result["points"]:
        t.add_row(str(p["n"]), _num(p["measured"]), _num(p["simulated"]))
    console.print(t)
    for which in ("measured_fit", "simulated_fit"):
        f = result[which]
        ci = f["ci95"]
        console.print(
            f"{which.split('_')[0]}: sigma {f['sigma']:.4f} "
            f"[{ci['sigma'][0]:.4f}, {ci['sigma'][1]:.4f}], "
            f"kappa {f['kappa']:.2e} [{ci['kappa'][0]:.2e}, {ci['kappa'][1]:.2e}], "
            f"lambda {f['lambda']:.1f} req/s; N* = {f['peak_concurrency']:.3g}, "
            f"ceiling {f['ceiling']:,.0f} req/s"
        )
    console.print(f"[dim]plot: data/usl/{args.target}/usl.png[/]")
    return 0
