"""Callbacks against coroutines: what a pending operation and a hop cost in each runtime.

The notes: "事件驱动有两件常见的外衣，一件是异步回调，另一件是coroutine" (event-driven
code wears two coats, asynchronous callbacks and coroutines), and they name
Node.js, Python 3, Go, Erlang and Kotlin. Each coat is a small real program
(``simlab.real.peers.coats``): Node.js callbacks and Node.js promises
(async/await) on one loop, asyncio tasks on one loop, Go goroutines, Erlang
processes and Kotlin coroutines (on as many scheduler threads as cores while
pending, on one for the hops, as the loops). Measured here, under the
machine's real-run lock:

- memory per pending operation: the program holds N operations, each waiting
  on its own timer and holding its own state, at two sizes; resident (PSS)
  plus its own kernel memory (its memory cgroup's), the slope between them;
- CPU per hop: rounds of 100 concurrent requests, each passing K times
  through the runtime's scheduler, at two values of K; the process tree's
  CPU time per request, its slope against K (95% CI over repetitions; a
  slope whose interval reaches zero is reported as not identified).

Then the planner's verdict for the notes' ad service (1000 requests/s, 60
sequential calls of 100 ms, 1 ms of CPU) in each runtime, on its calibrated
profile or preset platform with the measured memory per pending operation in
place of the platform's (Erlang has no platform: the go preset stands in, an
assumption the findings say). swoole and Vert.x are not obtainable from the
package registries reachable here: their rows say so.

Run: ``nice -n -10 python experiments/callbacks_vs_coroutines.py [--quick]``.
"""

from __future__ import annotations

import math
import traceback
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

import simlab
from simlab import Fixed, Workload
from simlab.claims.coats import hop_relation, summarise
from simlab.experiment import Experiment, arguments, rewrite_findings
from simlab.findings import compare, joined
from simlab.planner import Goals, plan
from simlab.real.limits import raise_fd_limit
from simlab.real.lock import exclusive
from simlab.real.peers.coats import COATS, hop_cpu, pending_memory

NAME = "callbacks_vs_coroutines"
SEED = 1  # nothing here is random; recorded as every experiment's is
SIZES, QUICK_SIZES = (5_000, 50_000), (200, 2_000)
MEMORY_REPS, QUICK_MEMORY_REPS = 2, 1
CONCURRENCY = 100  # requests in flight at once in the hop runs
HOPS, QUICK_HOPS = (0, 100), (0, 20)
HOP_MS, QUICK_HOP_MS = 1000, 150  # each hop run's measured window (after as long a warm-up)
HOP_REPS, QUICK_HOP_REPS = 4, 2
# The notes' ad service, on the notes' big box's 24 cores.
AD_RATE, AD_CALLS, AD_IO_S, AD_CPU_S, AD_CORES = 1000.0, 60, 0.100, 0.001, 24
AD_CLIENTS = 10_000_000  # one request per connection, as experiments/ad_service_fanout.py
GOAL_FACTOR = 1.2  # p99 goal: 1.2x the request's own time plus 20 ms (as ad_service_fanout)
# Each coat's model and platform for the planner, and the platform field its
# pending operation takes: a goroutine or an Erlang process is the "thread"
# of thread-per-connection on an M:N runtime; a promise, a task or a Kotlin
# coroutine is async's in-flight task.
PLANNED: dict[str, tuple[str, str, str]] = {
    "node-callbacks": ("async", "node", "task_kib"),
    "node-promises": ("async", "node", "task_kib"),
    "asyncio": ("async", "cpython", "task_kib"),
    "go": ("thread-per-connection", "go", "thread_kib"),
    "erlang": ("thread-per-connection", "go", "thread_kib"),
    "kotlin": ("async", "jvm", "task_kib"),
}
STAND_IN = {"erlang": "the go preset stands in for Erlang (no erlang platform): an assumption"}
# The notes name these too; no package registry reachable here provides them:
# swoole is a PECL extension (no Debian or PyPI package), Vert.x a Maven artifact.
UNOBTAINABLE = {
    "swoole": "a PECL extension: no Debian or PyPI package, PECL not reachable here",
    "vertx": "a Maven artifact: no Debian package, Maven Central not reachable here",
}
# The findings' rules:
SAME = 0.10  # two memory figures within 10% are the same
LIGHTER = 10.0  # "light" beside a thread: at least 10x less memory
THREAD_PROFILE = "cpython"  # a native thread's resident + kernel memory, calibrated


