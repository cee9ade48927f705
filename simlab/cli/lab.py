"""The real lab's commands: ``serve``, ``measure`` (and ``measure memory``),
``calibrate``, ``validate`` and ``usl``."""

from __future__ import annotations

import argparse
import errno
from pathlib import Path
from typing import Any

from simlab.cli import MODULES, options
from simlab.cli.output import console, fmt, print_json, say, steps
from simlab.errors import RunFailed, UserError
from simlab.gate import add_options as gate_options
from simlab.gate import from_options as gate_from
from simlab.params import Architecture
from simlab.paths import measurements_dir, shown
from simlab.platforms import load_platform
from simlab.provenance import atomic_write_json, git_revision, machine, utc_stamp
from simlab.real.pacing import DEFAULT_PACING, PACINGS
from simlab.registry import MODEL_NAMES
from simlab.results import MeasuredSummary
from simlab.scenario import architecture, build

__all__ = ["COMMANDS", "add_commands"]

REAL_DURATION_S, REAL_WARMUP_S = 10.0, 2.0
SCENARIO = (
    *(n for n in options.WORKLOAD if n != "trace"), *options.ARCHITECTURE,
    *options.overload_names(), "timeline",
)  # fmt: skip


# Each command and its one-line help: its entry in the command table, which
# ``simlab --help`` lists without importing this module.
COMMANDS = MODULES["lab"]


def _targets() -> tuple[str, ...]:
    # The real lab's names load without numpy; this keeps --help quick.
    from simlab.real.measure import TARGETS  # noqa: PLC0415

    return TARGETS


def _peers_help() -> str:
    from simlab.real import peers  # noqa: PLC0415

    return f"peers (resembles MODEL on PLATFORM):\n{peers.describe()}"


def add_commands(sub: argparse._SubParsersAction[options.Parser]) -> None:
    targets = _targets()
    _add_serve(sub, targets)
    _add_measure(sub, targets)
    _add_calibrate(sub)
    _add_validate(sub)
    _add_usl(sub, targets)


def _runtimes() -> tuple[str, ...]:
    from simlab.real.peers.units import RUNTIMES  # noqa: PLC0415

    return tuple(RUNTIMES)


def _resembles(target: str) -> str:
    from simlab.real.peers import RESEMBLES  # noqa: PLC0415

    return RESEMBLES.get(target, target)


