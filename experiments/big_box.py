"""How many long connections does the notes' 24-core, 64 GB server hold, and can it hold a million?

The notes: "一台多核(比如24核)内存大点的(比如64G内存)的现代服务器，可以支持十几万的长连接"
(a modern 24-core server with 64 GB holds a hundred thousand and more long
connections), and "单机如何处理高并发？百万？" (a million on one machine?).

Two questions, answered by the planner's inverse questions (``simlab plan
--max-connections`` and ``--max-rate``) on every platform simlab has (the
calibrated cpython profile, with and without the GIL, and the jvm and go
presets), for every architecture, with one process and with one per core:

1. **At the notes' rate** (100 requests/s per 10,000 connections), the most
   connections held within the p99 goal, and which limit comes first: memory
   (64 GiB resident), cores (24; CPU saturates or p99 misses), the GIL (the
   same design without the GIL holds more), file descriptors (fs.nr_open per
   process) or kernel threads (kernel.threads-max for 64 GiB).
2. **A million connections**: which designs fit in 64 GiB (and under the fd
   and thread limits), and the highest request rate each then serves.

Simulation only (the planner's analytic estimates): no machine here has 24
cores and 64 GB. Run: ``python experiments/big_box.py [--quick]``.
"""

from __future__ import annotations

import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

import simlab
from simlab import Architecture, Fixed, Workload
from simlab.experiment import Experiment, arguments, rewrite_findings
from simlab.findings import joined
from simlab.models import get_model
from simlab.planner import Goals, max_connections, max_rate
from simlab.planner.estimate import estimate, memory
from simlab.planner.search import Search
from simlab.platforms import platform_names
from simlab.registry import MODEL_NAMES

NAME = "big_box"
SEED = 1
CORES = 24
MEMORY_GIB = 64.0
NOTES_RATE_PER_CONNECTION = 100.0 / 10_000  # "10K个连接，可能每秒只有100个请求"
CPU_MS, IO_MS = 1.0, 20.0  # "少量CPU消耗", "单个业务请求通常很快，毫秒级别"
P99_GOAL_MS = 100.0
MILLION = 1_000_000
PROCESSES = (1, CORES)  # one process, or one per core
QUICK_PROCESSES = (CORES,)
BUSY_WORKERS_HEADROOM = 2.0  # pool size: twice the busy workers at a million connections
MIN_WORKERS = 32
# Linux limits on the notes' box: fs.nr_open (the most fds one process may open,
# the kernel default 1,048,576) and kernel.threads-max, which the kernel sets to
# RAM / (8 x THREAD_SIZE): 64 GiB / (8 x 16 KiB) = 524,288 on x86-64.
FD_PER_PROCESS = 1_048_576
FD_RESERVED = 64  # listening socket, backend pool, logs, the interpreter's own
THREADS_MAX = int(MEMORY_GIB * 2**30 / (8 * 16 * 2**10))
# Platforms whose "threads" are scheduled in user space (Go's goroutines, see
# simlab.platforms.go): they do not count against the kernel's threads-max.
USER_SPACE_THREADS = ("go",)
FIXED_POINT_ROUNDS = 3  # the rate follows the connections: a few rounds settle it
GIL_GAIN = 1.10  # the GIL is the limit when the same design holds 10% more without it
HUNDRED_K = 100_000
FEW_CORES_SHARE = 0.5  # a CPU limit with under half the cores busy is one process's limit
UNBOUNDED = 10**12  # a limit that does not apply
DEAL = Search(max_processes=1).deal()


def workload(connections: int) -> Workload:
    return Workload(
        connections=connections,
        rate=connections * NOTES_RATE_PER_CONNECTION,
        cpu=Fixed(CPU_MS / 1e3),
        io=Fixed(IO_MS / 1e3),
        calls=1,
    )


def architecture(model: str, processes: int) -> Architecture:
    pooled = get_model(model).pooled
    busy = MILLION * NOTES_RATE_PER_CONNECTION * (CPU_MS + IO_MS) / 1e3
    workers = max(MIN_WORKERS, math.ceil(BUSY_WORKERS_HEADROOM * busy / processes))
    return Architecture(workers=workers if pooled else 1, processes=processes)