def measure_coats(ex: Experiment, quick: bool) -> None:
    sizes = QUICK_SIZES if quick else SIZES
    hops = QUICK_HOPS if quick else HOPS
    ms = QUICK_HOP_MS if quick else HOP_MS
    for name, coat in COATS.items():
        try:
            versions = coat.versions()
            coat.argv("pending", [1])  # builds it (Go, Erlang, Kotlin) before the lock
        except Exception as exc:  # a coat that cannot build or run is a finding
            ex.add(kind="failed", coat=name, runtime=coat.runtime, error=_last_words(exc))
            continue
        runtime = "; ".join(f"{k} {v}" for k, v in versions.items())
        with exclusive(print):
            for rep in range(QUICK_MEMORY_REPS if quick else MEMORY_REPS):
                for n in sizes:
                    m = pending_memory(coat, n)
                    ex.add(
                        kind="pending",
                        coat=name,
                        runtime=coat.runtime,
                        versions=runtime,
                        rep=rep,
                        n=n,
                        pss_kib=m["pss"],
                        kernel_kib=m["kernel"],
                        rss_kib=m["rss"],
                        vms_kib=m["vms"],
                        create_s=m["create_s"],
                    )
            for rep in range(QUICK_HOP_REPS if quick else HOP_REPS):
                for k in hops:
                    h = hop_cpu(coat, concurrency=CONCURRENCY, hops=k, ms=ms)
                    ex.add(
                        kind="hops",
                        coat=name,
                        runtime=coat.runtime,
                        versions=runtime,
                        rep=rep,
                        hops=k,
                        concurrency=CONCURRENCY,
                        requests=h["requests"],
                        cpu_s=h["cpu_s"],
                        wall_s=h["wall_s"],
                        cpu_us_per_request=h["cpu_s"] / h["requests"] * 1e6,
                    )
        print(f"measured {name}")


def _last_words(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(exc)).strip()
    return " ".join(text.split())[-600:]


def ad_goal_ms() -> float:
    return GOAL_FACTOR * (AD_CALLS * AD_IO_S + AD_CPU_S) * 1e3 + 20


def plan_ad_service(ex: Experiment) -> None:
    per = summarise(ex.results()).set_index("coat")
    w = Workload(
        connections=AD_CLIENTS,
        rate=AD_RATE,
        cpu=Fixed(AD_CPU_S),
        io=Fixed(AD_IO_S),
        calls=AD_CALLS,
        requests_per_connection=1,
    )
    for coat, (model, platform_name, field) in PLANNED.items():
        if coat not in per.index or not math.isfinite(per.loc[coat, "kib_per_pending"]):
            continue
        kib = float(per.loc[coat, "kib_per_pending"])
        base = simlab.load_platform(platform_name).with_(cores=AD_CORES)
        changes: dict[str, Any] = {field: kib}
        if field == "thread_kib":
            changes["thread_kernel_kib"] = 0.0  # measured kernel memory is in kib already
        report = plan(
            w, base.with_(**changes), Goals(p99_ms=ad_goal_ms()), models=[model], check="analytic"
        )
        p = report.plans[0]
        ex.add(
            kind="plan",
            coat=coat,
            model=model,
            platform=platform_name,
            platform_note=STAND_IN.get(coat, ""),
            pending_kib_used=kib,
            feasible=p.feasible,
            processes=p.processes,
            threads=p.threads,
            memory_mib=p.memory_mib,
            p99_ms=p.latency_ms.get("p99", math.nan),
            cpu_utilization=p.cpu_utilization,
            reason=p.reason,
        )


