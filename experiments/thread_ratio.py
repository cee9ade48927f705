"""How many business threads does each connection need, from the first generation to the second?

The notes: in the first generation the business layer needs 2-3 orders of
magnitude fewer threads than there are connections ("业务逻辑层需要的线程数，
比通信层小2-3个数量级"); as requests grow to seconds of waiting the ratio
shrinks, and in the ad service it returns to 1:1 ("重新回来1:1这个比例"); the
second generation needs no business thread per waiting request.

Simulated: the planner (analytic) sizes each architecture for the notes'
workloads on the jvm preset and the calibrated cpython profile: the C10K case
(10,000 connections, 100 req/s, a 50 ms call), the same with the call grown to
500 ms and 2 s, and the ad service (1000 req/s, 60 sequential 100 ms calls, a
connection per request). Business threads are the pool's workers (a
reactor-pool), a thread per connection (thread-per-connection), or the loops'
threads (async). The ad service's rows also come from the committed
ad_service_fanout experiment (DES-checked). Measured: every committed real run
in data/measurements (all of a server's threads, against its connections).

Run: ``python experiments/thread_ratio.py [--quick]``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

import simlab
from simlab import Fixed, Workload
from simlab.experiment import Experiment, arguments, rewrite_findings
from simlab.findings import joined
from simlab.paths import data_root
from simlab.planner import Goals, plan

NAME = "thread_ratio"
SEED = 1
PLATFORMS, QUICK_PLATFORMS = ("jvm", "cpython"), ("jvm",)
FIRST, SECOND = "reactor-pool", "async"
ONE_TO_ONE = "thread-per-connection"
MODELS = (ONE_TO_ONE, FIRST, SECOND)
C10K_WAITS_MS = (50.0, 500.0, 2000.0)  # the notes: under 100 ms, then 500 ms, then seconds
QUICK_WAITS_MS = (50.0,)
CONNECTIONS, RATE, CPU_MS = 10_000, 100.0, 1.0
AD_RATE, AD_CALLS, AD_CALL_MS = 1000.0, 60, 100.0
P99_FACTOR, P99_SLACK_MS = 1.5, 20.0  # the p99 goal: 1.5x the request's own time + 20 ms
# Real servers by the generation they belong to (simlab.real.peers; simlab's own).
MEASURED_GENERATION = {
    "nginx-php-fpm": "first",
    "nginx-uwsgi": "first",
    "tomcat-nio": "first",
    "gunicorn-gthread": "first",
    "reactor-pool": "first",
    "java-threads": "one-to-one",
    "thread-per-connection": "one-to-one",
    "go": "second",
    "node": "second",
    "async": "second",
    "uvicorn": "second",
}
GENERATION = {ONE_TO_ONE: "one-to-one", FIRST: "first", SECOND: "second"}
NOTES_ORDERS = (2.0, 3.0)  # "2-3个数量级"
NOTES_WAIT_MS = 100.0  # "每个请求往往只需要100ms以内": the first generation's own case
ORDER_TOL = 0.25  # within a quarter of an order of the notes' range
SAME = 0.10  # a ratio within 10% of 1 is 1:1


def orders(connections: float, threads: float) -> float:
    """Orders of magnitude between connections and business threads."""
    return math.log10(connections / threads) if threads > 0 else math.inf


def planned(
    model: str, platform: str, scenario: str, w: Workload, in_use: float, *, notes_case: bool
) -> dict[str, Any]:
    """One planner answer as a row: business threads against connections in use."""
    own_ms = (CPU_MS + w.calls * w.io.mean * 1e3) if w.fanout == "sequential" else 0.0
    goal = P99_FACTOR * own_ms + P99_SLACK_MS
    report = plan(
        w, simlab.load_platform(platform), Goals(p99_ms=goal), models=[model], check="analytic"
    )
    p = report.plans[0]
    if not p.feasible:
        business = math.nan
    elif p.workers is not None:
        business = float(p.workers * (p.processes or 1))
    else:
        business = float(p.threads or 0)
    return {
        "generation": GENERATION[model],
        "scenario": scenario,
        "model": model,
        "platform": platform,
        "source": "simulated",
        "engine": "analytic",
        "connections": in_use,
        "business_threads": business,
        "threads": p.threads,
        "threads_per_connection": business / in_use,
        "orders": orders(in_use, business),
        "p99_goal_ms": goal,
        "feasible": p.feasible,
        "notes_case": notes_case,
        "wait_ms": w.calls * w.io.mean * 1e3,
    }


def c10k(wait_ms: float) -> Workload:
    return Workload(
        connections=CONNECTIONS,
        rate=RATE,
        cpu=Fixed(CPU_MS / 1e3),
        io=Fixed(wait_ms / 1e3),
        calls=1,
    )


def committed_ad_service() -> list[dict[str, Any]]:
    """The ad service's DES-checked plans from the committed experiment."""
    path = data_root() / "experiments" / "ad_service_fanout" / "results.csv"
    if not path.exists():
        return []
    df = pd.read_csv(path)
    full = df[(df["source"] == "simulated") & (df["rate"] == df["rate"].max())]
    rows = []
    for _, r in full.iterrows():
        in_use = float(r["rate"]) * float(r["p50_ms"]) / 1e3
        business = float(r["workers"]) if pd.notna(r["workers"]) else float(r["threads"])
        rows.append(
            {
                "generation": GENERATION[str(r["model"])],
                "scenario": f"ad service, {r['fanout']} calls",
                "model": r["model"],
                "platform": "jvm",
                "source": "simulated",
                "engine": "des (ad_service_fanout)",
                "connections": in_use,
                "business_threads": business,
                "threads": float(r["threads"]),
                "threads_per_connection": business / in_use,
                "orders": orders(in_use, business),
                "feasible": True,
                "notes_case": False,
            }
        )
    return rows