def platforms(quick: bool) -> list[tuple[str, simlab.Platform]]:
    """(label, platform) on the notes' box: every platform simlab has, 24 cores;
    a platform with a GIL also without it, to tell the GIL from the cores."""
    out = []
    names = [n for n in platform_names() if n != "ideal"]
    for name in names[:1] if quick else names:
        p = simlab.load_platform(name).with_(cores=CORES)
        out.append((name, p))
        if p.gil:
            out.append((f"{name} (no GIL)", p.with_(gil=False)))
    return out


def sized(model: str, n: int, arch: Architecture) -> Architecture:
    """``arch`` grown where the model must be to hold ``n`` connections (a
    thread-pool that owns persistent connections needs a worker for each)."""
    return get_model(model).sized(workload(max(n, 1)), arch, DEAL)


def cpu_limit(model: str, platform: simlab.Platform, arch: Architecture, n: int) -> tuple[int, str]:
    """The most connections the cores serve at the notes' rate within the p99
    goal, with the architecture sized for ``n`` connections: the highest rate
    the planner finds, times 100 connections per req/s."""
    goals = Goals(p99_ms=P99_GOAL_MS)
    w = workload(max(n, 1))
    (r,) = max_rate(
        w, platform, goals, models=[model], architecture=sized(model, n, arch), check="analytic"
    )
    if not math.isfinite(r.max_rate_rps):
        return UNBOUNDED, r.limit
    return int(r.max_rate_rps / NOTES_RATE_PER_CONNECTION), r.limit


def memory_limit(model: str, platform: simlab.Platform, arch: Architecture) -> int:
    """The most connections 64 GiB holds at the notes' rate for that many."""
    goals = Goals(p99_ms=P99_GOAL_MS, memory_gib=MEMORY_GIB)
    n = HUNDRED_K
    for _ in range(FIXED_POINT_ROUNDS):
        got = max_connections(workload(n), platform, goals, models=[model], architecture=arch)
        n = max(1, int(got[model] or 0))
    return n


def kernel_limits(model: str, platform: simlab.Platform, arch: Architecture) -> dict[str, int]:
    """The design's own cap (an iterative server holds one connection per
    process), and the kernel's: a design whose threads (or processes) grow
    with its connections counts them against threads-max; each process's
    connections count against nr_open."""
    probe = 10_000
    threads_at_probe, _, _ = memory(model, workload(probe), platform, sized(model, probe, arch))
    cap = get_model(model).serves_at_most(workload(probe), arch)
    return {
        "design": UNBOUNDED if cap is None else cap,
        "fds": arch.processes * (FD_PER_PROCESS - FD_RESERVED),
        "threads": THREADS_MAX
        if threads_at_probe >= probe and platform.name not in USER_SPACE_THREADS
        else UNBOUNDED,
    }


def held(model: str, label: str, platform: simlab.Platform, procs: int) -> dict[str, Any]:
    arch = architecture(model, procs)
    # The design's own cap first, so that a tie (the planner's memory answer
    # is capped by the same design limit) names the design.
    limits = kernel_limits(model, platform, arch)
    limits["memory"] = memory_limit(model, platform, arch)
    # The cores are asked at the most connections the other limits allow.
    others = min(limits.values())
    cores, why = cpu_limit(model, platform, arch, others)
    limits["cores"] = cores
    first = min(limits, key=lambda k: limits[k])
    n = limits[first]
    if n == 0 and limits["design"] < UNBOUNDED:
        # Nothing is served even within the design's own cap (an iterative
        # server answers one long connection per process and no other): the
        # design, not the cores, is what stops it.
        first = "design"
    if first == "cores" and platform.gil:
        free, _ = cpu_limit(model, platform.with_(gil=False), arch, others)
        if free >= GIL_GAIN * max(cores, 1):
            first = "GIL"
    final = sized(model, n, arch)
    threads, resident, _ = memory(model, workload(max(n, 1)), platform, final)
    # The cores busy at the connections held: all 24 for a design the cores
    # stop, one for a single loop (the rest of the box idles).
    busy = estimate(model, workload(max(n, 1)), platform, final, DEAL).loads.get("cores", 0.0)
    return {
        "question": "notes-rate",
        "platform": label,
        "gil": platform.gil,
        "model": model,
        "processes": procs,
        "workers": final.workers if get_model(model).pooled else None,
        "connections_held": n,
        "limit": first,
        "memory_limit": limits["memory"],
        "cpu_limit": limits["cores"],
        "fd_limit": limits["fds"],
        "threads_limit": limits["threads"],
        "design_limit": limits["design"],
        "cpu_reason": why,
        "rate_rps": n * NOTES_RATE_PER_CONNECTION,
        "resident_gib": resident / 1024,
        "threads": threads,
        "cores_busy": busy * CORES,
    }