def communication_layer(ex: Experiment) -> None:
    """The communication layer's CPU per request in each runtime, from the real
    runs under data/measurements (as the ledger's communication-cpu row reads
    them), so that the hops' CPU can be set beside it."""
    from simlab.claims.costs import communication_overhead  # noqa: PLC0415
    from simlab.claims.evidence import Evidence, MissingFileError  # noqa: PLC0415

    try:
        per = communication_overhead(Evidence())
    except MissingFileError:
        return
    for target, r in per.iterrows():
        ex.add(
            kind="communication",
            coat=str(target),
            runtime=str(target),
            overhead_ms=float(r["overhead_ms"]),
            handler_cpu_ms=float(r["cpu_ms"]),
            runs=int(r["runs"]),
        )


def _ci(lo: float, hi: float) -> str:
    return f"[{lo:.3g}, {hi:.3g}]" if math.isfinite(lo) else "[no interval]"


def _hop_sentence(known: pd.DataFrame, unknown: list[str]) -> str:
    cheap, dear = known["hop_us"].idxmin(), known["hop_us"].idxmax()
    most_ms = AD_CALLS * float(known.loc[dear, "hop_us"]) / 1e3
    return (
        f"- **CPU per hop**: from {known.loc[cheap, 'hop_us']:.3f} us ({cheap}) to "
        f"{known.loc[dear, 'hop_us']:.3f} us ({dear})"
        + (f" (not identified: {joined(unknown)})" if unknown else "")
        + f"; the notes' ad request makes {AD_CALLS} awaits, which cost from "
        f"{AD_CALLS * known.loc[cheap, 'hop_us'] / 1e3:.3f} to {most_ms:.3f} ms of CPU, "
        + compare(most_ms, AD_CPU_S * 1e3, SAME).pick(
            more="more than", less="less than", same="about the same as"
        )
        + f" its own {AD_CPU_S * 1e3:g} ms handler at most."
    )


