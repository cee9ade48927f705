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

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import plotly.express as px

import simlab
from simlab import Fixed, Workload
from simlab.experiment import Experiment, arguments, rewrite_findings
from simlab.findings import compare, elasticity, scaling
from simlab.planner import Goals, plan

NAME = "business_io_growth"
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
# The findings' rules: threads ~ (Little's busy workers)^b is linear when b's 95% CI
# lies within 1 +- 0.1; a budget's edge is where a grid row first exceeds it.
LINEAR_TOL = 0.1
ENGINES = {"des": "the DES", "analytic": "the analytic estimate only (quick run)"}


def _findings_from(df: pd.DataFrame, params: dict[str, Any]) -> str:
    """The findings of a saved run, with the parameters it recorded in meta.json."""
    platform = simlab.load_platform(params["platform"]).with_(cores=params["cores"])
    return findings(
        df,
        platform=platform,
        rate=params["rate"],
        cpu_s=params["cpu_s"],
        budget_gib=params["budget_gib"],
    )


def main() -> None:
    args = arguments(__doc__ or "")
    if args.findings_only:
        rewrite_findings(NAME, _findings_from, args.out)
        return
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
    with Experiment(NAME, seed=SEED, quick=args.quick, params=params, out=args.out) as ex:
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
        ex.findings(
            findings(ex.results(), platform=platform, rate=RATE, cpu_s=CPU_S, budget_gib=BUDGET_GIB)
        )
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


def _edge(
    rp: pd.DataFrame, column: str, budget_mib: float, little_ms: float, *, label: str, per: str
) -> str:
    """Where the reactor-pool's memory first exceeds a budget in the grid, and whether
    Little's law's estimate of the edge falls in the same bracket of the grid."""
    over = rp[rp[column] > budget_mib]
    if over.empty:
        return (
            f"Within the grid the reactor-pool stays under the {label} "
            f"(at most {rp[column].max():,.0f} MiB); Little's law with {per} puts the edge at "
            f"{little_ms:,.0f} ms per request."
        )
    first = float(over.index.min())
    under = rp[rp.index < first]
    last_ok = float(under.index.max()) if len(under) else None
    bracket = f"between {last_ok:g} and {first:g} ms" if last_ok is not None else f"by {first:g} ms"
    inside = (last_ok is None or little_ms > last_ok) and little_ms <= first
    return (
        f"With the {label} the first generation stops fitting at {first:g} ms per request "
        f"in this grid ({over.loc[first, column]:,.0f} MiB); Little's law with {per} puts "
        f"the edge at {little_ms:,.0f} ms, "
        + (
            f"inside the grid's bracket ({bracket}): the two are consistent."
            if inside
            else f"outside the grid's bracket ({bracket}): Little's per-thread estimate "
            "does not locate the edge here."
        )
    )


def findings(
    df: pd.DataFrame, *, platform: simlab.Platform, rate: float, cpu_s: float, budget_gib: float
) -> str:
    """The findings, every direction and comparison chosen by a rule from the table."""
    rp = df[df["model"] == "reactor-pool"].set_index("io_ms").sort_index()
    asy = df[df["model"] == "async"].set_index("io_ms").sort_index()
    lo, hi = rp.index.min(), rp.index.max()
    per_thread_kib = platform.thread_kib + platform.thread_kernel_kib
    # Little's law alone: workers ~ rate x (cpu + io); each costs per_thread_kib.
    little_io = (budget_gib * 1024 * 1024 / per_thread_kib / rate - cpu_s) * 1e3
    little_reserved_io = (
        RESERVED_BUDGET_GIB * 1024 * 1024 / platform.stack_kib / rate - cpu_s
    ) * 1e3
    ratio = rp.loc[hi, "threads"] / rp.loc[lo, "threads"]
    # Little's law says busy workers = rate x time per request (little_busy): the
    # threads follow it when threads ~ little_busy^b with b's CI around 1.
    b = elasticity(rp["little_busy"], rp["threads"])
    kind = scaling(b, LINEAR_TOL)
    follows = {
        "linear": "linear, as Little's law says",
        "sub-linear": "slower than Little's law's busy workers",
        "super-linear": "faster than Little's law's busy workers",
        "undetermined": "neither shown to follow Little's law nor to depart from it",
    }[kind]
    steady = compare(asy["threads"].max(), asy["threads"].min(), 0.0)
    text = [
        "# Business I/O growth: the first generation against the second\n",
        f"At {rate:g} requests/s on {platform.name} ({platform.cores} cores), as the backend "
        f"wait per request grows from {lo:g} ms to {hi:g} ms ({hi / lo:,.0f}x), the "
        f"reactor-pool needs from {rp.loc[lo, 'threads']:,.0f} to "
        f"{rp.loc[hi, 'threads']:,.0f} threads ({ratio:,.0f}x: {follows}; threads ~ "
        f"busy^{b.slope:.2f} against Little's busy workers, rate x time per request, "
        f"{b.ci()}, linear meaning within {1 - LINEAR_TOL:g} to {1 + LINEAR_TOL:g}; it "
        f"predicts {rp.loc[hi, 'little_busy']:,.0f} busy at {hi:g} ms), while async "
        + steady.pick(
            more=f"needs {asy['threads'].min():,.0f} to {asy['threads'].max():,.0f}",
            less="",  # max < min cannot happen
            same=f"stays at {asy['threads'].min():,.0f} threads",
        )
        + (
            f": at {hi:g} ms the reactor-pool needs "
            f"{rp.loc[hi, 'threads'] / asy.loc[hi, 'threads']:,.0f}x async's threads.\n"
            if hi in asy.index
            else ".\n"
        ),
        _edge(
            rp,
            "resident_mib",
            budget_gib * 1024,
            little_io,
            label=f"{budget_gib:g} GiB resident budget",
            per=f"{per_thread_kib:.0f} KiB per thread",
        ),
        " "
        + _edge(
            rp,
            "reserved_mib",
            RESERVED_BUDGET_GIB * 1024,
            little_reserved_io,
            label=f"{RESERVED_BUDGET_GIB:g} GiB budget on reserved address space",
            per=f"{platform.stack_kib:.0f} KiB of stack per thread",
        ),
    ]
    engines = sorted(set(df["engine"].astype(str)))
    checked = (
        "confirmed by the DES"
        if engines == ["des"]
        else f"checked by: {', '.join(ENGINES.get(e, e) for e in engines)}"
    )
    met = df["feasible"].astype(bool) & (df["p99_ms"] <= df["p99_goal_ms"])
    goal = f"its p99 goal of {SLACK:g}x the request's own time plus 20 ms"
    if met.all():
        verdict = f"every plan met {goal} (p99_ms <= p99_goal_ms in all {len(df)} rows)."
    else:
        missed = df[~met]
        verdict = (
            f"{len(missed)} of {len(df)} plans missed {goal}: "
            + "; ".join(
                f"{r.model} at {r.io_ms:g} ms (p99 {r.p99_ms:,.0f} against {r.p99_goal_ms:,.0f} ms"
                + ("" if r.feasible else ", infeasible")
                + ")"
                for r in missed.itertuples()
            )
            + "."
        )
    text.append(f"\n\nPlans were {checked}; {verdict}")
    return "".join(text)


if __name__ == "__main__":
    main()
