"""Does a threaded server's throughput collapse as threads grow (SEDA's Figures 2 and 4)?

Welsh et al. (SOSP 2001) showed a thread-per-connection server whose
throughput rises with threads, then falls, while its latency climbs; and an
event-driven server whose throughput stays flat under growing load while its
latency grows linearly. Here both are driven in closed loop (each client
resends as soon as it is answered) at growing concurrency, for real on this
machine and in the calibrated simulation, and the Universal Scalability Law
is fitted to each: a contention term sigma and a coherency term kappa, whose
confidence interval says whether a collapse (kappa > 0) is there at all.

Run: ``python experiments/thread_count_collapse.py [--quick]``.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import simlab
from simlab import Architecture
from simlab.experiment import Experiment, arguments
from simlab.usl import usl_study

SEED = 1
LEVELS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
QUICK_LEVELS = (1, 4, 16, 32)
CPU_MS, IO_MS, CALLS = 2.0, 5.0, 1
SECONDS, QUICK_SECONDS = 4.0, 2.0
SERVERS = ("thread-per-connection", "async")


def main() -> None:
    args = arguments(__doc__ or "")
    levels = QUICK_LEVELS if args.quick else LEVELS
    seconds = QUICK_SECONDS if args.quick else SECONDS
    platform = simlab.load_platform("cpython")
    params = {"cpu_ms": CPU_MS, "io_ms": IO_MS, "calls": CALLS, "seconds": seconds}
    with Experiment(
        "thread_count_collapse", seed=SEED, quick=args.quick, params=params, out=args.out
    ) as ex:
        fits = {}
        for server in SERVERS:
            result = usl_study(
                server,
                levels=levels,
                cpu_ms=CPU_MS,
                io_ms=IO_MS,
                calls=CALLS,
                arch=Architecture(),
                platform=platform,
                duration=seconds,
                warmup=1.0,
                seed=SEED,
                out_dir=ex.folder / server,
            )
            fits[server] = result
            for p in result["points"]:
                for source in ("measured", "simulated"):
                    ex.add(
                        server=server,
                        source=source,
                        concurrency=p["n"],
                        throughput_rps=p[source],
                        p50_ms=p[f"{source}_p50_ms"],
                    )
            print(
                f"{server}: measured sigma {result['measured_fit']['sigma']:.3f} "
                f"kappa {result['measured_fit']['kappa']:.5f}"
            )
        _plot(ex)
        _findings(ex, fits)
    print(f"wrote {ex.target}")


def _plot(ex: Experiment) -> None:
    df = ex.table()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for (server, source), part in df.groupby(["server", "source"]):
        style = "s-" if source == "measured" else "o--"
        label = f"{server} ({source})"
        axes[0].plot(part["concurrency"], part["throughput_rps"], style, label=label)
        axes[1].plot(part["concurrency"], part["p50_ms"], style, label=label)
    for ax, label in zip(axes, ("throughput (req/s)", "median latency (ms)"), strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients (threads, for thread-per-connection)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    axes[1].set_yscale("log")
    fig.suptitle("SEDA's Figures 2 and 4 on this machine: closed loop, growing concurrency")
    ex.figure("collapse", fig)
    plt.close(fig)


def _findings(ex: Experiment, fits: dict[str, dict]) -> None:
    df = ex.table()
    lines = ["# Thread count and throughput collapse\n"]
    for server in SERVERS:
        part = df[(df["server"] == server) & (df["source"] == "measured")]
        peak = part.loc[part["throughput_rps"].idxmax()]
        last = part.iloc[-1]
        drop = 1 - last["throughput_rps"] / peak["throughput_rps"]
        fit = fits[server]["measured_fit"]
        ci = (fit.get("ci95") or {}).get("kappa") or [None, None]
        collapse = ci[0] is not None and ci[0] > 0
        lines.append(
            f"- **{server}**: measured throughput peaks at {peak['throughput_rps']:,.0f} req/s "
            f"with {peak['concurrency']:.0f} clients and is {drop:.0%} below that at "
            f"{last['concurrency']:.0f} clients (median latency {last['p50_ms']:,.1f} ms). "
            f"USL: sigma {fit['sigma']:.3f}, kappa {fit['kappa']:.2e}"
            + (f" (95% CI {ci[0]:.1e} to {ci[1]:.1e})" if ci[0] is not None else "")
            + (
                ": a retrograde region, SEDA's collapse."
                if collapse
                else ": kappa's interval includes 0, so no collapse is shown at these levels; the "
                "throughput flattens (contention) rather than falls."
            )
        )
    lines.append(
        "\nOn 2 cores with CPython, the GIL serialises the threads' CPU, so the threaded "
        "server levels off early; the cost of many runnable threads that SEDA measured on "
        "2001 hardware is small on this kernel. Latency grows linearly with clients for "
        "both once throughput is flat (Little's law: N = X R), which is SEDA's Figure 4 "
        "shape for the event-driven server."
    )
    ex.findings("\n".join(lines))


if __name__ == "__main__":
    main()
