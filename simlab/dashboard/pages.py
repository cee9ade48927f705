"""The dashboard's pages: Explore, Compare, Plan, Reality check, The story, Experiments.

Each page is a function of the scenario; heavy results are cached with
``st.cache_data`` on the (hashable) scenario, and every simulation shows a
spinner or a progress bar.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from simlab.cli.output import fmt
from simlab.dashboard import charts, compute
from simlab.dashboard.compute import Scenario
from simlab.metrics import replication_levels, series
from simlab.models import Analytic
from simlab.models.base import COMPLETED
from simlab.results import SimSummary
from simlab.simulation import Result

__all__ = ["compare_page", "experiments_page", "explore_page", "plan_page"]


@st.cache_data(show_spinner=False, max_entries=64)
def _idle(s: Scenario, models: tuple[str, ...]) -> pd.DataFrame:
    return compute.idle_cost_curve(s, models)


@st.cache_data(show_spinner=False, max_entries=64)
def _capacity(s: Scenario, models: tuple[str, ...]) -> pd.DataFrame:
    return compute.capacity_curve(s, models)


@st.cache_data(show_spinner=False, max_entries=64)
def _result(s: Scenario, model: str) -> Result:
    return compute.one_run(s, model)


@st.cache_data(show_spinner=False, max_entries=32)
def _run(s: Scenario, model: str) -> dict[str, Any]:
    r = _result(s, model)
    theory = None
    if isinstance(r.analytic, Analytic):
        theory = {"queue": r.analytic.queue, "exact": r.analytic.exact, **r.analytic.values}
    # Read from the replications' columns, not ``r.requests`` and ``r.series``:
    # those tables hold every request and every replication's levels, and
    # building them took a fifth of a control change's run on the server.
    waits = []
    for rec in r.records:
        c = rec.columns
        t0, t1 = rec.window
        kept = (c["arrival"] >= t0) & (c["arrival"] < t1) & (c["outcome"] == COMPLETED)
        waits.append((c["end"][kept] - c["arrival"][kept] - c["service"][kept]) * 1e3)
    first = r.records[0]
    return {
        "summary": r.summary,
        "waits_ms": np.clip(np.concatenate(waits), 0.0, None),
        "series": pd.DataFrame(series(first, replication_levels(first, r.platform))),
        "theory": theory,
    }


@st.cache_resource(show_spinner=False, max_entries=64)
def _explore_data(s: Scenario, models: tuple[str, ...]) -> tuple[dict[str, pd.DataFrame], str]:
    """The estimates' charts' datasets, once per scenario (``cache_resource``: a hit
    costs nothing, where ``cache_data`` would pickle them again; nothing mutates
    them): the sizes against connections, the hockey stick, the scenario's rate."""
    idle = _idle(s, models)
    cap = _capacity(s, models)
    # Each chart gets only the columns it draws, so that a control that moves
    # one of them (the rate moves resident memory, through the tasks in
    # flight, and not the threads) leaves the other charts' data as they were.
    threads = idle[["model", "connections", "threads"]]
    memory = idle[["model", "connections", "resident_mib", "reserved_mib"]]
    hockey = cap[["model", "rate", "p99_ms"]].astype({"p99_ms": "float64"})
    yours = pd.DataFrame({"rate": [s.rate], "label": ["your rate"]})
    saturated = cap.groupby("model", sort=False)["rate"].max()
    saturation = ", ".join(f"{m} at {r:,.0f} req/s" for m, r in saturated.items())
    return {"threads": threads, "memory": memory, "hockey": hockey, "yours": yours}, saturation


