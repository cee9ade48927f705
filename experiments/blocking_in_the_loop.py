"""While the loop runs one request, do the others wait?

The notes' one open question. An async server's handler that calls a
blocking function (a synchronous database driver, ``time.sleep``, a CPU-heavy
step) holds the event loop for the whole call: nothing else on that loop
runs meanwhile. Here a share of the requests makes a 50 ms blocking call;
the question is what it costs the *other* requests, and what helps: handing
the call to a thread pool (``run_in_executor``), more loops (processes),
or a reactor-pool, whose workers block only themselves. Simulated on the
calibrated profile (where each request's type is known, so the others'
latency is read apart), and measured for real with simlab's async and
reactor-pool servers (``block_ms`` in the query, ``--offload``).

Run: ``python experiments/blocking_in_the_loop.py [--quick]``.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import simlab
from simlab.experiment import Experiment, arguments, rewrite_findings
from simlab.overload.rules import compare
from simlab.real.measure import MeasureOptions, measure
from simlab.scenario import build

NAME = "blocking_in_the_loop"
SEED = 1
CONNECTIONS, RATE_RPS, CPU_MS, IO_MS = 500, 100.0, 1.0, 20.0
BLOCKING_MS, BLOCKING_SHARE = 50.0, 0.05
SHARES = (0.0, 0.01, 0.02, 0.05, 0.1)
OFFLOAD_THREADS, LOOPS, POOL_WORKERS = 8, 2, 32
DURATION_S, WARMUP_S, REPLICATIONS = 60.0, 5.0, 3
REAL_DURATION_S, REAL_WARMUP_S = 15.0, 2.0
QUICK_DURATION_S, QUICK_REAL_DURATION_S = 10.0, 4.0
SAME = 0.1  # relative change under which two latencies count as the same
# (label, model, options on top of the blocking mix)
FIXES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("async, no blocking call", "async", {"blocking_share": 0.0}),
    ("async", "async", {}),
    ("async, offloaded", "async", {"offload": True, "workers": OFFLOAD_THREADS}),
    (f"async, {LOOPS} loops", "async", {"processes": LOOPS}),
    ("reactor-pool", "reactor-pool", {"workers": POOL_WORKERS}),
)
QUICK_FIXES = ("async, no blocking call", "async", "async, offloaded")


def options(share: float, quick: bool, **extra: Any) -> dict[str, Any]:
    return {
        "connections": CONNECTIONS,
        "rate": RATE_RPS,
        "cpu_ms": CPU_MS,
        "io_ms": IO_MS,
        "blocking_ms": BLOCKING_MS,
        "blocking_share": share,
        "duration": QUICK_DURATION_S if quick else DURATION_S,
        "warmup": WARMUP_S,
        "replications": 1 if quick else REPLICATIONS,
        "seed": SEED,
        "timeline": True,
        **extra,
    }


def simulated(model: str, opts: dict[str, Any]) -> dict[str, Any]:
    s = build(opts)
    r = simlab.simulate(model, s.workload, s.platform, s.architecture, **s.run.kwargs())
    df = r.requests
    done = df[df["measured"] & (df["outcome"] == "completed")]
    latency = (done["end"] - done["arrival"]) * 1e3
    blocked = done["blocking"] > 0 if "blocking" in done else np.zeros(len(done), bool)
    others = latency[~np.asarray(blocked)]
    return {
        "p50_ms": r.summary.latency_ms.p50,
        "p99_ms": r.summary.latency_ms.p99,
        "others_p50_ms": float(np.percentile(others, 50)),
        "others_p99_ms": float(np.percentile(others, 99)),
        "others_mean_ms": float(others.mean()),
        "throughput_rps": r.summary.throughput_rps,
        "threads": r.summary.threads.peak,
    }


def measured(model: str, opts: dict[str, Any], quick: bool) -> dict[str, Any]:
    s = build(opts)
    m = measure(
        MeasureOptions(
            target=model,
            workload=s.workload,
            architecture=s.architecture,
            duration=QUICK_REAL_DURATION_S if quick else REAL_DURATION_S,
            warmup=REAL_WARMUP_S,
            seed=SEED,
            save=False,
        )
    ).summary
    return {
        "p50_ms": m.latency_ms.p50,
        "p99_ms": m.latency_ms.p99,
        "throughput_rps": m.throughput_rps,
        "threads": m.threads.peak,
    }


def plots(ex: Experiment) -> None:
    df = ex.table()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    sweep = df[df["part"] == "share"].sort_values("share")
    axes[0].plot(sweep["share"] * 100, sweep["others_p99_ms"], "o-", label="others' p99")
    axes[0].plot(sweep["share"] * 100, sweep["others_p50_ms"], "s-", label="others' p50")
    axes[0].set_xlabel(f"share of requests with a {BLOCKING_MS:g} ms blocking call (%)")
    axes[0].set_ylabel("latency of the requests that do not block (ms)")
    axes[0].set_title("async, one loop (simulated)")
    fixes = df[df["part"] == "fix"]
    labels = list(dict.fromkeys(fixes["fix"]))
    xs = np.arange(len(labels))
    for k, source in enumerate(("simulated", "measured")):
        part = fixes[fixes["source"] == source].set_index("fix").reindex(labels)
        axes[1].bar(xs + (k - 0.5) * 0.38, part["p99_ms"], 0.38, label=f"p99, {source}")
    axes[1].set_xticks(xs, labels, rotation=20, fontsize=8)
    axes[1].set_ylabel("p99 of all requests (ms)")
    axes[1].set_title(f"{BLOCKING_SHARE:.0%} of requests block {BLOCKING_MS:g} ms: the fixes")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    ex.figure("blocking", fig)
    plt.close(fig)


def _findings_from(df: pd.DataFrame, params: dict[str, Any]) -> str:
    """The findings of a saved run, with the parameters it recorded in meta.json."""
    return findings(
        df,
        rate=float(params["rate"]),
        blocking_ms=float(params["blocking_ms"]),
        blocking_share=float(params["blocking_share"]),
    )


def findings(df: pd.DataFrame, *, rate: float, blocking_ms: float, blocking_share: float) -> str:
    """The findings, every verdict from the table (``compare`` with ``SAME``)."""
    sweep = df[df["part"] == "share"].set_index("share")
    fixes = df[df["part"] == "fix"]
    sim = fixes[fixes["source"] == "simulated"].set_index("fix")
    real = fixes[fixes["source"] == "measured"].set_index("fix")
    base, hit = sweep.loc[0.0], sweep.loc[blocking_share]
    verdict = compare(hit["others_p99_ms"], base["others_p99_ms"], SAME)
    lines = [
        "# Blocking inside the loop\n",
        f"An async server (one loop) at {rate:g} req/s, each request {CPU_MS:g} ms of CPU "
        f"and one {IO_MS:g} ms backend call; a share of them also makes a {blocking_ms:g} ms "
        "blocking call from the handler.\n",
        "**Do the others wait?** "
        + (
            f"Yes. With {blocking_share:.0%} of the requests blocking, the requests that do "
            f"not block wait for the loop: their p99 is {hit['others_p99_ms']:,.0f} ms against "
            f"{base['others_p99_ms']:,.0f} ms when nothing blocks (mean "
            f"{hit['others_mean_ms']:,.1f} ms against {base['others_mean_ms']:,.1f} ms)."
            if verdict == "more"
            else f"Not measurably: their p99 is {hit['others_p99_ms']:,.0f} ms against "
            f"{base['others_p99_ms']:,.0f} ms when nothing blocks (within {SAME:.0%})."
        ),
        "\n| blocking share | others' p50 (ms) | others' p99 (ms) |",
        "|---|---|---|",
    ]
    for share, r in sweep.iterrows():
        lines.append(f"| {share:.0%} | {r['others_p50_ms']:,.1f} | {r['others_p99_ms']:,.1f} |")
    lines.append(f"\n**What helps** ({blocking_share:.0%} blocking; p99 of all requests):\n")
    lines.append("| server | simulated p99 (ms) | others' p99, simulated | measured p99 (ms) |")
    lines.append("|---|---|---|---|")
    for label in sim.index:
        m = real["p99_ms"].get(label, float("nan"))
        lines.append(
            f"| {label} | {sim.loc[label, 'p99_ms']:,.0f} | "
            f"{sim.loc[label, 'others_p99_ms']:,.0f} | {m:,.0f} |"
        )
    lines.append("")  # the list below is not part of the table
    stuck = sim.loc["async", "others_p99_ms"]
    for label in sim.index:
        if label in ("async", "async, no blocking call"):
            continue
        rel = compare(sim.loc[label, "others_p99_ms"], stuck, SAME)
        word = {"less": "cuts", "more": "raises", "same": "leaves"}[rel]
        lines.append(
            f"- {label} {word} the others' p99 ({sim.loc[label, 'others_p99_ms']:,.0f} ms "
            f"against {stuck:,.0f} ms with one loop and the call on it; simulated)."
        )
    fixed = real.drop(index=["async", "async, no blocking call"], errors="ignore")
    if "async" in real.index:
        stuck_real = real.loc["async", "p99_ms"]
        for label, r in fixed.iterrows():
            rel = compare(r["p99_ms"], stuck_real, SAME)
            word = {"less": "cuts", "more": "raises", "same": "leaves"}[rel]
            lines.append(
                f"- measured, {label} {word} the p99 of all requests ({r['p99_ms']:,.0f} ms "
                f"against {stuck_real:,.0f} ms with one loop and the call on it)."
            )
    if "async" in real.index and "async, no blocking call" in real.index:
        rel = compare(
            real.loc["async", "p99_ms"], real.loc["async, no blocking call", "p99_ms"], SAME
        )
        lines.append(
            f"\nMeasured, the blocking calls {'raise' if rel == 'more' else 'do not raise'} the "
            f"real async server's p99: {real.loc['async', 'p99_ms']:,.0f} ms against "
            f"{real.loc['async, no blocking call', 'p99_ms']:,.0f} ms without them."
        )
    return "\n".join(lines)


def main() -> None:
    args = arguments(__doc__ or "")
    if args.findings_only:
        rewrite_findings(NAME, _findings_from, args.out)
        return
    quick = args.quick
    fixes = [f for f in FIXES if not quick or f[0] in QUICK_FIXES]
    shares = (0.0, BLOCKING_SHARE) if quick else SHARES
    params = {"rate": RATE_RPS, "blocking_ms": BLOCKING_MS, "blocking_share": BLOCKING_SHARE}
    with Experiment(NAME, seed=SEED, quick=quick, params=params, out=args.out) as ex:
        for share in shares:
            row = simulated("async", options(share, quick))
            ex.add(part="share", source="simulated", fix="async", share=share, **row)
            print(f"share {share:.0%}: others' p99 {row['others_p99_ms']:.1f} ms", flush=True)
        for label, model, extra in fixes:
            opts = options(BLOCKING_SHARE, quick, **extra)
            share = opts["blocking_share"]
            ex.add(part="fix", source="simulated", fix=label, share=share,
                   **simulated(model, opts))  # fmt: skip
            row = measured(model, opts, quick)
            ex.add(part="fix", source="measured", fix=label, share=share, **row)
            print(f"{label:28s} measured p99 {row['p99_ms']:.1f} ms", flush=True)
        plots(ex)
        ex.findings(_findings_from(ex.results(), params))
    print(f"wrote {ex.target}")


if __name__ == "__main__":
    main()