def _add_serve(sub: argparse._SubParsersAction[options.Parser], targets: tuple[str, ...]) -> None:
    srv = sub.add_parser(
        "serve",
        help=COMMANDS["serve"],
        epilog=_peers_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    srv.add_argument(
        "model",
        type=options.choice("MODEL", targets),
        metavar="MODEL",
        help=", ".join(targets),
    )
    srv.add_argument(
        "--port", type=options.nonneg_int, default=8080, help="port on 127.0.0.1 (default 8080)"
    )
    srv.add_argument(
        "--backend-port",
        type=options.positive_int,
        help="use a running backend (default: start one)",
    )
    options.add_scenario_options(srv.add_argument_group("architecture"), options.ARCHITECTURE)
    options.add_scenario_options(
        srv.add_argument_group("server limits"), options.OVERLOAD["server limits"]
    )
    _server_knobs(srv)
    srv.set_defaults(run=serve_command)


def _add_measure(sub: argparse._SubParsersAction[options.Parser], targets: tuple[str, ...]) -> None:
    mea = sub.add_parser(
        "measure",
        help=COMMANDS["measure"],
        epilog=_peers_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mea.add_argument(
        "target",
        type=options.choice("TARGET", (*targets, "memory")),
        metavar="TARGET",
        help=", ".join((*targets, "memory")),
    )
    options.add_scenario_options(
        mea.add_argument_group("workload"), tuple(n for n in options.WORKLOAD if n != "trace")
    )
    options.add_scenario_options(mea.add_argument_group("architecture"), options.ARCHITECTURE)
    options.add_overload_options(mea)
    run = mea.add_argument_group("run")
    run.add_argument(
        "--duration",
        type=options.positive_float,
        default=None,
        help=f"measured seconds (default {REAL_DURATION_S:g}, or what a schedule's length "
        "leaves after the warm-up)",
    )
    run.add_argument(
        "--warmup",
        type=options.nonneg_float,
        default=REAL_WARMUP_S,
        help=f"seconds discarded first (default {REAL_WARMUP_S:g})",
    )
    run.add_argument("--seed", type=options.nonneg_int, default=1, help="root seed (default 1)")
    options.add_scenario_options(run, ("timeline",))
    mea.add_argument("--json", action="store_true", help="print one JSON object")
    _server_knobs(mea)
    lab = mea.add_argument_group("load and output")
    lab.add_argument(
        "--timeout",
        type=options.positive_float,
        default=30.0,
        help="seconds a request may take before it counts as timed out (default 30)",
    )
    lab.add_argument(
        "--sources",
        type=options.positive_int,
        default=4,
        help="source addresses 127.0.0.1..k to spread connections over (default 4)",
    )
    lab.add_argument(
        "--pacing",
        type=options.choice("PACING", PACINGS),
        default=DEFAULT_PACING,
        help="how the load generator times its sends and answers: timer (the monotonic "
        "clock and a timerfd: on time, no spin; Linux) or loop (uvloop's whole-millisecond "
        f"clock, spinning before each send: runs before December 2026) (default {DEFAULT_PACING})",
    )
    lab.add_argument(
        "--sizes",
        type=_size_pair,
        default=(200, 1000),
        metavar="A,B",
        help="memory: the two counts whose difference gives each unit's cost",
    )
    lab.add_argument(
        "--runtime",
        type=options.choice("RUNTIME", _runtimes()),
        default="cpython",
        help=f"memory: whose units to measure: {', '.join(_runtimes())} (default cpython)",
    )
    lab.add_argument(
        "--no-save", action="store_true", help="do not save under $SIMLAB_DATA/measurements/"
    )
    lab.add_argument("--out", type=Path, help="directory for the saved run")
    mea.set_defaults(run=measure_command)


def _add_calibrate(sub: argparse._SubParsersAction[options.Parser]) -> None:
    cal = sub.add_parser("calibrate", help=COMMANDS["calibrate"])
    cal.add_argument(
        "--runtime",
        default="cpython",
        type=options.choice("RUNTIME", _runtimes()),
        help="whose profile: cpython (simlab's own servers) or a runtime fitted from its "
        f"peers: {', '.join(r for r in _runtimes() if r != 'cpython')} (default cpython)",
    )
    cal.add_argument(
        "--name",
        default=None,
        type=_profile_name,
        help="profile name: writes $SIMLAB_DATA/profiles/NAME.json (default: the runtime's)",
    )
    cal.add_argument(
        "--quick", action="store_true", help="a smaller grid (about 3 minutes; cpython only)"
    )
    cal.add_argument(
        "--refit",
        action="store_true",
        help=(
            "fit again from the runs kept in the existing profile, without measuring "
            "(but a benchmark the profile lacks: the probe's cost and the GIL's wake-ups, "
            "seconds each; the close wait, a few short real runs)"
        ),
    )
    cal.add_argument(
        "--measure-missing",
        action="store_true",
        help=(
            "with --refit: also measure the grid's runs the profile lacks (runs added "
            "to the grid since it was measured), then fit them all"
        ),
    )
    gate_options(cal)
    cal.add_argument("--json", action="store_true", help="print the profile as JSON")
    cal.set_defaults(run=calibrate_command)


def _add_validate(sub: argparse._SubParsersAction[options.Parser]) -> None:
    val = sub.add_parser("validate", help=COMMANDS["validate"])
    val.add_argument(
        "--platform", default="cpython", help="profile name or file to validate (default cpython)"
    )
    val.add_argument("--quick", action="store_true", help="a smaller grid (about 4 minutes)")
    val.add_argument(
        "--repeats",
        type=options.positive_int,
        default=3,
        help="real runs of each case, for the measured noise (default 3)",
    )
    gate_options(val)
    val.add_argument("--json", action="store_true", help="print rows and summary as JSON")
    val.add_argument(
        "--out", type=Path, help="directory for the report (default $SIMLAB_DATA/validation/)"
    )
    val.set_defaults(run=validate_command)


def _add_usl(sub: argparse._SubParsersAction[options.Parser], targets: tuple[str, ...]) -> None:
    usl = sub.add_parser("usl", help=COMMANDS["usl"])
    # Only targets whose resembled model exists can have a simulated curve.
    fittable = tuple(t for t in targets if _resembles(t) in MODEL_NAMES)
    usl.add_argument(
        "target",
        type=options.choice("TARGET", fittable),
        metavar="TARGET",
        help=", ".join(fittable),
    )
    usl.add_argument(
        "--levels",
        type=_int_list,
        default=None,
        help="concurrency levels (default 1,2,4,8,16,32,64; --quick 1,2,4,8,16)",
    )
    usl.add_argument(
        "--cpu-ms", type=options.nonneg_float, default=2.0, help="CPU per request (default 2)"
    )
    usl.add_argument(
        "--io-ms", type=options.nonneg_float, default=5.0, help="backend call (default 5)"
    )
    usl.add_argument(
        "--calls", type=options.nonneg_int, default=1, help="backend calls (default 1)"
    )
    usl.add_argument("--platform", default="cpython", help="profile for the simulated curve")
    usl.add_argument(
        "--duration", type=options.positive_float, default=4.0, help="seconds per level"
    )
    usl.add_argument(
        "--warmup", type=options.nonneg_float, default=1.0, help="seconds per level first"
    )
    usl.add_argument("--quick", action="store_true", help="fewer levels")
    usl.add_argument("--json", action="store_true", help="print the result as JSON")
    options.add_scenario_options(usl.add_argument_group("architecture"), options.ARCHITECTURE)
    usl.set_defaults(run=usl_command)


def _server_knobs(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("real server")
    g.add_argument(
        "--request-timeout",
        type=options.positive_float,
        default=10.0,
        help="seconds a started request may take to arrive (slow clients; default 10)",
    )
    g.add_argument(
        "--stack-kib",
        type=options.nonneg_int,
        default=0,
        help="stack reserved per thread, KiB (default: the system's, 8 MiB)",
    )
    g.add_argument(
        "--switch-interval-ms",
        type=options.positive_float,
        default=None,
        help="CPython's switch interval in simlab's own servers (sys.setswitchinterval; "
        "default Python's, 5 ms): how often a thread waiting for the GIL wakes",
    )
    g.add_argument("--uvloop", action="store_true", help="async: run on uvloop")
    g.add_argument(
        "--httptools",
        action="store_true",
        help="parse HTTP with httptools (C, as uvicorn does) instead of h11",
    )


def _profile_name(text: str) -> str:
    if not text or not all(c.isalnum() or c in "-_." for c in text) or text.startswith("."):
        raise argparse.ArgumentTypeError(f"must be letters, digits, '-', '_' or '.', got {text!r}")
    return text


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be integers A,B,..., got {text!r}") from None
    if len(values) < 4 or any(v < 1 or v > 10_000 for v in values) or values != sorted(set(values)):
        raise argparse.ArgumentTypeError(
            f"must be at least 4 increasing integers in 1..10000, got {text!r}"
        )
    return values


def _size_pair(text: str) -> tuple[int, int]:
    try:
        a, b = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be two integers A,B, got {text!r}") from None
    if not 1 <= a < b <= 20_000:
        raise argparse.ArgumentTypeError(f"must satisfy 1 <= A < B <= 20000, got {text!r}")
    return a, b


def _platform(spec: str) -> None:
    """Fail here, naming --platform, when a profile is missing or corrupt (before any run)."""
    try:
        load_platform(spec)
    except UserError as exc:
        raise UserError(f"--{exc}") from None


# ------------------------------------------------------------------ commands


def serve_command(args: argparse.Namespace) -> int:
    from simlab.real import peers  # noqa: PLC0415
    from simlab.real.options import ServerOptions  # noqa: PLC0415
    from simlab.real.processes import Managed, python  # noqa: PLC0415
    from simlab.real.runner import run_server  # noqa: PLC0415

    arch = architecture(
        options.given(args, (*options.ARCHITECTURE, *options.OVERLOAD["server limits"]))
    )
    lim = arch.limits
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
            max_inflight=lim.max_inflight if lim is not None else None,
            queue_deadline=lim.queue_deadline if lim is not None else None,
            offload=lim.offload if lim is not None else False,
            switch_interval=_seconds(args.switch_interval_ms),
        )
        say(
            f"serving {args.model} on http://127.0.0.1:{args.port or '<port>'}/work"
            f"?cpu_ms=1&io_ms=50&calls=1 (backend on {backend_port}); SIGTERM or Ctrl-C stops it"
        )
        try:
            run_server(opts)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(f"--port: {args.port} is already in use") from None
            raise
    finally:
        if backend is not None:
            backend.stop()
    return 0


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else ms / 1e3


def _serve_peer(args: argparse.Namespace, arch: Architecture, backend_port: int) -> int:
    """A peer in the foreground until Ctrl-C or SIGTERM (or until it dies: exit 1)."""
    from simlab.real import peers  # noqa: PLC0415
    from simlab.real.processes import free_port, port_is_free  # noqa: PLC0415

    if args.switch_interval_ms is not None:
        raise UserError(f"--switch-interval-ms: for simlab's own servers, not {args.model}")
    port = args.port or free_port()
    if not port_is_free(port):
        raise UserError(f"--port: {port} is already in use")
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
        say(
            f"serving {peer.name} ({peer.resembles} on {peer.platform}) on "
            f"http://127.0.0.1:{port}/work?cpu_ms=1&io_ms=50&calls=1 (backend on "
            f"{backend_port}); SIGTERM or Ctrl-C stops it"
        )
        print(f"READY {port}", flush=True)
        code = server.proc.wait()
        raise RunFailed(f"{peer.name} exited with {code}: {server.stop().strip()[-500:]}")
    except KeyboardInterrupt:
        return 0  # the way a foreground server is meant to end
    finally:
        server.stop()


def measure_command(args: argparse.Namespace) -> int:
    if args.target == "memory":
        return memory_command(args)
    from simlab.real.measure import MeasureOptions, measure  # noqa: PLC0415

    s = build(options.given(args, SCENARIO))
    duration = args.duration
    if duration is None:
        span = s.workload.schedule.span if s.workload.schedule is not None else None
        duration = max(span - args.warmup, 1.0) if span is not None else REAL_DURATION_S
    opts = MeasureOptions(
        target=args.target,
        workload=s.workload,
        architecture=s.architecture,
        duration=duration,
        timeline=s.run.timeline,
        warmup=args.warmup,
        seed=args.seed,
        timeout=args.timeout,
        sources=args.sources,
        request_timeout=args.request_timeout,
        stack_kib=args.stack_kib,
        uvloop=args.uvloop,
        parser="httptools" if args.httptools else "h11",
        switch_interval_ms=args.switch_interval_ms,
        pacing=args.pacing,
        save=not args.no_save,
        out_dir=args.out or measurements_dir(),
    )
    result = measure(opts, progress=say)
    if args.json:
        print_json(result.to_dict())
        return 0
    _print_measure(result.summary, result.saved_to)
    from simlab.cli.simulate import overload_lines  # noqa: PLC0415

    for line in overload_lines(result.summary):
        console().print(line)
    return 0


def _print_measure(s: MeasuredSummary, saved_to: Path | None) -> None:
    from rich.table import Table  # noqa: PLC0415 - rich loads when a table is printed

    out = console()
    lat, q, th, mem = s.latency_ms, s.queue_delay_ms, s.threads, s.memory_mib
    t = Table(title=f"measured: {s.model} (resembles {s.resembles})", title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    rows = [
        ("offered / served (req/s)", f"{fmt(s.offered_rps)} / {fmt(s.throughput_rps)}"),
        (
            "latency mean / p50 / p99 (ms)",
            f"{fmt(lat.mean, 2)} / {fmt(lat.p50, 2)} / {fmt(lat.p99, 2)}",
        ),
        ("queueing delay mean / p99 (ms)", f"{fmt(q.mean, 2)} / {fmt(q.p99, 2)}"),
        ("threads peak / busy", f"{fmt(th.peak, 0)} / {fmt(th.busy_mean, 2)}"),
        ("processes peak", fmt(s.processes.peak, 0)),
        ("memory peak, user + kernel (MiB)", fmt(mem.peak)),
        ("user (PSS) / kernel peak (MiB)", f"{fmt(mem.user_peak)} / {fmt(mem.kernel_peak)}"),
        ("virtual peak (MiB)", fmt(mem.virtual_peak)),
        (
            "connections opened / failed",
            f"{fmt(s.connections.opened)} / {fmt(s.connections.failed)}",
        ),
        ("CPU utilisation", fmt(s.cpu_utilization, 3)),
        (
            "Little: in flight vs X x W",
            f"{fmt(s.little.in_flight_sampled, 2)} vs {fmt(s.little.throughput_x_latency, 2)}",
        ),
        (
            "completed / dropped / failed",
            f"{fmt(s.completed)} / {fmt(s.dropped)} / {fmt(s.incomplete)}",
        ),
    ]
    if s.run_queue is not None:
        rq = s.run_queue
        rows.append(
            (
                "wait for a core a request, threads / one queue (ms)",
                f"{fmt(rq.wait_ms_per_request, 2)} / {fmt(rq.shared_queue_ms_per_request, 2)}",
            )
        )
    if s.speed_reference is not None:
        ref = s.speed_reference
        speed = f"{fmt(ref.before_ops_s)} / {fmt(ref.after_ops_s)}"
        rows.append(("machine speed before / after (ops/s)", speed))
    for name, value in rows:
        t.add_row(name, value)
    out.print(t)
    if s.stable:
        out.print("[green]kept up[/] with the offered load")
    else:
        out.print(f"[red]did not keep up[/]: {'; '.join(s.stability.reasons)}")
    for w in s.warnings:
        out.print(f"[yellow]warning[/]: {w}")
    if saved_to is not None:
        out.print(f"[dim]saved to {shown(saved_to)}[/]")


# The cpython units of memory.py: their labels, and the timing that goes with each.
CPYTHON_UNITS = {
    "thread": ("idle thread (blocked in recv)", "thread_create_start_join_us"),
    "connection": ("idle asyncio connection", None),
    "fork": ("forked child (blocked)", "fork_exit_wait_us"),
    "coroutine": ("pending asyncio task", "task_create_run_us"),
}


def memory_command(args: argparse.Namespace) -> int:
    from simlab.real.memory import measure_memory  # noqa: PLC0415
    from simlab.real.peers.units import measure_units, runtime_versions  # noqa: PLC0415

    runtime = args.runtime
    a, b = args.sizes
    versions = runtime_versions(runtime)  # a missing runtime stops here, in one line
    say(f"measuring {runtime} memory per unit at {a:,} and {b:,} units")
    if runtime == "cpython":
        result = measure_memory(args.sizes, stack_kib=args.stack_kib)
        extra = measure_units("cpython", args.sizes)
        result["per_unit_kib"].update(extra["per_unit_kib"])
        result["units"] = extra["units"]
    else:
        result = measure_units(runtime, args.sizes)
    result["runtime"] = runtime
    result["versions"] = versions
    result["machine"] = machine()
    result["git_revision"] = git_revision()
    stamp = utc_stamp()
    result["started"] = stamp
    if not args.no_save:
        out_dir: Path = args.out or measurements_dir()
        # cpython keeps the record name it always had.
        name = f"memory-{stamp}.json" if runtime == "cpython" else f"memory-{runtime}-{stamp}.json"
        path = out_dir / name
        atomic_write_json(path, result)
        result["saved_to"] = shown(path)
    if args.json:
        print_json(result)
        return 0
    _print_memory(result)
    return 0


def _print_memory(result: dict[str, Any]) -> None:
    from rich.table import Table  # noqa: PLC0415 - rich loads when a table is printed

    a, b = result["sizes"]
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
        kernel = fmt(v["kernel"])
        if "kernel_client_share" in v:
            kernel += f" (-{v['kernel_client_share']:.1f} client)"
        t.add_row(
            label, fmt(v["rss"]), fmt(v["uss"]), fmt(v["pss"]), fmt(v["vms"]), kernel,
            fmt(create, 2),
        )  # fmt: skip
    out = console()
    out.print(t)
    out.print(f"[dim]kernel memory: {result.get('kernel_method', '')}[/]")
    if "fork_law" in result:
        from simlab.real.forklaw import fit_fork_law  # noqa: PLC0415

        law = fit_fork_law(result["fork_law"]["points"])
        (b_lo, b_hi), (s_lo, s_hi) = law.ci95
        out.print(
            f"kernel per fork = {law.values[0]:.1f} [{b_lo:.1f}, {b_hi:.1f}] KiB + "
            f"{law.values[1]:.2f} [{s_lo:.2f}, {s_hi:.2f}] KiB per MiB of the parent's PSS"
        )
    if "backlog" in result:
        rows = result["backlog"]["repeats"]
        waiting = [r["waiting_kib"]["kernel"] for r in rows]
        accepted = [r["at_accept_kib"]["kernel"] for r in rows]
        out.print(
            f"a connection in the listen backlog: {min(waiting):.2f}-{max(waiting):.2f} KiB "
            f"charged while it waits, {min(accepted):.2f}-{max(accepted):.2f} at accept()"
        )
    if "short" in result:
        held = [r["held_after_close_kib"]["kernel"] for r in result["short"]["repeats"]]
        out.print(
            f"a closed short connection: {min(held):.2f}-{max(held):.2f} KiB left in the "
            "server's cgroup (its TIME_WAIT socket is charged to none)"
        )
    if "saved_to" in result:
        out.print(f"[dim]saved to {result['saved_to']}[/]")


def _how(p: dict[str, Any]) -> str:
    """How a profile number was obtained, in a few words: an assumption (not
    identified by the runs, the preset's value kept) says so before anything else."""
    if p.get("identified") is False:
        return "not identified: the preset's value, an assumption"
    how = str(p.get("note") or p.get("method") or "fitted")
    return how.split(",", maxsplit=1)[0]


def calibrate_command(args: argparse.Namespace) -> int:
    from rich.table import Table  # noqa: PLC0415 - rich loads when a table is printed

    from simlab.calibrate import calibrate  # noqa: PLC0415

    name = args.name or args.runtime
    if args.measure_missing and not args.refit:
        raise UserError("--measure-missing: only with --refit (a full calibration measures all)")
    if args.runtime != "cpython":
        from simlab.calibrate_runtime import calibrate_runtime  # noqa: PLC0415

        if args.measure_missing:
            raise UserError("--measure-missing: cpython only (a runtime's grid is measured whole)")
        if args.quick:
            raise UserError("--quick: a runtime's grid has no smaller version; leave it out")
        with steps(f"calibrating {args.runtime}") as tick:
            profile = calibrate_runtime(args.runtime, name=name, refit=args.refit, progress=tick)
    else:
        gate = gate_from(args, _last_profile(name))
        with steps("calibrating") as tick:
            profile = calibrate(
                name,
                quick=args.quick,
                refit=args.refit,
                measure_missing=args.measure_missing,
                progress=tick,
                gate=gate,
            )
    if args.json:
        print_json(profile)
        return 0
    t = Table(title=f"profile {name}", title_justify="left")
    for col in ("parameter", "value", "95% CI", "how"):
        t.add_column(col, justify="left" if col in ("parameter", "how") else "right")
    for key, p in profile["parameters"].items():
        if isinstance(p, dict):
            interval = p.get("ci95")
            t.add_row(
                key,
                f"{p['value']:,.2f}",
                "-" if interval is None else f"[{interval[0]:,.2f}, {interval[1]:,.2f}]",
                _how(p),
            )
        else:
            t.add_row(key, str(p), "-", "this machine")
    console().print(t)
    return 0


def _last_profile(name: str) -> dict[str, Any]:
    """The profile a calibration replaces (its speed is the gate's usual
    speed), or nothing: a first calibration runs ungated."""
    from simlab.platforms import profile_path  # noqa: PLC0415
    from simlab.validate import _profile_extras  # noqa: PLC0415

    path = profile_path(name)
    return _profile_extras(str(path)) if path.exists() else {}


def validate_command(args: argparse.Namespace) -> int:
    from rich.table import Table  # noqa: PLC0415 - rich loads when a table is printed

    from simlab.validate import (  # noqa: PLC0415
        METRICS,
        _profile_extras,
        interval_text,
        validate,
    )

    _platform(args.platform)
    gate = gate_from(args, _profile_extras(args.platform))
    with steps("validating") as tick:
        result = validate(
            args.platform,
            quick=args.quick,
            repeats=args.repeats,
            out_dir=args.out,
            progress=tick,
            gate=gate,
        )
    if args.json:
        print_json({"rows": result["rows"], "summary": result["summary"]})
        return 0
    out = console()
    t = Table(title="held-out configurations: predicted vs measured", title_justify="left")
    for col in ("model", "config", "metric", "predicted", "measured", "error", "noise", "counts"):
        t.add_column(col, justify="left" if col in ("model", "config", "metric") else "right")
    for r in result["rows"]:
        t.add_row(
            r["model"],
            r["config"],
            r["metric"],
            _num(r["predicted"]),
            _num(r["measured"]),
            _pct(r["rel_error"]),
            _pct(r["noise"]),
            "yes" if r["evidence"] else "no",
        )
    out.print(t)
    s = Table(
        title="median (worst) error per model, evidence only "
        "(red: over the goal beyond the runs' noise; yellow: within it)",
        title_justify="left",
    )
    s.add_column("model")
    for metric in METRICS:
        s.add_column(metric, justify="right")
    for model, per in result["summary"]["models"].items():
        cells = []
        for metric in METRICS:
            v = per[metric]
            if v["median"] is None:
                cells.append("-")
                continue
            # Yellow: over the goal, but other runs of the same cases could meet it.
            colour = "green" if v["met"] else "yellow" if v.get("beyond_noise") is False else "red"
            cells.append(f"[{colour}]{v['median']:.1%}[/] ({v['worst']:.0%})")
        s.add_row(model, *cells)
    out.print(s)
    g = Table(title="goals: median error over every model", title_justify="left")
    for col in ("metric", "median", "95% over the runs", "goal", "met"):
        g.add_column(col)
    for metric, v in result["summary"]["metrics"].items():
        met = "-" if v["met"] is None else ("[green]yes[/]" if v["met"] else "[red]no[/]")
        g.add_row(
            metric, _pct(v["median"]), interval_text(v.get("median_ci95")), f"{v['goal']:.0%}", met
        )
    out.print(g)
    return 0


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _num(x: Any) -> str:
    if x is None:
        return "-"
    return f"{x:,.3g}" if abs(x) < 100 else f"{x:,.0f}"


def usl_command(args: argparse.Namespace) -> int:
    from rich.table import Table  # noqa: PLC0415 - rich loads when a table is printed

    from simlab.real.peers import with_own_costs  # noqa: PLC0415
    from simlab.usl import usl_study  # noqa: PLC0415
    from simlab.validate import _profile_extras  # noqa: PLC0415

    arch = architecture(options.given(args, options.ARCHITECTURE))
    levels = args.levels or ([1, 2, 4, 8, 16] if args.quick else [1, 2, 4, 8, 16, 32, 64])
    _platform(args.platform)
    # A peer is simulated with its own costs where the profile has them.
    platform = with_own_costs(
        args.target, load_platform(args.platform), _profile_extras(args.platform)
    )
    with steps("usl") as tick:
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
        print_json(result)
        return 0
    out = console()
    t = Table(title=f"{args.target}: throughput against concurrency", title_justify="left")
    for col in ("N", "measured req/s", "simulated req/s"):
        t.add_column(col, justify="right")
    for p in result["points"]:
        t.add_row(str(p["n"]), _num(p["measured"]), _num(p["simulated"]))
    out.print(t)
    for which in ("measured_fit", "simulated_fit"):
        f = result[which]
        interval = f["ci95"]
        out.print(
            f"{which.split('_')[0]}: sigma {f['sigma']:.4f} "
            f"[{interval['sigma'][0]:.4f}, {interval['sigma'][1]:.4f}], "
            f"kappa {f['kappa']:.2e} [{interval['kappa'][0]:.2e}, {interval['kappa'][1]:.2e}], "
            f"lambda {f['lambda']:.1f} req/s; N* = {f['peak_concurrency']:.3g}, "
            f"ceiling {f['ceiling']:,.0f} req/s"
        )
    out.print(f"[dim]plot: {result.get('plot', '')}[/]")
    return 0