def measured() -> list[dict[str, Any]]:
    """Every committed real run: all its threads against its connections."""
    rows = []
    for path in sorted((data_root() / "measurements").glob("*.json")):
        if path.name.startswith("memory"):
            continue
        s = json.loads(path.read_text()).get("summary")
        if not isinstance(s, dict) or s.get("model") not in MEASURED_GENERATION:
            continue
        n = float((s.get("workload") or {}).get("connections") or 0)
        threads = float(s["threads"]["peak"])
        rows.append(
            {
                "generation": MEASURED_GENERATION[s["model"]],
                "scenario": f"measured, {int(n):,} connections",
                "model": s["model"],
                "platform": s.get("platform") or "cpython",
                "source": "measured",
                "engine": "real",
                "connections": n,
                "business_threads": threads,
                "threads": threads,
                "threads_per_connection": threads / n,
                "orders": orders(n, threads),
                "feasible": bool(s.get("stable")),
                "notes_case": False,
                "file": path.name,
            }
        )
    return rows


def findings(df: pd.DataFrame) -> str:
    """Every sentence chosen by a rule from the table."""
    out = [
        "# Business threads per connection",
        "",
        "| generation | scenario | model | platform | source | connections | business threads "
        "| orders of magnitude fewer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in df.iterrows():
        bt = r["business_threads"]
        out.append(
            f"| {r['generation']} | {r['scenario']} | {r['model']} | {r['platform']} | "
            f"{r['source']} | {float(r['connections']):,.0f} | "
            f"{'infeasible' if pd.isna(bt) else f'{float(bt):,.0f}'} | "
            f"{round(float(r['orders']), 1) or 0.0:.1f} |"
        )
    out.append("")
    lo, hi = NOTES_ORDERS
    sim = df[df["source"] == "simulated"]
    first = sim[(sim["generation"] == "first") & sim["scenario"].str.startswith("C10K")]
    for wait, g in first.groupby("scenario", sort=False):
        inside = g["orders"].between(lo - ORDER_TOL, hi + ORDER_TOL)
        verdict = (
            "within the notes' 2-3 orders (a quarter of an order either way)"
            if inside.all()
            else "outside the notes' 2-3 orders"
        )
        out.append(
            f"- **first generation, {wait}**: business threads are "
            f"{g['orders'].min():.1f} to {g['orders'].max():.1f} orders of magnitude fewer "
            f"than connections ({joined(list(g['platform']))}): {verdict}."
        )
    by_wait = first.groupby("wait_ms")["orders"].mean().sort_index()
    if len(by_wait) > 1:
        shrinks = bool((by_wait.diff().dropna() < 0).all())
        out.append(
            f"- As the wait grows from {by_wait.index[0]:g} to {by_wait.index[-1]:g} ms the "
            f"orders fall from {by_wait.iloc[0]:.1f} to {by_wait.iloc[-1]:.1f}"
            + (
                ": the ratio shrinks with every step, as the notes say."
                if shrinks
                else ": not at every step."
            )
        )
    ad = sim[(sim["generation"] == "first") & sim["scenario"].str.startswith("ad service")]
    for _, r in ad.iterrows():
        ratio = float(r["threads_per_connection"])
        state = "1:1 (within 10%)" if abs(ratio - 1) <= SAME else "not 1:1"
        out.append(
            f"- **{r['scenario']}**, {r['model']} ({r['engine']}): {ratio:.2f} business "
            f"threads per connection in use: {state}."
        )
    second = sim[sim["generation"] == "second"]
    if len(second):
        out.append(
            f"- **second generation** (async): {second['orders'].min():.1f} to "
            f"{second['orders'].max():.1f} orders of magnitude fewer threads than connections "
            f"in every scenario, {int(second['business_threads'].max())} threads at most."
        )
    real = df[df["source"] == "measured"]
    if len(real):
        out += ["", "Measured on this machine (all of each server's threads):", ""]
        for gen, g in real.groupby("generation", sort=True):
            out.append(
                f"- {gen}: "
                + joined(
                    [
                        f"{r.model} {float(r.threads_per_connection):.3f} threads per "
                        f"connection ({round(float(r.orders), 1) or 0.0:.1f} orders)"
                        for r in g.itertuples()
                    ]
                )
            )
    return "\n".join(out) + "\n"


def figure(df: pd.DataFrame) -> Any:
    """Orders of magnitude between connections and business threads, by row."""
    labels = [f"{r.scenario}: {r.model} ({r.platform}, {r.source})" for r in df.itertuples()]
    gens = sorted(set(df["generation"]))
    colours = {g: plt.get_cmap("tab10")(i) for i, g in enumerate(gens)}
    fig, ax = plt.subplots(figsize=(8, 0.22 * len(df) + 1.5))
    ax.barh(labels, df["orders"].fillna(0), color=[colours[g] for g in df["generation"]])
    lo, hi = NOTES_ORDERS
    ax.axvspan(lo, hi, color="grey", alpha=0.2, label="the notes' 2-3 orders")
    ax.invert_yaxis()
    ax.set_xlabel("log10(connections / business threads)")
    for g in gens:
        ax.barh([labels[0]], [0], color=colours[g], label=g)
    ax.legend(fontsize=7)
    ax.tick_params(axis="y", labelsize=6)
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
        "connections": CONNECTIONS,
        "rate": RATE,
        "cpu_ms": CPU_MS,
        "ad_rate": AD_RATE,
        "ad_calls": AD_CALLS,
        "ad_call_ms": AD_CALL_MS,
    }
    waits = QUICK_WAITS_MS if args.quick else C10K_WAITS_MS
    with Experiment(NAME, seed=SEED, quick=args.quick, params=params, out=args.out) as ex:
        for platform in QUICK_PLATFORMS if args.quick else PLATFORMS:
            for wait in waits:
                for model in MODELS:
                    scenario = f"C10K, {wait:g} ms waits"
                    case = wait <= NOTES_WAIT_MS
                    row = planned(
                        model, platform, scenario, c10k(wait), CONNECTIONS, notes_case=case
                    )
                    ex.add(**row)
        for row in committed_ad_service():
            ex.add(**row)
        for row in measured():
            ex.add(**row)
        ex.figure("ratio", figure(ex.results()))
        ex.findings(findings(ex.results()))


if __name__ == "__main__":
    main()
