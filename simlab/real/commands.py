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
from simlab.real import peers
from simlab.real.measure import MEASUREMENTS, MeasureOptions, measure
from simlab.real.memory import measure_memory
from simlab.real.options import ServerOptions
from simlab.real.peers.units import measure_units, runtime_versions
from simlab.real.processes import Managed, free_port, port_is_free, python
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
        if args.model in peers.REGISTRY:
            return _serve_peer(args, arch, backend_port)
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


def _serve_peer(args: argparse.Namespace, arch: Architecture, backend_port: int) -> int:
    """A peer in the foreground until Ctrl-C or SIGTERM (or until it dies: exit 1)."""
    port = args.port or free_port()
    if not port_is_free(port):
        raise RealUsageError(f"--port: {port} is already in use")
    cfg = peers.PeerConfig(
        port=port,
        backend_port=backend_port,
        workers=arch.workers,
        processes=arch.processes,
        backlog=arch.backlog,
        request_timeout=args.request_timeout,
        stack_kib=args.stack_kib,
    )
    peer = peers.REGISTRY[args.model]
    server = peers.start(args.model, cfg)
    try:
        _err(
            f"serving {peer.name} ({peer.resembles} on {peer.platform}) on "
            f"http://127.0.0.1:{port}/work?cpu_ms=1&io_ms=50&calls=1 (backend on "
            f"{backend_port}); SIGTERM or Ctrl-C stops it"
        )
        print(f"READY {port}", flush=True)
        code = server.proc.wait()
        raise RuntimeError(f"{peer.name} exited with {code}: {server.stop().strip()[-500:]}")
    except KeyboardInterrupt:
        return 0  # the way a foreground server is meant to end
    finally:
        server.stop()


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


# The cpython units of memory.py: their labels, and the timing that goes with each.
CPYTHON_UNITS = {
    "thread": ("idle thread (blocked in recv)", "thread_create_start_join_us"),
    "connection": ("idle asyncio connection", None),
    "fork": ("forked child (blocked)", "fork_exit_wait_us"),
    "coroutine": ("pending asyncio task", "task_create_run_us"),
}


def memory_command(args: argparse.Namespace) -> int:
    runtime = getattr(args, "runtime", "cpython")
    a, b = args.sizes
    versions = runtime_versions(runtime)  # a missing runtime stops here, in one line
    _err(f"measuring {runtime} memory per unit at {a:,} and {b:,} units")
    if runtime == "cpython":
        result = measure_memory(args.sizes, stack_kib=args.stack_kib)
        extra = measure_units("cpython", args.sizes)
        result["per_unit_kib"].update(extra["per_unit_kib"])
        result["units"] = extra["units"]
        result["kernel_method"] = extra["kernel_method"]
    else:
        result = measure_units(runtime, args.sizes)
    result["runtime"] = runtime
    result["versions"] = versions
    result["machine"] = machine()
    result["git_revision"] = git_revision()
    stamp = utc_stamp()
    result["started"] = stamp
    if not args.no_save:
        out: Path = args.out or MEASUREMENTS
        # cpython keeps the record name it always had.
        name = f"memory-{stamp}.json" if runtime == "cpython" else f"memory-{runtime}-{stamp}.json"
        path = out / name
        atomic_write_json(path, result)
        result["saved_to"] = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    _print_memory(result)
    return 0


def _print_memory(result: dict[str, Any]) -> None:
    a, b = result["sizes"]
    console = Console(width=None if sys.stdout.isatty() else 140)
    t = Table(
        title=f"{result['runtime']} memory per unit, KiB (slope between {a:,} and {b:,}); "
        + ", ".join(result["versions"].values()),
        title_justify="left",
    )
    for col in ("unit", "RSS", "USS (private)", "PSS", "virtual", "kernel (own)", "create us"):
        t.add_column(col, justify="left" if col == "unit" else "right")
    timings = result.get("timings", {})
    for kind, v in result["per_unit_kib"].items():
        if result["runtime"] == "cpython" and kind in CPYTHON_UNITS:
            label, timing = CPYTHON_UNITS[kind]
            create = timings.get(timing) if timing else None
        else:
            label, create = result["units"][kind]["label"], v["create_us"]
        kernel = _fmt(v["kernel"])
        if "kernel_client_share" in v:
            kernel += f" (-{v['kernel_client_share']:.1f} client)"
        t.add_row(
            label,
            _fmt(v["rss"]),
            _fmt(v["uss"]),
            _fmt(v["pss"]),
            _fmt(v["vms"]),
            kernel,
            _fmt(create, 2),
        )
    console.print(t)
    console.print(f"[dim]{result['kernel_method']}[/]")
    if "saved_to" in result:
        console.print(f"[dim]saved to {result['saved_to']}[/]")
