"""What ``simlab serve`` and ``simlab measure`` do once their options are parsed."""

from __future__ import annotations

import argparse
import errno
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from simlab.params import Architecture, Workload
from simlab.provenance import ROOT, atomic_write_json, git_revision, machine, utc_stamp
from simlab.real.measure import MEASUREMENTS, MeasureOptions, measure
from simlab.real.memory import measure_memory
from simlab.real.options import ServerOptions
from simlab.real.processes import Managed, python
from simlab.real.runner import run_server

__all__ = ["measure_command", "memory_command", "serve_command"]


class RealUsageError(ValueError):
    """A request this machine or these options cannot satisfy (exit 2)."""


def _err(msg: str) -> None:
    sys.stderr.write(f"simlab: {msg}\n")
    sys.stderr.flush()


def serve_command(args: argparse.Namespace, arch: Architecture) -> int:
    backend: Managed | None = None
    backend_port = args.backend_port
    try:
        if backend_port is None:
            backend = Managed([python(), "-m", "simlab.real.backend"], name="backend")
            backend_port = backend.port
        opts = ServerOptions(
            model=args.model,
            backend_port=backend_port,
            port=args.port,
            workers=arch.workers,
            processes=arch.processes,
            backlog=arch.backlog,
            request_timeout=args.request_timeout,
            stack_kib=args.stack_kib,
            uvloop=args.uvloop,
            parser="httptools" if args.httptools else "h11",
        )
        _err(
            f"serving {args.model} on http://127.0.0.1:{args.port or '<port>'}/work"
            f"?cpu_ms=1&io_ms=50&calls=1 (backend on {backend_port}); SIGTERM or Ctrl-C stops it"
        )
        try:
            run_server(opts)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise RealUsageError(f"--port: {args.port} is already in use") from None
            raise
    finally:
        if backend is not None:
            backend.stop()
    return 0


def measure_command(args: argparse.Namespace, workload: Workload, arch: Architecture) -> int:
    opts = MeasureOptions(
        target=args.target,
        workload=workload,
        architecture=arch,
        duration=args.duration,
        warmup=args.warmup,
        seed=args.seed,
        timeout=args.timeout,
        sources=args.sources,
        request_timeout=args.request_timeout,
        stack_kib=args.stack_kib,
        uvloop=args.uvloop,
        parser="httptools" if args.httptools else "h11",
        save=not args.no_save,
        out_dir=args.out or MEASUREMENTS,
    )
    summary = measure(opts, progress=_err)
    if args.json:
        print(json.dumps(summary, indent=2, allow_nan=False))
        return 0
    _print_measure(summary)
    return 0


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.{digits}f}"


def _print_measure(s: dict[str, Any]) -> None:
    console = Console(width=None if sys.stdout.isatty() else 140)
    lat, q, th, mem = s["latency_ms"], s["queue_delay_ms"], s["threads"], s["memory_mib"]
    t = Table(title=f"measured: {s['model']} (resembles {s['resembles']})", title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    rows = [
        ("offered / served (req/s)", f"{_fmt(s['offered_rps'])} / {_fmt(s['throughput_rps'])}"),
        (
            "latency mean / p50 / p99 (ms)",
            f"{_fmt(lat['mean'], 2)} / {_fmt(lat['p50'], 2)} / {_fmt(lat['p99'], 2)}",
        ),
        ("queueing delay mean / p99 (ms)", f"{_fmt(q['mean'], 2)} / {_fmt(q['p99'], 2)}"),
        ("threads peak / busy", f"{_fmt(th['peak'], 0)} / {_fmt(th['busy_mean'], 2)}"),
        ("processes peak", _fmt(s["processes"]["peak"], 0)),
        ("resident PSS peak (MiB)", _fmt(mem["peak"])),
        ("virtual peak (MiB)", _fmt(mem["virtual_peak"])),
        ("kernel memory growth, machine (MiB)", _fmt(mem["kernel_peak"])),
        (
            "connections opened / failed",
            f"{_fmt(s['connections']['opened'])} / {_fmt(s['connections']['failed'])}",
        ),
        ("CPU utilisation", _fmt(s["cpu_utilization"], 3)),
        (
            "Little: in flight vs X x W",
            f"{_fmt(s['little']['in_flight_sampled'], 2)} vs "
            f"{_fmt(s['little']['throughput_x_latency'], 2)}",
        ),
        (
            "completed / dropped / failed",
            f"{_fmt(s['completed'])} / {_fmt(s['dropped'])} / {_fmt(s['incomplete'])}",
        ),
    ]
    for name, value in rows:
        t.add_row(name, value)
    console.print(t)
    if s["stable"]:
        console.print("[green]kept up[/] with the offered load")
    else:
        console.print(f"[red]did not keep up[/]: {'; '.join(s['stability']['reasons'])}")
    for w in s["warnings"]:
        console.print(f"[yellow]warning[/]: {w}")
    if "saved_to" in s:
        console.print(f"[dim]saved to {s['saved_to']}[/]")


def memory_command(args: argparse.Namespace) -> int:
    _err(f"measuring memory per unit at {args.sizes[0]:,} and {args.sizes[1]:,} units")
    result = measure_memory(args.sizes, stack_kib=args.stack_kib)
    result["machine"] = machine()
    result["git_revision"] = git_revision()
    stamp = utc_stamp()
    result["started"] = stamp
    if not args.no_save:
        out: Path = args.out or MEASUREMENTS
        path = out / f"memory-{stamp}.json"
        atomic_write_json(path, result)
        result["saved_to"] = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    console = Console(width=None if sys.stdout.isatty() else 140)
    t = Table(
        title=f"memory per unit, KiB (slope between {args.sizes[0]:,} and {args.sizes[1]:,})",
        title_justify="left",
    )
    for col in ("unit", "RSS", "USS (private)", "PSS", "virtual", "kernel (machine)"):
        t.add_column(col, justify="left" if col == "unit" else "right")
    names = {
        "thread": "idle thread (blocked in recv)",
        "connection": "idle asyncio connection",
        "fork": "forked child (blocked)",
        "coroutine": "pending asyncio task",
    }
    for kind, v in result["per_unit_kib"].items():
        t.add_row(
            names[kind],
            _fmt(v["rss"]),
            _fmt(v["uss"]),
            _fmt(v["pss"]),
            _fmt(v["vms"]),
            _fmt(v["kernel"]),
        )
    console.print(t)
    tm = result["timings"]
    console.print(
        f"thread create+start+join {tm['thread_create_start_join_us']:.1f} us; "
        f"fork+exit+wait {tm['fork_exit_wait_us']:.0f} us; "
        f"task create+run {tm['task_create_run_us']:.2f} us"
    )
    if "saved_to" in result:
        console.print(f"[dim]saved to {result['saved_to']}[/]")
    return 0
