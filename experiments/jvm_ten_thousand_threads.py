"""Do 10,000 threads take 10 GB? A real JVM holding 10,000 idle connections, a thread each.

The notes say a thread per connection costs about 1 MB, so 10,000 connections
take about 10 GB. Here a real JVM (``java-threads``: a ServerSocket and one
platform thread per connection, the JVM's default -Xss) holds 10,000 idle
keep-alive connections under a trickle of requests, and the probe reports
its threads, resident memory (RSS, and PSS), reserved address space
(virtual size) and kernel memory. The same connections are held by Go
(a goroutine each), Node.js (callbacks), Tomcat NIO (a poller and a small
pool) and simlab's own ``async`` server, and every run is repeated at a
small size, so that each connection's own cost is the slope between the two.
Beside them: the simulation of the same workload with the ``jvm`` preset.

Kernel memory is the server's own (``simlab measure``'s definition): what
the kernel charges to the memory cgroup the server runs in (its threads'
kernel stacks and structures, its sockets, its page tables), plus each
accepted connection's TCP socket object; the load generator's client ends
are not in it.

Run: ``python experiments/jvm_ten_thousand_threads.py [--quick]``.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import simlab
from simlab import Architecture, Fixed, Workload
from simlab.experiment import Experiment, arguments, rewrite_findings
from simlab.real.measure import MeasureOptions, measure
from simlab.real.peers import PLATFORM_OF, RESEMBLES

NAME = "jvm_ten_thousand_threads"
SEED = 1
CONNECTIONS = (100, 10_000)
QUICK_CONNECTIONS = (50, 300)
TARGETS = ("java-threads", "go", "node", "tomcat-nio", "async")
SIMULATED = ("thread-per-connection", "reactor-pool", "async")
RATE = 20.0  # a trickle: the connections are the point, not the requests
CPU_S, IO_S, CALLS = 0.0005, 0.005, 0
# No backend calls: a thread per connection with a backend connection each would
# need two fds per client, over this machine's 20,000 at 10,000 clients.
WORKERS = 16  # Tomcat's pool (the others have none)
# --quick (the tests): 0.5 s of warm-up and 1 s measured; the threads and memory
# compared are held from the moment the connections are open.
SECONDS, QUICK_SECONDS = 3.0, 1.0
WARMUP_S, QUICK_WARMUP_S = 1.0, 0.5
SOURCES = 8
NOTES_GB_PER_THREAD = 1e-3  # "a thread takes about 1 MB": 10,000 x 1 MB = 10 GB
GIB = 1024.0


def workload(n: int) -> Workload:
    return Workload(connections=n, rate=RATE, cpu=Fixed(CPU_S), io=Fixed(IO_S), calls=CALLS)


def measured(
    ex: Experiment, counts: tuple[int, ...], seconds: float, warmup: float = WARMUP_S
) -> None:
    for target in TARGETS:
        for n in counts:
            s = measure(
                MeasureOptions(
                    target=target,
                    workload=workload(n),
                    architecture=Architecture(workers=WORKERS),
                    duration=seconds,
                    warmup=warmup,
                    seed=SEED,
                    sources=SOURCES,
                    save=False,
                )
            ).summary
            mem = s.memory_mib
            ex.add(
                source="measured",
                target=target,
                model=RESEMBLES.get(target, target),
                platform=PLATFORM_OF.get(target, "cpython"),
                connections=n,
                opened=s.connections.opened,
                threads=s.threads.peak,
                rss_mib=mem.rss_peak,
                pss_mib=mem.user_peak,
                uss_mib=mem.uss_peak,
                virtual_mib=mem.virtual_peak,
                kernel_own_mib=mem.kernel_peak,
                served_rps=s.throughput_rps,
                p50_ms=s.latency_ms.p50,
                stable=s.stable,
                runtime="; ".join(s.runtime.values()) or "simlab (cpython)",
            )


def simulated(ex: Experiment, counts: tuple[int, ...]) -> None:
    platform = simlab.load_platform("jvm")
    for model, n in ((m, n) for m in SIMULATED for n in counts):
        s = simlab.simulate(
            model,
            workload(n),
            platform,
            Architecture(workers=WORKERS),
            duration=2.0,
            warmup=0.5,
            seed=SEED,
            replications=1,
            tables=False,
        ).summary
        mem = s.memory_mib
        ex.add(
            source="simulated",
            target=f"{model} (jvm preset)",
            model=model,
            platform="jvm",
            connections=n,
            threads=s.threads.peak,
            rss_mib=mem.user_peak,
            pss_mib=mem.user_peak,
            virtual_mib=mem.virtual_peak,
            kernel_own_mib=mem.kernel_peak,
            stable=s.stable,
        )


def plots(ex: Experiment, n: int) -> None:
    df = ex.table()
    top = df[(df["source"] == "measured") & (df["connections"] == n)].set_index("target")
    cols = ("pss_mib", "virtual_mib", "kernel_own_mib")
    labels = ("resident (PSS)", "reserved (virtual)", "kernel (own)")
    fig, ax = plt.subplots(figsize=(10, 5))
    x = np.arange(len(top))
    for k, (col, label) in enumerate(zip(cols, labels, strict=True)):
        ax.bar(x + (k - 1) * 0.27, top[col].clip(lower=0.1), 0.27, label=label)
    ax.set_xticks(x, [f"{t}\n{int(top.loc[t, 'threads']):,} threads" for t in top.index])
    ax.set_yscale("log")
    ax.set_ylabel("MiB")
    ax.set_title(f"{n:,} idle keep-alive connections, measured")
    claim_mib = n * NOTES_GB_PER_THREAD * 1e9 / 2**20
    ax.axhline(claim_mib, color="grey", ls="--", lw=1)
    ax.annotate(f"the notes' {n:,} x 1 MB", (x[-1], claim_mib * 1.05), fontsize=8)
    ax.legend()
    ex.figure("memory", fig)
    plt.close(fig)


def _per_conn_kib(df, source: str, target: str, col: str, *, lo: int, hi: int) -> float:
    """A column's growth per connection (KiB): the slope between the two sizes."""
    part = df[(df["source"] == source) & (df["target"] == target)].set_index("connections")
    return float((part.loc[hi, col] - part.loc[lo, col]) / (hi - lo) * 1024)