def findings(df: pd.DataFrame, params: dict[str, Any]) -> str:
    """Every sentence chosen by a rule from the table (and the calibrated thread size)."""
    per = summarise(df).set_index("coat")
    thread = simlab.load_platform(THREAD_PROFILE)
    thread_kib = thread.thread_kib + thread.thread_kernel_kib
    sizes = sorted({int(n) for n in df.loc[df["kind"] == "pending", "n"].dropna()})
    ks = sorted({int(k) for k in df.loc[df["kind"] == "hops", "hops"].dropna()})
    out = [
        "# Callbacks against coroutines\n",
        f"Memory per pending operation: the slope of resident (PSS) plus own kernel memory "
        f"between {joined([f'{n:,}' for n in sizes])} operations each waiting on its own timer. "
        f"CPU per hop: the slope of the process tree's CPU per request against "
        f"{joined([str(k) for k in ks])} hops through the scheduler, "
        f"{int(params.get('concurrency', CONCURRENCY))} requests at once "
        "(95% interval over the repetitions).\n",
        "| coat | wears | KiB per pending operation | CPU per hop (us) [95% CI] | "
        "CPU per request without hops (us) | CPU s per wall s |",
        "|---|---|---|---|---|---|",
    ]
    for coat, r in per.iterrows():
        hop = f"{r['hop_us']:.3f} {_ci(*r['hop_ci95'])}" + (
            "" if r["hop_identified"] else " not identified"
        )
        out.append(
            f"| {coat} | {r['style']} | {r['kib_per_pending']:.2f} | {hop} | "
            f"{r['request_us']:.2f} | {r['cores_used']:.2f} |"
        )
    out.append("")
    if {"node-callbacks", "node-promises"} <= set(per.index):
        cb, pr = per.loc["node-callbacks"], per.loc["node-promises"]
        mem = compare(pr["kib_per_pending"], cb["kib_per_pending"], SAME)
        out.append(
            "- **The two coats on one runtime (Node.js)**: a pending async function on a "
            "promise costs "
            + mem.pick(
                more=f"{pr['kib_per_pending'] / cb['kib_per_pending']:.1f}x the memory of",
                less=f"{cb['kib_per_pending'] / pr['kib_per_pending']:.1f}x less memory than",
                same="the same memory as (within 10%)",
            )
            + f" a pending callback ({pr['kib_per_pending']:.2f} against "
            f"{cb['kib_per_pending']:.2f} KiB), and a hop through an awaited promise costs "
            + {
                "more": f"more CPU than ({pr['hop_us'] / cb['hop_us']:.1f}x)",
                "less": f"less CPU than ({cb['hop_us'] / pr['hop_us']:.1f}x less)",
                "same": "the same CPU as (95% intervals overlap)",
            }[hop_relation(pr, cb)]
            + f" a callback's hop ({pr['hop_us']:.3f} against {cb['hop_us']:.3f} us)."
        )
        across = per["kib_per_pending"].max() / per["kib_per_pending"].min()
        within = max(pr["kib_per_pending"], cb["kib_per_pending"]) / min(
            pr["kib_per_pending"], cb["kib_per_pending"]
        )
        heavy, light = per["kib_per_pending"].idxmax(), per["kib_per_pending"].idxmin()
        out.append(
            f"- **Coat or runtime**: across runtimes a pending operation costs from "
            f"{per.loc[light, 'kib_per_pending']:.2f} KiB ({light}) to "
            f"{per.loc[heavy, 'kib_per_pending']:.2f} KiB ({heavy}), {across:.1f}x apart; "
            f"the two coats on Node.js are {within:.1f}x apart: "
            + (
                "the runtime matters more than the coat"
                if across > within
                else "the coat matters as much as the runtime"
            )
            + "."
        )
    light = per[per["kib_per_pending"] * LIGHTER <= thread_kib]
    heavy = per.drop(light.index)
    out.append(
        f"- **Beside a thread**: a native thread holds {thread_kib:.1f} KiB resident with its "
        f"kernel memory (the calibrated {THREAD_PROFILE} profile); "
        + (
            f"{joined(list(light.index))} hold a pending operation in at least {LIGHTER:g}x less"
            if len(light)
            else f"no coat holds a pending operation in {LIGHTER:g}x less"
        )
        + (
            f", {joined(list(heavy.index))} in less than {LIGHTER:g}x less"
            if len(heavy)
            else ": every coat frees the waiting request from a thread's memory"
        )
        + "."
    )
    known = per[per["hop_identified"]]
    unknown = list(per.index[~per["hop_identified"]])
    if known.empty:
        out.append(
            "- **CPU per hop**: no coat's CPU per hop is identified (every interval reaches zero)."
        )
    else:
        out.append(_hop_sentence(known, unknown))
    comm = df[df["kind"] == "communication"]
    if len(comm):
        lo, hi = comm.loc[comm["overhead_ms"].idxmin()], comm.loc[comm["overhead_ms"].idxmax()]
        hops_ms = AD_CALLS * per.loc[per["hop_identified"], "hop_us"] / 1e3
        rel = compare(float(hops_ms.max()), float(lo["overhead_ms"]), SAME)
        out.append(
            "- **The communication layer's CPU per request**, measured in real runs "
            f"(data/measurements, {len(comm)} servers: the server's CPU per request beyond "
            f"the handler's own {float(comm['handler_cpu_ms'].iloc[0]):g} ms, parsing, "
            f"answering and one backend call's I/O): from {lo['overhead_ms']:.2f} ms "
            f"({lo['coat']}) to {hi['overhead_ms']:.2f} ms ({hi['coat']}), not the notes' "
            f'"almost no CPU". The {AD_CALLS} hops of an ad request cost at most '
            f"{float(hops_ms.max()):.3f} ms in any coat, "
            + rel.pick(more="more than", less="less than", same="about the same as")
            + " the cheapest communication layer's CPU for one request: "
            + rel.pick(
                more="the coat's hops outweigh the layer",
                less="the coat's own cost is small beside the layer's",
                same="the two weigh alike",
            )
            + "."
        )
    plans = df[df["kind"] == "plan"]
    if len(plans):
        out += [
            "",
            f"## The ad service in each runtime ({AD_RATE:g} requests/s, {AD_CALLS} sequential "
            f"calls of {AD_IO_S * 1e3:g} ms, {AD_CPU_S * 1e3:g} ms CPU, {AD_CORES} cores; "
            "analytic plan)\n",
            "| coat | model on platform | verdict | processes | threads (M:N runtimes: "
            "goroutines or processes) | memory MiB | p99 s |",
            "|---|---|---|---|---|---|---|",
        ]
        for _, r in plans.iterrows():
            verdict = "fits the goal" if bool(r["feasible"]) else "does not fit"
            out.append(
                f"| {r['coat']} | {r['model']} on {r['platform']} | {verdict} | "
                f"{_int(r['processes'])} | {_int(r['threads'])} | {r['memory_mib']:,.0f} | "
                f"{r['p99_ms'] / 1e3:.2f} |"
            )
        ok = plans[plans["feasible"].astype(bool)]
        out.append(
            f"\n{len(ok)} of {len(plans)} runtimes serve the ad service within the p99 goal "
            f"({ad_goal_ms() / 1e3:.2f} s)"
            + (
                f", in {ok['memory_mib'].min():,.0f} ({ok.loc[ok['memory_mib'].idxmin(), 'coat']})"
                f" to {ok['memory_mib'].max():,.0f} MiB "
                f"({ok.loc[ok['memory_mib'].idxmax(), 'coat']})"
                if len(ok)
                else ""
            )
            + "."
        )
        for _, r in plans[plans["platform_note"].fillna("") != ""].iterrows():
            out.append(f"{r['coat']}: {r['platform_note']}.")
    failed = df[df["kind"] == "failed"]
    if len(failed):
        out += ["", "## Not measured"]
        out += [f"- **{r['coat']}** failed here: `{r['error']}`" for _, r in failed.iterrows()]
    out += ["", "## Not testable here"]
    out += [f"- **{k}**: {v}." for k, v in UNOBTAINABLE.items()]
    return "\n".join(out) + "\n"