def million(model: str, label: str, platform: simlab.Platform, procs: int) -> dict[str, Any]:
    arch = sized(model, MILLION, architecture(model, procs))
    w = workload(MILLION)
    threads, resident, _ = memory(model, w, platform, arch)
    kernel = kernel_limits(model, platform, architecture(model, procs))
    fits = resident <= MEMORY_GIB * 1024 and min(kernel.values()) >= MILLION
    rate, why = math.nan, ""
    if fits:
        (r,) = max_rate(
            w,
            platform,
            Goals(p99_ms=P99_GOAL_MS),
            models=[model],
            architecture=arch,
            check="analytic",
        )
        rate, why = r.max_rate_rps, r.limit
    over = [k for k, v in kernel.items() if v < MILLION]
    if resident > MEMORY_GIB * 1024:
        over.insert(0, "memory")
    return {
        "question": "million",
        "platform": label,
        "gil": platform.gil,
        "model": model,
        "processes": procs,
        "workers": arch.workers if get_model(model).pooled else None,
        "connections_held": MILLION if fits else None,
        "fits": fits,
        "resident_gib": resident / 1024,
        "threads": threads,
        "fd_limit": kernel["fds"],
        "threads_limit": kernel["threads"],
        "over": ",".join(over),
        "max_rate_rps": rate,
        "cpu_reason": why,
    }


