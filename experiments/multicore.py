"""When do extra processes pay, and what do they cost? Processes x threads x coroutines and the GIL.

The notes' layout for a multicore machine: one process per core, several
threads or coroutines in each. Under CPython's GIL a process runs Python on
one core at a time, so a CPU-bound server needs processes to use more cores,
and each pre-forked copy costs memory. Here ``async`` (coroutines in one
thread per process) and ``reactor-pool`` (a loop plus worker threads per
process) are saturated in closed loop on 2, 8 and 24 simulated cores with 1
to 24 processes, and measured for real on this machine's 2 cores. One
process of each is also simulated without the GIL (``--no-gil``, the notes'
case: kernel threads scheduled on any core), so that the findings say what
the GIL takes from threads on many cores.

Run: ``python experiments/multicore.py [--quick]``.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

import simlab
from simlab import Architecture, Fixed, Workload
from simlab.distributions import RESEND_AT_ONCE
from simlab.experiment import Experiment, arguments, rewrite_findings
from simlab.findings import RESIDENT, compare, hypothesis, measured_definition
from simlab.real.measure import MeasureOptions, measure

NAME = "multicore"
SEED = 1
CORES = (2, 8, 24)
PROCESSES = (1, 2, 4, 8, 16, 24)
QUICK_CORES, QUICK_PROCESSES = (2, 8), (1, 2, 4)
REAL_PROCESSES, QUICK_REAL_PROCESSES = (1, 2, 4), (1, 2)
MODELS = ("async", "reactor-pool")
CLIENTS = 256  # enough to saturate every configuration
CPU_MS, IO_MS = 2.0, 10.0
WORKERS = 16
SECONDS, QUICK_SECONDS = 6.0, 3.0
# The findings' rules:
ENOUGH = 0.03  # simulated: the fewest processes within 3% of the most throughput suffice
MEASURED_SAME = 0.05  # measured throughputs within 5% are the same (a shared, noisy machine)
MEMORY_SAME = 0.05  # resident memory within 5% has not grown
AGREE = 0.10  # simulated throughput within 10% of the measured agrees
CORE_TOL = 0.10  # a process using more than 1.1 cores' worth of CPU uses more than one
DOUBLE_TOL = 0.15  # a ratio within 15% of 2 "nearly doubles"
FULL = 0.9  # cpu_utilization at or above 0.9: the cores are busy
MORE_CORES = 1.5  # without the GIL, one process "uses more cores" at 1.5x its GIL throughput


def workload() -> Workload:
    # Closed loop: each client resends when answered (think: one microsecond).
    return Workload(
        connections=CLIENTS, think=RESEND_AT_ONCE, cpu=Fixed(CPU_MS / 1e3), io=Fixed(IO_MS / 1e3)
    )


def _findings_from(df: pd.DataFrame, params: dict[str, Any]) -> str:
    """The findings of a saved run, with the parameters it recorded in meta.json."""
    return findings(df, cpu_ms=params["cpu_ms"], measured_as=measured_definition(params))


def main() -> None:
    args = arguments(__doc__ or "")
    if args.findings_only:
        rewrite_findings(NAME, _findings_from, args.out)
        return
    cores_grid = QUICK_CORES if args.quick else CORES
    procs_grid = QUICK_PROCESSES if args.quick else PROCESSES
    real_procs = QUICK_REAL_PROCESSES if args.quick else REAL_PROCESSES
    seconds = QUICK_SECONDS if args.quick else SECONDS
    base = simlab.load_platform("cpython")
    params = {
        "clients": CLIENTS,
        "cpu_ms": CPU_MS,
        "io_ms": IO_MS,
        "workers": WORKERS,
        # The server's own kernel memory (simlab.real.kernel), as the models count it.
        "memory_definition": "measured",
    }
    with Experiment(NAME, seed=SEED, quick=args.quick, params=params, out=args.out) as ex:
        for cores in cores_grid:
            platform = base.with_(cores=cores)
            for model in MODELS:
                # Each process count under the GIL, then the notes' case: one
                # process, its threads free of a GIL (--no-gil).
                runs = [(True, procs) for procs in procs_grid] + [(False, 1)]
                for gil, procs in runs:
                    s = simlab.simulate(
                        model,
                        workload(),
                        platform.with_(gil=gil),
                        Architecture(workers=WORKERS, processes=procs),
                        duration=seconds,
                        warmup=1.0,
                        seed=SEED,
                        replications=2,
                        tables=False,
                    ).summary
                    ex.add(
                        source="simulated",
                        gil=gil,
                        cores=cores,
                        model=model,
                        processes=procs,
                        throughput_rps=s.throughput_rps,
                        p50_ms=s.latency_ms.p50,
                        threads=s.threads.peak,
                        resident_mib=s.memory_mib.peak,
                        cpu_utilization=s.cpu_utilization,
                    )
        for model in MODELS:
            for procs in real_procs:
                s = measure(
                    MeasureOptions(
                        target=model,
                        workload=workload(),
                        architecture=Architecture(workers=WORKERS, processes=procs),
                        duration=seconds,
                        warmup=1.0,
                        seed=SEED,
                        save=False,
                    )
                ).summary
                mem = s.memory_mib
                ex.add(
                    source="measured",
                    gil=True,
                    cores=2,
                    model=model,
                    processes=procs,
                    throughput_rps=s.throughput_rps,
                    p50_ms=s.latency_ms.p50,
                    threads=s.threads.peak,
                    resident_mib=mem.peak,  # user (PSS) + the server's own kernel memory
                    cpu_utilization=s.cpu_utilization,
                )
                print(f"real {model} x{procs}: {s.throughput_rps:,.0f} req/s")
        _plot(ex)
        ex.findings(_findings_from(ex.results(), params))
    print(f"wrote {ex.target}")


def _plot(ex: Experiment) -> None:
    df = ex.table()
    df = df[df["gil"].astype(bool)]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for (source, cores, model), part in df.groupby(["source", "cores", "model"]):
        style = "s--" if source == "measured" else "o-"
        label = f"{model}, {cores} cores ({source})"
        axes[0].plot(part["processes"], part["throughput_rps"], style, label=label)
        axes[1].plot(part["processes"], part["resident_mib"], style, label=label)
    for ax, label in zip(
        axes, ("saturated throughput (req/s)", "resident memory (MiB)"), strict=True
    ):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("processes")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{CPU_MS:g} ms CPU per request: what processes buy under the GIL")
    ex.figure("multicore", fig)
    plt.close(fig)


def _simulated(cores: int, model: str, a: pd.DataFrame) -> str:
    """What processes buy on one simulated machine: the fewest within ENOUGH of the most,
    and what the processes beyond those add."""
    one = a.loc[a.index.min()]
    enough = a[a["throughput_rps"] >= (1 - ENOUGH) * a["throughput_rps"].max()]
    best_p = int(enough.index.min())
    best = a.loc[best_p]
    top_p = int(a.index.max())
    per_core = compare(best_p, cores, 0.0).pick(
        more=f"more processes than cores ({cores})",
        less=f"fewer processes than cores ({cores})",
        same="one process per core",
    )
    text = (
        f"- **{cores} cores** (simulated, {model}): one process serves "
        f"{one['throughput_rps']:,.0f} req/s; {best_p} processes reach "
        f"{best['throughput_rps']:,.0f} req/s "
        f"({best['throughput_rps'] / one['throughput_rps']:.1f}x, "
        f"within {ENOUGH:.0%} of the most; {per_core}), at "
        f"{best['resident_mib'] - one['resident_mib']:,.0f} MiB more memory; "
    )
    if best_p == top_p:
        return text + (
            f"the grid stops at {top_p} processes, so whether more would add throughput is "
            "not shown."
        )
    top = a.loc[top_p]
    tput = compare(top["throughput_rps"], best["throughput_rps"], ENOUGH)
    mem = compare(top["resident_mib"], best["resident_mib"], MEMORY_SAME)
    return text + (
        f"up to {top_p} processes "
        + mem.pick(
            more=f"add memory (+{top['resident_mib'] - best['resident_mib']:,.0f} MiB)",
            less=f"use less memory ({top['resident_mib'] - best['resident_mib']:,.0f} MiB)",
            same=f"add no memory (within {MEMORY_SAME:.0%})",
        )
        + " and "
        + tput.pick(
            more=f"still add throughput ({tput.relative:+.0%})",
            less=f"lose throughput ({tput.relative:+.0%})",
            same=f"no throughput (within {ENOUGH:.0%})",
        )
        + "."
    )


def findings(df: pd.DataFrame, *, cpu_ms: float, measured_as: str = "measured") -> str:
    """The findings, every direction and comparison chosen by a rule from the table."""
    # Tables from before the --no-gil rows have no gil column: every row had the GIL.
    with_gil = df["gil"].astype(bool) if "gil" in df.columns else pd.Series(True, df.index)
    no_gil = df[(df["source"] == "simulated") & ~with_gil]
    df = df[with_gil]
    sim = df[df["source"] == "simulated"]
    lines = ["# Processes, threads, coroutines and the GIL\n"]
    for (cores, model), part in sim.groupby(["cores", "model"], sort=True):
        lines.append(_simulated(int(cores), str(model), part.set_index("processes").sort_index()))
    ones = sim[sim["processes"] == sim["processes"].min()]
    for model, part in ones.groupby("model"):
        same = compare(part["throughput_rps"].max(), part["throughput_rps"].min(), ENOUGH)
        core_counts = ", ".join(f"{c:g}" for c in sorted(part["cores"]))
        lines.append(
            f"- One simulated {model} process "
            + same.pick(
                more=f"serves more with more cores ({part['throughput_rps'].min():,.0f} to "
                f"{part['throughput_rps'].max():,.0f} req/s on {core_counts} cores).",
                less="",  # max < min cannot happen
                same=f"serves the same on {core_counts} cores (within {ENOUGH:.0%}: "
                f"{part['throughput_rps'].mean():,.0f} req/s): more cores do not help one "
                "process, as the cpython profile's gil setting makes the model do.",
            )
        )

    if len(no_gil):
        lines.append("\n" + _without_gil(sim, no_gil, df[df["source"] == "measured"]))
    real = df[df["source"] == "measured"]
    verdicts = []
    for model, group in real.groupby("model"):
        part = group.set_index("processes").sort_index()
        s = sim[(sim["cores"] == part["cores"].iloc[0]) & (sim["model"] == model)].set_index(
            "processes"
        )
        p_max = part.index.max()
        line = (
            f"- **{model}, measured on this machine's {part['cores'].iloc[0]:g} cores**: "
            + ", ".join(
                f"{p} process{'es' if p > 1 else ''} {part.loc[p, 'throughput_rps']:,.0f} req/s"
                for p in part.index
            )
        )
        if p_max in s.index:
            agree = compare(
                s.loc[p_max, "throughput_rps"], part.loc[p_max, "throughput_rps"], AGREE
            )
            line += f" (simulated with {p_max}: {s.loc[p_max, 'throughput_rps']:,.0f} req/s, " + (
                agree.pick(
                    more=f"{agree.relative:+.0%}: the model is optimistic",
                    less=f"{agree.relative:+.0%}: the model is pessimistic",
                    same=f"within {AGREE:.0%}",
                )
                + ")"
            )
        lines.append(line + ".")
        verdicts.append(_measured(str(model), part))
    if verdicts:
        lines.append("\nOn this machine (measured):\n")
        lines += verdicts
        lines.append(
            "\n"
            + hypothesis(
                "the per-process limit is CPython's GIL, which lets one thread of a process "
                "run Python at a time",
                "the same measured runs on a free-threaded CPython build, where one "
                "reactor-pool process's threads could use every core",
            )
        )
        lines.append(
            hypothesis(
                "an extra process's memory is its private pages (its own heap and "
                "copy-on-write copies of the parent's)",
                "the same runs recording each process's USS; resident_mib here is "
                + RESIDENT[measured_as].meaning,
            )
        )
    return "\n".join(lines)


def _without_gil(sim: pd.DataFrame, free: pd.DataFrame, real: pd.DataFrame) -> str:
    """Threads and coroutines on many cores, with CPython's GIL and without it (the notes')."""
    out = ["Threads on many cores, with the GIL and without it (one process, simulated):\n"]
    for model, part in free.groupby("model", sort=True):
        cells = []
        gains = {}
        for _, r in part.sort_values("cores").iterrows():
            cores = int(r["cores"])
            g = sim[(sim["model"] == model) & (sim["cores"] == cores) & (sim["processes"] == 1)]
            if g.empty:
                continue
            gil_rps = float(g["throughput_rps"].iloc[0])
            gains[cores] = float(r["throughput_rps"]) / gil_rps
            used = float(r["cpu_utilization"]) * cores
            cells.append(
                f"{cores} cores {gil_rps:,.0f} req/s with the GIL, {r['throughput_rps']:,.0f} "
                f"without ({gains[cores]:.1f}x, {used:.1f} cores' worth of CPU)"
            )
        if not gains:
            continue
        wide = max(gains)
        threads = int(part["threads"].max())
        free_uses = gains[wide] >= MORE_CORES
        one = real[(real["model"] == model) & (real["processes"] == 1)]
        measured = (
            f"; measured here, one CPython process uses "
            f"{float(one['cpu_utilization'].iloc[0]) * float(one['cores'].iloc[0]):.2f} of "
            f"{int(one['cores'].iloc[0])} cores"
            if len(one)
            else ""
        )
        out.append(
            f"- **{model}** ({threads} thread{'s' if threads > 1 else ''}): "
            + "; ".join(cells)
            + ". Without the GIL (`--no-gil`) one process's threads "
            + (
                f"use more cores ({gains[wide]:.1f}x on {wide}, at least {MORE_CORES:g}x): "
                "the notes' kernel threads on any core; with CPython's GIL they share one"
                if free_uses
                else f"use no more cores ({gains[wide]:.1f}x on {wide}, under "
                f"{MORE_CORES:g}x): its one loop thread runs the CPU either way, GIL or not"
            )
            + measured
            + "."
        )
    return "\n".join(out)


def _measured(model: str, part: pd.DataFrame) -> str:
    """What the measured rows show of one process's limit and of the processes beyond."""
    cores = float(part["cores"].iloc[0])
    one = part.loc[part.index.min()]
    used = one["cpu_utilization"] * cores
    within_core = used <= 1 + CORE_TOL
    text = (
        f"- **{model}**: one process with {one['threads']:,.0f} thread"
        f"{'s' if one['threads'] > 1 else ''} uses {used:.2f} cores' worth of CPU "
        f"(cpu_utilization {one['cpu_utilization']:.2f} of {cores:g} cores), "
        + (
            "no more than one core"
            if within_core
            else f"more than one core (by more than {CORE_TOL:.0%})"
        )
    )
    if 2 not in part.index:
        return text + "."
    two = part.loc[2]
    r = two["throughput_rps"] / one["throughput_rps"]
    text += (
        "; a second process "
        + (
            f"nearly doubles its throughput ({r:.2f}x, within {DOUBLE_TOL:.0%} of 2x)"
            if abs(r - 2) <= DOUBLE_TOL * 2
            else f"multiplies its throughput by {r:.2f}"
        )
        + (": the limit is per process, not per machine" if within_core and r > 1.5 else "")
    )
    more = part[part.index > 2]
    if more.empty:
        return text + "."
    top_p = int(more.index.max())
    top = part.loc[top_p]
    tput = compare(top["throughput_rps"], two["throughput_rps"], MEASURED_SAME)
    mem = compare(top["resident_mib"], two["resident_mib"], MEMORY_SAME)
    busy = two["cpu_utilization"] >= FULL
    text += (
        f". {top_p} processes "
        + tput.pick(
            more=f"add throughput over 2 ({tput.relative:+.0%})",
            less=f"lose throughput against 2 ({tput.relative:+.0%})",
            same=f"add no throughput over 2 (within {MEASURED_SAME:.0%})",
        )
        + " and "
        + mem.pick(
            more=f"cost {top['resident_mib'] - two['resident_mib']:,.1f} MiB more resident",
            less=f"use {two['resident_mib'] - top['resident_mib']:,.1f} MiB less resident",
            same=f"no more resident memory (within {MEMORY_SAME:.0%})",
        )
        + (
            f"; the cores are already busy with 2 (cpu_utilization "
            f"{two['cpu_utilization']:.2f}, at least {FULL:g}), so the extra copies contend "
            "for the same cores."
            if busy
            else f"; with 2 the cores are not yet busy (cpu_utilization "
            f"{two['cpu_utilization']:.2f}, under {FULL:g})."
        )
    )
    return text


if __name__ == "__main__":
    main()