# The name every experiment's saved findings are rebuilt with (tests/test_findings.py).
_findings_from = findings


def _int(x: Any) -> str:
    return f"{int(x):,}" if pd.notna(x) else "-"


def figure(df: pd.DataFrame) -> Any:
    per = summarise(df)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    colours = ["tab:orange" if s == "callbacks" else "tab:blue" for s in per["style"]]
    axes[0].bar(per["coat"], per["kib_per_pending"], color=colours)
    axes[0].set_ylabel("KiB per pending operation")
    axes[1].bar(per["coat"], per["hop_us"], color=colours)
    axes[1].set_ylabel("CPU us per hop")
    for ax in axes:
        ax.tick_params(axis="x", rotation=35)
    fig.suptitle("callbacks (orange) and coroutines (blue), measured")
    fig.tight_layout()
    return fig


def main() -> None:
    args = arguments(__doc__ or "")
    if args.findings_only:
        rewrite_findings(NAME, findings, args.out)
        return
    raise_fd_limit()
    params = {
        "concurrency": CONCURRENCY,
        "sizes": list(QUICK_SIZES if args.quick else SIZES),
        "hops": list(QUICK_HOPS if args.quick else HOPS),
        "hop_ms": QUICK_HOP_MS if args.quick else HOP_MS,
        "ad_rate": AD_RATE,
        "ad_calls": AD_CALLS,
        "ad_cores": AD_CORES,
    }
    with Experiment(NAME, seed=SEED, quick=args.quick, params=params, out=args.out) as ex:
        measure_coats(ex, args.quick)
        plan_ad_service(ex)
        communication_layer(ex)
        for name, why in UNOBTAINABLE.items():
            ex.add(kind="unavailable", coat=name, runtime=name, error=why)
        ex.figure("coats", figure(ex.results()))
        ex.findings(findings(ex.results(), params))
    print(f"wrote {ex.target}")


if __name__ == "__main__":
    main()