def _compare(a: float, b: float, what: str) -> str:
    """The rule behind every comparison sentence: the ratio a/b, its direction read from it."""
    if a <= 0 or b <= 0:
        return f"a {what} not comparable with that of"
    ratio = a / b
    if 0.9 <= ratio <= 1.1:
        return f"about the same {what} as"
    if ratio > 1:
        return f"{ratio:,.1f}x the {what} of"
    return f"{1 / ratio:,.1f}x less {what} than"


def findings(df: pd.DataFrame, params: dict[str, Any]) -> str:
    """The findings of a run's table; the two sizes are the smallest and largest it measured."""
    sizes = sorted(int(n) for n in df.loc[df["source"] == "measured", "connections"].unique())
    lo, hi = sizes[0], sizes[-1]
    real = df[(df["source"] == "measured") & (df["connections"] == hi)].set_index("target")
    jt = real.loc["java-threads"]
    claim_gib = hi * NOTES_GB_PER_THREAD * 1e9 / 2**30
    cols = ("virtual_mib", "pss_mib", "kernel_own_mib")
    slopes = {
        (source, t): {c: _per_conn_kib(df, source, t, c, lo=lo, hi=hi) for c in cols}
        for source, t in df[["source", "target"]].drop_duplicates().itertuples(index=False)
    }
    per = slopes[("measured", "java-threads")]
    threads_reserved_gib = per["virtual_mib"] * hi / 2**20
    threads_resident_gib = (per["pss_mib"] + per["kernel_own_mib"]) * hi / 2**20
    lines = [
        f"# Do {hi:,} threads take 10 GB?\n",
        f"A real JVM (`java-threads`, {jt['runtime']}) holding {hi:,} idle keep-alive "
        f"connections ({jt['opened']:,.0f} opened) with a thread each ran "
        f"**{jt['threads']:,.0f} threads**; "
        f"{RATE:g} requests/s offered, {jt['served_rps']:.1f}/s served, p50 "
        f"{jt['p50_ms']:.1f} ms.\n",
        "| target | resembles | threads | RSS | PSS | virtual (reserved) | kernel (own) |",
        "|---|---|---|---|---|---|---|",
    ]
    short = [t for t, r in real.iterrows() if r["opened"] < hi or not r["stable"]]
    if short:
        lines.insert(
            2,
            f"**Caution**: {', '.join(short)} did not hold every connection or keep up "
            "with the load in this run; their numbers undercount.\n",
        )
    for t, r in real.iterrows():
        lines.append(
            f"| {t} | {r['model']} on {r['platform']} | {r['threads']:,.0f} | "
            f"{r['rss_mib']:,.0f} MiB | {r['pss_mib']:,.0f} MiB | {r['virtual_mib']:,.0f} MiB | "
            f"{r['kernel_own_mib']:,.0f} MiB |"
        )
    # The claim holds where the measured figure reaches 80% of it.
    holds_reserved = threads_reserved_gib >= 0.8 * claim_gib
    holds_resident = threads_resident_gib >= 0.8 * claim_gib
    lines.append(
        f"\nThe notes' claim ({hi:,} x 1 MB = {claim_gib:.1f} GiB) "
        + ("**holds**" if holds_reserved else "**does not hold**")
        + f" for reserved address space: the connections' threads reserved "
        f"{threads_reserved_gib:.1f} GiB ({per['virtual_mib']:,.0f} KiB each, the slope "
        f"between {lo:,} and {hi:,} connections; the JVM's whole reservation, heap included, "
        f"was {jt['virtual_mib'] / GIB:.1f} GiB). It "
        + ("**holds**" if holds_resident else "**does not hold**")
        + " for memory the machine must have: the threads' resident plus own kernel memory "
        f"is {threads_resident_gib:.2f} GiB ({per['pss_mib']:,.1f} KiB resident and "
        f"{per['kernel_own_mib']:,.1f} KiB of kernel memory each), "
        f"{threads_resident_gib / threads_reserved_gib:.1%} of what they reserved.\n"
    )
    lines += [
        "Per connection (KiB, the slope between the two sizes):\n",
        "| source | target | reserved | resident (PSS) | kernel (own) |",
        "|---|---|---|---|---|",
    ]
    for (source, t), v in slopes.items():
        lines.append(
            f"| {source} | {t} | {v['virtual_mib']:,.1f} | {v['pss_mib']:,.1f} | "
            f"{v['kernel_own_mib']:,.1f} |"
        )
    lines.append("")
    base = jt["pss_mib"] + jt["kernel_own_mib"]
    for t in real.index.drop("java-threads"):
        other = real.loc[t, "pss_mib"] + real.loc[t, "kernel_own_mib"]
        lines.append(
            f"- At {hi:,} connections `java-threads` used {_compare(base, other, 'memory')} "
            f"`{t}` (resident plus own kernel: {base:,.0f} MiB against {other:,.0f} MiB), and "
            f"ran {_compare(jt['threads'], real.loc[t, 'threads'], 'threads')} it "
            f"({jt['threads']:,.0f} against {real.loc[t, 'threads']:,.0f})."
        )
    sim = slopes.get(("simulated", "thread-per-connection (jvm preset)"))
    if sim is not None:
        sim_res, real_res = (
            sim["pss_mib"] + sim["kernel_own_mib"],
            per["pss_mib"] + per["kernel_own_mib"],
        )
        lines.append(
            "\nThe simulation of `thread-per-connection` with today's `jvm` preset reserves "
            f"{_compare(sim['virtual_mib'], per['virtual_mib'], 'address space')} the real "
            f"JVM per connection ({sim['virtual_mib']:,.0f} against {per['virtual_mib']:,.0f} "
            f"KiB), and holds {_compare(sim_res, real_res, 'memory')} it in resident plus "
            f"kernel memory ({sim_res:,.1f} against {real_res:,.1f} KiB, "
            f"{(sim_res - real_res) / real_res:+.0%})."
        )
    return "\n".join(lines)


def main() -> None:
    args = arguments(__doc__ or "")
    if args.findings_only:
        rewrite_findings(NAME, findings, args.out)
        return
    counts = QUICK_CONNECTIONS if args.quick else CONNECTIONS
    seconds = QUICK_SECONDS if args.quick else SECONDS
    warmup = QUICK_WARMUP_S if args.quick else WARMUP_S
    params = {"rate": RATE, "cpu_s": CPU_S, "calls": CALLS, "workers": WORKERS,
              "seconds": seconds, "warmup_s": warmup}  # fmt: skip
    with Experiment(NAME, seed=SEED, quick=args.quick, params=params, out=args.out) as ex:
        measured(ex, counts, seconds, warmup)
        simulated(ex, counts)
        plots(ex, counts[-1])
        ex.findings(findings(ex.table(), params))
    print(f"wrote {ex.target}")


if __name__ == "__main__":
    main()
