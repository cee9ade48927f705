"""Several event loops in one process, or a process per loop, with and without a GIL?

The notes: "现在最流行的后端框架是单进程+多线程+每个线程再利用协程这样的组合方式"
(the popular design is one process, several threads, coroutines on each
thread). Here ``async`` runs, saturated in closed loop on 2, 8 and 24
simulated cores with the calibrated cpython profile, as one loop, as one
process with a loop per core (``--loops``), and as a process per core with
one loop each (``--processes``), each with CPython's GIL and without it.

Simulation only: the real async server runs one loop per process.
Run: ``python experiments/multi_loop.py [--quick]``.
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
from simlab.findings import compare

NAME = "multi_loop"
SEED = 1
MODEL = "async"
CORES, QUICK_CORES = (2, 8, 24), (2, 8)
CLIENTS = 256  # enough to saturate every configuration
CPU_MS, IO_MS = 2.0, 10.0  # as experiments/multicore.py
SECONDS, QUICK_SECONDS = 6.0, 3.0
SAME = 0.05  # throughputs within 5% are the same
MORE = 1.5  # "uses more cores": at least 1.5x one loop's throughput


def workload() -> Workload:
    return Workload(
        connections=CLIENTS, think=RESEND_AT_ONCE, cpu=Fixed(CPU_MS / 1e3), io=Fixed(IO_MS / 1e3)
    )


def designs(cores: int) -> dict[str, Architecture]:
    return {
        "one": Architecture(processes=1, loops=1),
        "loops": Architecture(processes=1, loops=cores),
        "processes": Architecture(processes=cores, loops=1),
    }


def findings(df: pd.DataFrame) -> str:
    """Every sentence chosen by a rule from the table."""
    out = ["# Loops per process against processes, with and without a GIL", ""]
    for (cores, gil), g in df.groupby(["cores", "gil"], sort=True):
        by = g.set_index("design")
        one = float(by.loc["one", "throughput_rps"])
        loops = float(by.loc["loops", "throughput_rps"])
        procs = float(by.loc["processes", "throughput_rps"])
        vs = compare(loops, procs, SAME)
        mem = compare(
            float(by.loc["loops", "resident_mib"]), float(by.loc["processes", "resident_mib"]), SAME
        )
        label = "with the GIL" if gil else "without a GIL"
        loops_use = (
            "use more cores than one loop"
            if loops >= MORE * one
            else "use no more than one loop's core"
        )
        out.append(
            f"- **{cores} cores, {label}**: one loop {one:,.0f} req/s; {cores} loops in one "
            f"process {loops:,.0f} req/s ({loops / one:.1f}x: they {loops_use}); {cores} "
            f"processes of one loop {procs:,.0f} req/s. The loops serve "
            + vs.pick(more="more than", less="less than", same="the same as (within 5%)")
            + " the processes, in "
            + mem.pick(more="more", less="less", same="the same")
            + f" memory ({float(by.loc['loops', 'resident_mib']):.0f} against "
            f"{float(by.loc['processes', 'resident_mib']):.0f} MiB resident)."
        )
    return "\n".join(out) + "\n"


def figure(df: pd.DataFrame) -> Any:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    for ax, gil in zip(axes, (True, False), strict=True):
        g = df[df["gil"] == gil]
        for design, d in g.groupby("design", sort=False):
            ax.plot(d["cores"], d["throughput_rps"], marker="o", label=str(design))
        ax.set_title("with the GIL" if gil else "without a GIL")
        ax.set_xlabel("cores")
        ax.set_xscale("log", base=2)
    axes[0].set_ylabel("throughput (req/s, saturated)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _findings_from(df: pd.DataFrame, params: dict[str, Any]) -> str:
    return findings(df)


def main() -> None:
    args = arguments(__doc__ or "")
    if args.findings_only:
        rewrite_findings(NAME, _findings_from, args.out)
        return
    seconds = QUICK_SECONDS if args.quick else SECONDS
    base = simlab.load_platform("cpython")
    params = {"clients": CLIENTS, "cpu_ms": CPU_MS, "io_ms": IO_MS}
    with Experiment(NAME, seed=SEED, quick=args.quick, params=params, out=args.out) as ex:
        for cores in QUICK_CORES if args.quick else CORES:
            for gil in (True, False):
                platform = base.with_(cores=cores, gil=gil)
                for design, arch in designs(cores).items():
                    s = simlab.simulate(
                        MODEL,
                        workload(),
                        platform,
                        arch,
                        duration=seconds,
                        warmup=1.0,
                        seed=SEED,
                        replications=2,
                        tables=False,
                    ).summary
                    ex.add(
                        source="simulated",
                        cores=cores,
                        gil=gil,
                        design=design,
                        processes=arch.processes,
                        loops=arch.loops,
                        throughput_rps=s.throughput_rps,
                        p50_ms=s.latency_ms.p50,
                        threads=s.threads.peak,
                        resident_mib=s.memory_mib.peak,
                        cpu_utilization=s.cpu_utilization,
                    )
        ex.figure("multi_loop", figure(ex.results()))
        ex.findings(findings(ex.results()))


if __name__ == "__main__":
    main()
