"""When do extra processes pay, and what do they cost? Processes x threads x coroutines and the GIL.

The notes' layout for a multicore machine: one process per core, several
threads or coroutines in each. Under CPython's GIL a process runs Python on
one core at a time, so a CPU-bound server needs processes to use more cores,
and each pre-forked copy costs memory. Here ``async`` (coroutines in one
thread per process) and ``reactor-pool`` (a loop plus worker threads per
process) are saturated in closed loop on 2, 8 and 24 simulated cores with 1
to 24 processes, and measured for real on this machine's 2 cores.

Run: ``python experiments/multicore.py [--quick]``.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import simlab
from simlab import Architecture, Fixed, Workload
from simlab.experiment import Experiment, arguments
from simlab.real.measure import MeasureOptions, measure

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


def workload() -> Workload:
    # Closed loop: each client resends when answered (think: one microsecond).
    return Workload(
        connections=CLIENTS, think=Fixed(1e-6), cpu=Fixed(CPU_MS / 1e3), io=Fixed(IO_MS / 1e3)
    )


def main() -> None:
    args = arguments(__doc__ or "")
    cores_grid = QUICK_CORES if args.quick else CORES
    procs_grid = QUICK_PROCESSES if args.quick else PROCESSES
    real_procs = QUICK_REAL_PROCESSES if args.quick else REAL_PROCESSES
    seconds = QUICK_SECONDS if args.quick else SECONDS
    base = simlab.load_platform("cpython")
    params = {"clients": CLIENTS, "cpu_ms": CPU_MS, "io_ms": IO_MS, "workers": WORKERS}
    with Experiment("multicore", seed=SEED, quick=args.quick, params=params, out=args.out) as ex:
        for cores in cores_grid:
            platform = base.with_(cores=cores)
            for model in MODELS:
                for procs in procs_grid:
                    s = simlab.simulate(
                        model,
                        workload(),
                        platform,
                        Architecture(workers=WORKERS, processes=procs),
                        duration=seconds,
                        warmup=1.0,
                        seed=SEED,
                        replications=2,
                        tables=False,
                    ).summary
                    ex.add(
                        source="simulated",
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
        _findings(ex)
    print(f"wrote {ex.target}")


def _plot(ex: Experiment) -> None:
    df = ex.table()
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


def _findings(ex: Experiment) -> None:
    df = ex.table()
    sim = df[df["source"] == "simulated"]
    lines = ["# Processes, threads, coroutines and the GIL\n"]
    for cores, part in sim.groupby("cores"):
        a = part[part["model"] == "async"].set_index("processes")
        one = a.loc[a.index.min()]
        # The fewest processes within 3% of the best: more only add memory.
        enough = a[a["throughput_rps"] >= 0.97 * a["throughput_rps"].max()]
        best_p = int(enough.index.min())
        best = a.loc[best_p]
        lines.append(
            f"- **{cores} cores** (simulated, async): one process serves "
            f"{one['throughput_rps']:,.0f} req/s; {best_p} processes reach "
            f"{best['throughput_rps']:,.0f} req/s "
            f"({best['throughput_rps'] / one['throughput_rps']:.1f}x, "
            f"within 3% of the most), at {best['resident_mib'] - one['resident_mib']:,.0f} MiB "
            "more memory; more processes add memory, not throughput."
        )
    real = df[df["source"] == "measured"]
    for model, group in real.groupby("model"):
        part = group.set_index("processes")
        s = sim[(sim["cores"] == 2) & (sim["model"] == model)].set_index("processes")
        p_max = part.index.max()
        lines.append(
            f"- **{model}, measured on this machine's 2 cores**: "
            + ", ".join(
                f"{p} process{'es' if p > 1 else ''} {part.loc[p, 'throughput_rps']:,.0f} req/s"
                for p in part.index
            )
            + (
                f" (simulated with {p_max}: {s.loc[p_max, 'throughput_rps']:,.0f} req/s)."
                if p_max in s.index
                else "."
            )
        )
    lines.append(
        "\nUnder the GIL a process is one core's worth of Python at most; a second process "
        "doubles the throughput of a CPU-bound server on 2 cores, and copies after that only "
        "cost memory (a forked copy's private pages) and contend for the same cores."
    )
    ex.findings("\n".join(lines))


if __name__ == "__main__":
    main()
