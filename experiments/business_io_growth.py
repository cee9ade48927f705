"""As business I/O per request grows, where does the first generation become untenable?

The notes' history: nginx + PHP-FPM, Tomcat NIO and their kind (here
``reactor-pool``) took idle connections off threads, but a worker still
blocks for a request's whole backend wait. As that wait grows from 10 ms to
3 s at a fixed rate, the workers needed grow linearly (Little's law: busy
workers = rate x time per request), while ``async`` stays at a handful of
threads. For a memory budget, the planner finds the wait beyond which the
first generation no longer fits.

Run: ``python experiments/business_io_growth.py [--quick]``.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import plotly.express as px

import simlab
from simlab import Fixed, Workload
from simlab.experiment import Experiment, arguments
from simlab.planner import Goals, plan

SEED = 1
RATE = 1000.0  # requests/s, fixed
CPU_S = 0.001
IO_MS = tuple(float(x) for x in np.geomspace(10, 3000, 10).round(1))
QUICK_IO_MS = (10.0, 100.0, 1000.0)
CLIENTS = 10_000_000  # app users, one connection per request: no client-side queueing
SLACK = 1.5  # the p99 goal: 1.5x the request's own time, plus 20 ms
BUDGET_GIB = 0.25  # the memory budget the question asks about (resident)
RESERVED_BUDGET_GIB = 2.0  # and on reserved address space (1 MiB JVM stacks)
PLATFORM = "jvm"
CORES = 16
MODELS = ("reactor-pool", "async")


def main() -> None:
    args = arguments(__doc__ or "")
    io_grid = QUICK_IO_MS if args.quick else IO_MS
    check = "analytic" if args.quick else "des"
    platform = simlab.load_platform(PLATFORM).with_(cores=CORES)
    params = {
        "rate": RATE,
        "cpu_s": CPU_S,
        "platform": PLATFORM,
        "cores": CORES,
        "budget_gib": BUDGET_GIB,
        "check": check,
    }
    with Experiment(
        "business_io_growth", seed=SEED, quick=args.quick, params=params, out=args.out
    ) as ex:
        for io_ms in io_grid:
            w = Workload(
                connections=CLIENTS,
                rate=RATE,
                cpu=Fixed(CPU_S),
                io=Fixed(io_ms / 1e3),
                requests_per_connection=1,
            )
            goal = SLACK * (CPU_S * 1e3 + io_ms) + 20.0
            report = plan(
                w,
                platform,
                Goals(p99_ms=goal),
                models=MODELS,
                check=check,
                seed=SEED,
                replications=3,
                requests=3000,
            )
            for p in report.plans:
                ex.add(
                    io_ms=io_ms,
                    p99_goal_ms=goal,
                    model=p.model,
                    feasible=p.feasible,
                    workers=p.workers,
                    processes=p.processes,
                    threads=p.threads,
                    resident_mib=p.memory_mib,
                    reserved_mib=p.virtual_mib,
                    p99_ms=p.latency_ms.get("p99"),
                    little_busy=RATE * (CPU_S + io_ms / 1e3),
                    engine=p.engine,
                )
            print(
                f"io {io_ms:8.1f} ms: "
                + ", ".join(f"{p.model} {p.threads} threads" for p in report.plans)
            )
        _plots(ex)
        _findings(ex, platform)
    print(f"wrote {ex.target}")


def _plots(ex: Experiment) -> None:
    df = ex.table()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for model, part in df.groupby("model"):
        axes[0].plot(part["io_ms"], part["threads"], "o-", label=model)
        axes[1].plot(part["io_ms"], part["resident_mib"], "o-", label=f"{model} resident")
        axes[1].plot(part["io_ms"], part["reserved_mib"], "x--", label=f"{model} reserved")
    little = df[df["model"] == "reactor-pool"]
    axes[0].plot(
        little["io_ms"],
        little["little_busy"],
        ":",
        color="grey",
        label="Little: rate x time per request",
    )
    axes[1].axhline(BUDGET_GIB * 1024, color="red", lw=0.8, label=f"{BUDGET_GIB:g} GiB")
    for ax, label in zip(axes, ("threads needed", "MiB"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("backend wait per request (ms)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{RATE:g} req/s on {PLATFORM}: threads and memory as the business I/O grows")
    ex.figure("growth", fig)
    plt.close(fig)
    ex.html(
        "growth",
        px.line(df, x="io_ms", y="threads", color="model", log_x=True, log_y=True, markers=True),
    )


def _findings(ex: Experiment, platform: simlab.Platform) -> None:
    df = ex.table()
    rp = df[df["model"] == "reactor-pool"].set_index("io_ms")
    asy = df[df["model"] == "async"].set_index("io_ms")
    lo, hi = rp.index.min(), rp.index.max()
    over = rp[rp["resident_mib"] > BUDGET_GIB * 1024]
    over_reserved = rp[rp["reserved_mib"] > RESERVED_BUDGET_GIB * 1024]
    per_thread_kib = platform.thread_kib + platform.thread_kernel_kib
    # Little's law alone: workers ~ rate x (cpu + io); each costs per_thread_kib.
    little_io = (BUDGET_GIB * 1024 * 1024 / per_thread_kib / RATE - CPU_S) * 1e3
    little_reserved_io = (
        RESERVED_BUDGET_GIB * 1024 * 1024 / platform.stack_kib / RATE - CPU_S
    ) * 1e3
    ratio = rp.loc[hi, "threads"] / rp.loc[lo, "threads"]
    text = [
        "# Business I/O growth: the first generation against the second\n",
        f"At {RATE:g} requests/s on {PLATFORM} ({CORES} cores), as the backend wait per "
        f"request grows from {lo:g} ms to {hi:g} ms ({hi / lo:,.0f}x), the reactor-pool "
        f"needs from {rp.loc[lo, 'threads']:,.0f} to {rp.loc[hi, 'threads']:,.0f} threads "
        f"({ratio:,.0f}x: linear, as Little's law says; it predicts "
        f"{rp.loc[hi, 'little_busy']:,.0f} busy at {hi:g} ms), while async "
        + (
            f"stays at {asy['threads'].min():,.0f} threads.\n"
            if asy["threads"].min() == asy["threads"].max()
            else f"needs {asy['threads'].min():,.0f} to {asy['threads'].max():,.0f}.\n"
        ),
    ]
    if len(over):
        text.append(
            f"With a {BUDGET_GIB:g} GiB resident budget the first generation stops fitting at "
            f"about {over.index.min():g} ms per request in this grid "
            f"({over.iloc[0]['resident_mib']:,.0f} MiB); Little's law with "
            f"{per_thread_kib:.0f} KiB per thread puts the edge at {little_io:,.0f} ms."
        )
    else:
        text.append(
            f"Within the grid the reactor-pool stays under {BUDGET_GIB:g} GiB resident "
            f"(at most {rp['resident_mib'].max():,.0f} MiB); Little's law puts the edge at "
            f"{little_io:,.0f} ms per request."
        )
    if len(over_reserved):
        text.append(
            f" Counted on reserved stacks ({platform.stack_kib:.0f} KiB each), a "
            f"{RESERVED_BUDGET_GIB:g} GiB budget is exceeded from {over_reserved.index.min():g} "
            f"ms (Little: {little_reserved_io:,.0f} ms)."
        )
    text.append(
        f"\n\nPlans were {'confirmed by the DES' if not ex.quick else 'analytic (quick run)'}; "
        f"every plan met its p99 goal of 1.5x the request's own time plus 20 ms."
    )
    ex.findings("".join(text))


if __name__ == "__main__":
    main()