@st.cache_resource(show_spinner=False, max_entries=64)
def _run_data(s: Scenario, focus: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One run's datasets: its queueing delays binned (60 counts reach the
    browser, not every request's wait), the theory's mean where a formula
    applies (else no row), and the levels over time."""
    run = _run(s, focus)
    theory = run["theory"]
    rows = []
    if theory and "queue_delay_mean_ms" in theory:
        rows.append({"ms": float(theory["queue_delay_mean_ms"]),
                     "label": f"theory mean ({theory['queue']})"})  # fmt: skip
    means = pd.DataFrame(rows, columns=["ms", "label"]).astype({"ms": "float64", "label": str})
    return charts.delay_histogram(run["waits_ms"]), means, charts.levels_table(run["series"])


PICKED = "focus_picked"


def _picked() -> None:
    st.session_state[PICKED] = True


def _chart(spec: charts.Spec, key: str, **datasets: pd.DataFrame) -> None:
    st.vega_lite_chart(charts.with_data(spec, **datasets), width="stretch", key=key)


def _fmt(x: Any, digits: int = 1) -> str:
    return fmt(x, digits)


def explore_page(s: Scenario, models: tuple[str, ...], started: float | None = None) -> None:
    """The Explore page. ``started``: when the script run began (``time.perf_counter``),
    so that the page can say how long the server took to answer."""
    began = time.perf_counter() if started is None else started
    st.header("Explore")
    st.caption(
        "Threads and memory from simlab's memory model (docs: design), latency from the "
        "queueing formulas the planner uses (Erlang C, Allen-Cunneen, Pollaczek-Khinchine), "
        "and one simulated run of the model you pick. Change any control in the sidebar."
    )
    tick = time.perf_counter()
    data, saturation = _explore_data(s, models)
    curves_s = time.perf_counter() - tick
    st.markdown(
        "**At steady state, as configured** (an estimate: every connection has sent a "
        "request, so every forked child is touched and every thread holds its backend "
        "connection; the Compare page shows the simulated peak over its run)"
    )
    cols = st.columns(len(models))
    for col, model in zip(cols, models, strict=True):
        threads, resident, reserved = compute.steady_state(s, model)
        col.metric(f"{model}: threads", fmt(threads))
        col.metric("resident MiB", fmt(resident))
        col.metric("reserved MiB", fmt(reserved))
    # Keyed, with constant specs: a control change swaps only the changed
    # datasets into the charts already drawn (simlab.dashboard.charts says why).
    left, right = st.columns(2)
    with left:
        _chart(charts.threads_spec(models), "threads_chart", curve=data["threads"])
    with right:
        _chart(charts.memory_spec(models), "memory_chart", curve=data["memory"])
    _chart(charts.hockey_spec(models), "hockey_chart", curve=data["hockey"], yours=data["yours"])
    st.caption(
        "Each line ends where the model saturates (rho = 1): "
        + saturation
        + ". Exact M/M/c points (ideal platform, exponential service) use Erlang C's tail."
    )

    # Until the user picks a model, the run follows the scenario: the first
    # model that keeps up with it, the fast engine's first among them
    # (compute.first_stable). Left to itself, Streamlit would keep the model
    # picked for the first scenario, and a change that puts that model on the
    # DES (short connections, say) would wait for the DES: 0.3-0.6 s of an
    # answer meant to take 0.5 s.
    if not st.session_state.get(PICKED) or st.session_state.get("focus") not in models:
        st.session_state["focus"] = compute.first_stable(s, models)
    focus = st.selectbox(
        "Simulate one model",
        models,
        key="focus",
        on_change=_picked,
        help="Until you pick one: the first model that keeps up with the scenario, "
        "on the fast engine where it applies.",
    )
    tick = time.perf_counter()
    with st.spinner(f"simulating {focus}..."):
        run = _run(s, focus)
        delay, means, levels = _run_data(s, focus)
    run_s = time.perf_counter() - tick
    summary: SimSummary = run["summary"]
    if not summary.stable:
        st.warning(f"{focus} is overloaded here: {'; '.join(summary.stability.reasons)}")
    left, right = st.columns(2)
    with left:
        _chart(charts.delay_spec(), "delay_chart", delay=delay, theory=means)
    with right:
        _chart(charts.levels_spec(), "levels_chart", levels=levels)
    lat = summary.latency_ms
    low, high = lat.p99_ci95 or (None, None)
    st.markdown(
        f"**{focus}** ({summary.engine} engine, {summary.replications} replications): "
        f"p50 {_fmt(lat.p50)} ms, p99 {_fmt(lat.p99)} ms "
        f"(95% CI {_fmt(low)}-{_fmt(high)}), "
        f"throughput {_fmt(summary.throughput_rps)} req/s."
    )
    # Where a control change's time goes on the server (the browser test
    # subtracts it from what it waited to find the front end's share).
    st.caption(server_time_caption(time.perf_counter() - began, curves_s, run_s))
    # Last on the page: what all of the above was computed for (the browser
    # test also reads it to know that a control change has been answered).
    st.caption("Computed for: " + ", ".join(f"{k} {v}" for k, v in s.describe().items()))


SERVER_TIME = "Answered on the server in "


def server_time_caption(total_s: float, curves_s: float, run_s: float) -> str:
    """The page's account of its own script run: the whole, the estimates' curves
    and their data, the simulated run (each nearly 0 when cached); the browser
    then swaps the data that changed into the charts it has drawn."""
    return (
        f"{SERVER_TIME}{total_s:.2f} s: the estimates' curves {curves_s:.2f} s, "
        f"the simulated run {run_s:.2f} s (each about 0 when this scenario was seen "
        "before); the browser then swaps the data that changed into the charts it has drawn."
    )


def simulated_table(s: Scenario, models: tuple[str, ...]) -> pd.DataFrame:
    """Every chosen model's run (the same runs on every page), with a progress bar."""
    bar = st.progress(0.0, text="simulating...")
    results: list[Result] = []
    for k, m in enumerate(models):
        bar.progress(k / len(models), text=f"simulating {m}...")
        results.append(_result(s, m))
    bar.progress(1.0, text="done")
    return compute.compare_table(results)


def compare_page(s: Scenario, models: tuple[str, ...]) -> None:
    st.header("Compare")
    run = compute.RUN
    st.caption(
        "Every chosen model simulated on the same scenario and seed (fast engine where "
        f"it applies): the peak over {run.duration:g} s after {run.warmup:g} s of warm-up, "
        f"95% confidence intervals from {run.replications} replications."
    )
    table = simulated_table(s, models)
    st.dataframe(table, width="stretch", hide_index=True, key="compare_df")
    unstable = table[~table["stable"].astype(bool)]
    for _, row in unstable.iterrows():
        st.warning(f"{row['model']} is overloaded: {row['why_unstable']}")
    st.download_button(
        "Download CSV",
        table.to_csv(index=False),
        "simlab-compare.csv",
        "text/csv",
        key="compare_csv",
    )


def plan_page(s: Scenario) -> None:
    st.header("Plan")
    st.caption(
        "The fewest workers and processes of each model that meet the goal on this "
        "scenario (sidebar), searched with queueing formulas and, if you ask, "
        "confirmed by the DES."
    )
    with st.form("plan_form"):
        p99 = st.number_input(
            "p99 latency goal (ms)", 1.0, 3_600_000.0, value=100.0, key="plan_p99"
        )
        budget = st.number_input(
            "Memory budget (GiB, 0 = none)", 0.0, 100_000.0, value=4.0, key="plan_budget"
        )
        confirm = st.checkbox("Confirm with the DES (slower)", key="plan_confirm")
        across = st.multiselect(
            "Across platforms (instead of the sidebar's): every model on each, ranked",
            compute.platform_names(),
            default=[],
            key="plan_platforms",
        )
        st.form_submit_button("Plan")
    if across:
        with st.spinner("planning on each platform..."):
            both = _plan_across(s, tuple(across), float(p99), float(budget) or None, bool(confirm))
        _across_tables(both)
        return
    with st.spinner("planning..."):
        out = _plan(s, float(p99), float(budget) or None, bool(confirm))
    plans = pd.DataFrame(
        [
            {
                "model": p["model"],
                "feasible": p["feasible"],
                "workers": p["workers"],
                "processes": p["processes"],
                "threads": p["threads"],
                "resident MiB": p["memory_mib"],
                "reserved MiB": p["virtual_mib"],
                "p50 ms": p["latency_ms"].get("p50"),
                "p99 ms": p["latency_ms"].get("p99"),
                "max connections": p["max_connections"],
                "why not": p["reason"],
            }
            for p in out["plans"]
        ]
    )
    st.dataframe(plans, width="stretch", hide_index=True, key="plan_df")
    st.subheader(f"Recommended: {out['recommended'] or 'none'}")
    st.write(out["explanation"])
    if "max_connections" in out:
        st.markdown("**Most connections within the budget**")
        st.dataframe(pd.DataFrame([out["max_connections"]]), hide_index=True, key="maxconn_df")
    st.markdown("**Highest rate within the goal** (each model's planned configuration)")
    rates = pd.DataFrame(out["max_rate"])[
        ["model", "workers", "processes", "max_rate_rps", "limit"]
    ]
    st.dataframe(rates, hide_index=True, key="maxrate_df")


def _across_tables(out: dict[str, Any]) -> None:
    for title, key in (("Ranked by memory", "by_memory"), ("Ranked by cores", "by_cores")):
        st.markdown(f"**{title}**")
        rows = [
            {
                "model": c["model"],
                "platform": c["platform"],
                "workers": c["workers"],
                "processes": c["processes"],
                "threads": c["threads"],
                "resident MiB": c["memory_mib"],
                "reserved MiB": c["virtual_mib"],
                "cores busy": c["cores_busy"],
                "p99 ms": c["latency_ms"].get("p99"),
            }
            for c in out[key]
        ]
        st.dataframe(pd.DataFrame(rows), width="stretch", hide_index=True, key=f"across_{key}")
    winner = out["winner"]
    st.subheader("Winner: " + (f"{winner[0]} on {winner[1]}" if winner else "none"))
    st.write(out["explanation"])


@st.cache_data(show_spinner=False, max_entries=8)
def _plan_across(
    s: Scenario, platforms: tuple[str, ...], p99: float, budget: float | None, confirm: bool
) -> dict[str, Any]:
    return compute.plan_across(s, platforms, p99, budget, confirm=confirm)


@st.cache_data(show_spinner=False, max_entries=16)
def _plan(s: Scenario, p99: float, budget: float | None, confirm: bool) -> dict[str, Any]:
    return compute.plan_report(s, p99, budget, confirm=confirm)


def experiments_page() -> None:
    st.header("Experiments")
    st.caption(
        "Each experiment's findings are generated from its own data "
        "(experiments/<name>.py writes $SIMLAB_DATA/experiments/<name>/)."
    )
    found = compute.experiments()
    if not found:
        st.info(
            "No experiments yet: run a script in experiments/ (each writes "
            "data/experiments/<name>/ with results, figures and findings)."
        )
        return
    name = st.selectbox("Experiment", [p.name for p in found], key="experiment")
    folder = next(p for p in found if p.name == name)
    findings = folder / "findings.md"
    if findings.exists():
        st.markdown(findings.read_text())
    for csv in sorted(folder.glob("*.csv")):
        st.markdown(f"**{csv.name}**")
        st.dataframe(pd.read_csv(csv), hide_index=True)
    for png in sorted(folder.glob("*.png")):
        st.image(str(png), caption=png.name)
    meta = folder / "meta.json"
    if meta.exists():
        st.json(json.loads(meta.read_text()), expanded=False)