def findings(df: pd.DataFrame) -> str:
    """Every sentence chosen by a rule from the table."""
    notes = df[df["question"] == "notes-rate"]
    out = [
        "# The notes' big box: 24 cores and 64 GiB",
        "",
        f"At the notes' rate (100 requests/s per 10,000 connections; {CPU_MS:g} ms CPU and "
        f"one {IO_MS:g} ms backend call per request; p99 within {P99_GOAL_MS:g} ms), the most "
        "connections each design holds, and the limit it meets first:",
        "",
        "| platform | model | processes | connections held | first limit | memory limit | "
        "CPU limit | cores busy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in notes.iterrows():
        busy = r.get("cores_busy", math.nan)
        out.append(
            f"| {r['platform']} | {r['model']} | {int(r['processes'])} | "
            f"{int(r['connections_held']):,} | {r['limit']} | {int(r['memory_limit']):,} | "
            f"{int(r['cpu_limit']):,} | {'-' if pd.isna(busy) else f'{float(busy):.1f}'} |"
        )
    out.append("")
    many = notes[notes["connections_held"] >= HUNDRED_K]
    out.append(
        f"{len(many)} of {len(notes)} designs hold {HUNDRED_K:,} connections or more"
        + (
            f": {joined([f'{r.model} on {r.platform} ({int(r.processes)}p)' for r in many.itertuples()])}."  # noqa: E501
            if len(many)
            else "."
        )
    )
    for limit, g in notes.groupby("limit", sort=True):
        out.append(
            f"- first limit **{limit}** ({len(g)} designs): "
            + joined([f"{r.model} on {r.platform} ({int(r.processes)}p)" for r in g.itertuples()])
        )
    if "cores_busy" in notes.columns:
        cpu = notes[notes["limit"] == "cores"]
        short = cpu[cpu["cores_busy"] < CORES * FEW_CORES_SHARE]
        if len(short):
            out.append(
                f"Of the {len(cpu)} designs the CPU stops, {len(short)} stop with fewer than "
                f"{CORES * FEW_CORES_SHARE:.0f} of the {CORES} cores busy, each with what the "
                "planner says gives way just above its limit: "
                + joined(
                    [
                        f"{r.model} on {r.platform} ({int(r.processes)}p, "
                        f"{float(r.cores_busy):.1f} cores: {r.cpu_reason})"
                        for r in short.itertuples()
                    ]
                )
                + "."
            )
    gil = notes[notes["limit"] == "GIL"]
    if len(gil):
        free = notes[~notes["gil"].astype(bool)]
        pairs = []
        for r in gil.itertuples():
            twin = free[
                (free["model"] == r.model)
                & (free["processes"] == r.processes)
                & (free["platform"].str.startswith(str(r.platform)))
            ]
            if len(twin):
                pairs.append(
                    f"{r.model} ({int(r.processes)}p) {int(r.connections_held):,} with the GIL, "
                    f"{int(twin['connections_held'].iloc[0]):,} without"
                )
        if pairs:
            out.append(
                "The GIL, not the cores, stops these designs (the notes' claim that threads use "
                f"every core holds only without it): {joined(pairs)}."
            )
    mil = df[df["question"] == "million"]
    if len(mil):
        fit = mil[mil["fits"].astype(bool)]
        out += ["", "## A million connections", ""]
        out.append(
            f"{len(fit)} of {len(mil)} designs fit a million connections in {MEMORY_GIB:g} GiB "
            "(and under the fd and thread limits)."
        )
        for r in fit.itertuples():
            out.append(
                f"- {r.model} on {r.platform} ({int(r.processes)}p): "
                f"{float(r.resident_gib):.1f} GiB resident, up to "
                f"{float(r.max_rate_rps):,.0f} req/s within the goal ({r.cpu_reason})"
            )
        no = mil[~mil["fits"].astype(bool)]
        if len(no):
            out.append(
                "Do not fit: "
                + joined(
                    [
                        f"{r.model} on {r.platform} ({int(r.processes)}p, "
                        f"{float(r.resident_gib):,.0f} GiB"
                        + (f", over the {r.over} limit" if r.over else "")
                        + ")"
                        for r in no.itertuples()
                    ]
                )
                + "."
            )
    out += [
        "",
        "Reproduce one row: `simlab plan --max-connections --memory-gib 64 --cores 24 "
        "--platform PLATFORM --connections N --rate N/100 --cpu-ms 1 --io-ms 20 "
        "--models MODEL --processes P --workers W` and `simlab plan --max-rate ...`.",
    ]
    return "\n".join(out) + "\n"


def figure(df: pd.DataFrame) -> Any:
    """Connections held by each design at the notes' rate, coloured by the first limit."""
    notes = df[df["question"] == "notes-rate"].reset_index(drop=True)
    labels = [f"{r.platform} {r.model} {int(r.processes)}p" for r in notes.itertuples()]
    limits = sorted(set(notes["limit"]))
    colours = {k: plt.get_cmap("tab10")(i) for i, k in enumerate(limits)}
    fig, ax = plt.subplots(figsize=(8, 0.22 * len(notes) + 1.5))
    held = notes["connections_held"].clip(lower=1)
    ax.barh(labels, held, color=[colours[k] for k in notes["limit"]])
    ax.axvline(HUNDRED_K, color="k", linestyle="--", linewidth=0.8)
    ax.axvline(MILLION, color="k", linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("connections held (24 cores, 64 GiB, 100 req/s per 10K, p99 <= 100 ms)")
    for k in limits:
        ax.barh([labels[0]], [0], color=colours[k], label=k)
    ax.legend(title="first limit", fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return fig


def _findings_from(df: pd.DataFrame, params: dict[str, Any]) -> str:
    return findings(df)


def main() -> None:
    args = arguments(__doc__ or "")
    if args.findings_only:
        rewrite_findings(NAME, _findings_from, args.out)
        return
    params = {
        "cores": CORES,
        "memory_gib": MEMORY_GIB,
        "rate_per_10k": NOTES_RATE_PER_CONNECTION * 10_000,
        "cpu_ms": CPU_MS,
        "io_ms": IO_MS,
        "p99_goal_ms": P99_GOAL_MS,
        "fd_per_process": FD_PER_PROCESS,
        "threads_max": THREADS_MAX,
    }
    procs_grid = QUICK_PROCESSES if args.quick else PROCESSES
    with Experiment(NAME, seed=SEED, quick=args.quick, params=params, out=args.out) as ex:
        for label, platform in platforms(args.quick):
            for model in MODEL_NAMES:
                for procs in procs_grid:
                    ex.add(**held(model, label, platform, procs))
                    ex.add(**million(model, label, platform, procs))
        ex.figure("held", figure(ex.results()))
        ex.findings(findings(ex.results()))


if __name__ == "__main__":
    main()
