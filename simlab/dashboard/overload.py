"""The dashboard's Overload page: one model through a rate schedule (a burst),
with the clients' timeout policy and the server's concurrency limit, plotted
second by second from the run's timeline (``simlab.overload.timeline``).

``overload_run`` computes without Streamlit (testable); ``overload_page`` draws.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from simlab import scenario as builder
from simlab.dashboard.compute import ALL_MODELS, Scenario, architecture_for
from simlab.errors import UserError
from simlab.overload.rules import recovery_text
from simlab.results import SimSummary
from simlab.simulation import simulate

__all__ = ["default_schedule", "overload_page", "overload_run"]

SEED = 1
WARMUP_S = 2.0
SPIKE, BEFORE_S, DURING_S, AFTER_S = 5.0, 15.0, 10.0, 35.0


def default_schedule(rate: float) -> str:
    """A x5 burst of 10 s on the scenario's rate."""
    return (
        f"{rate:g}/s for {BEFORE_S:g}s, {rate * SPIKE:g}/s for {DURING_S:g}s, "
        f"{rate:g}/s for {AFTER_S:g}s"
    )


def overload_run(
    s: Scenario, model: str, options: dict[str, Any]
) -> tuple[pd.DataFrame, SimSummary]:
    """One simulated run of ``model`` with the overload ``options`` (scenario option
    names: rate as a schedule, timeout_ms, retries, retry_budget, max_inflight):
    its per-second timeline, and its summary. UserError names a bad option."""
    built = builder.build({**asdict(s), **options, "warmup": WARMUP_S, "timeline": True})
    arch = replace(architecture_for(model, s), limits=built.architecture.limits)
    # jobs=1: a Streamlit server forks no workers.
    run = {**built.run.kwargs(), "replications": 1, "seed": SEED, "engine": "des", "jobs": 1}
    summary = simulate(model, built.workload, built.platform, arch, tables=False, **run).summary
    timeline = pd.DataFrame([w.to_dict() for w in summary.timeline or ()])
    return timeline, summary


@st.cache_data(show_spinner=False, max_entries=16)
def _cached(s: Scenario, model: str, options: tuple[tuple[str, Any], ...]) -> tuple[Any, Any]:
    return overload_run(s, model, dict(options))


def _figure(tl: pd.DataFrame, model: str, spike_end: float | None) -> go.Figure:
    fig = make_subplots(
        rows=2, cols=2, shared_xaxes=True,
        subplot_titles=("requests per second", "latency of each second's answers (ms)",
                        "requests and threads", "resident memory (MiB)"),
    )  # fmt: skip
    lines = [
        (1, 1, "offered_rps", "offered"), (1, 1, "sent_rps", "attempts sent"),
        (1, 1, "throughput_rps", "throughput"), (1, 1, "goodput_rps", "goodput"),
        (1, 1, "dropped_rps", "dropped"), (1, 1, "timeouts_rps", "timeouts"),
        (1, 2, "p50_ms", "p50"), (1, 2, "p99_ms", "p99"),
        (2, 1, "in_flight", "in flight"), (2, 1, "at_server", "at the server"),
        (2, 1, "queued", "queued"), (2, 1, "threads", "threads"),
        (2, 2, "memory_mib", "memory"),
    ]  # fmt: skip
    for row, col, key, name in lines:
        if key in tl and tl[key].notna().any():
            fig.add_trace(go.Scatter(x=tl["t_s"], y=tl[key], name=name), row=row, col=col)
    if spike_end is not None:
        for row in (1, 2):
            for col in (1, 2):
                fig.add_vline(x=spike_end, line_dash="dot", row=row, col=col)
    fig.update_layout(height=650, title=f"{model}: one run, second by second")
    fig.update_xaxes(title_text="time (s)", row=2)
    return fig


def overload_page(s: Scenario, models: tuple[str, ...]) -> None:
    st.header("Overload")
    st.caption(
        "One model through a rate schedule: clients that give up and retry, a server "
        "that may shed past a limit. Each second of the run is plotted; the dotted line "
        "is where the burst ends. A run recovers when goodput and p99 come back for good."
    )
    choices = models or ALL_MODELS
    a, b, c = st.columns(3)
    model = a.selectbox("Model", choices, key="ov_model")
    schedule = b.text_input(
        "Rate schedule", default_schedule(s.rate), key="ov_schedule",
        help="RATE/s for DURATION, comma separated; the last may omit its duration.",
    )  # fmt: skip
    timeout = c.number_input("Client timeout (ms, 0: none)", 0.0, 60_000.0, 1000.0, 100.0,
                             key="ov_timeout")  # fmt: skip
    d, e, f = st.columns(3)
    retries = d.number_input("Retries", 0, 10, 3, key="ov_retries")
    budget = e.number_input("Retry budget (tokens, 0: none)", 0.0, 1000.0, 0.0, 1.0,
                            key="ov_budget")  # fmt: skip
    limit = f.number_input("Max in flight (0: no limit)", 0, 1_000_000, 0, key="ov_limit")
    options: dict[str, Any] = {"rate": schedule, "retries": int(retries)}
    if timeout > 0:
        options["timeout_ms"] = float(timeout)
    elif retries > 0:
        st.info("Retries follow a timeout: set one to see them.")
        options["retries"] = 0
    if budget > 0:
        options["retry_budget"] = float(budget)
    if limit > 0:
        options["max_inflight"] = int(limit)
    try:
        with st.spinner(f"simulating {model} through the schedule..."):
            tl, summary = _cached(s, str(model), tuple(sorted(options.items())))
    except UserError as exc:
        st.error(f"simlab cannot run this: {exc}. Change the control it names.")
        return
    o = summary.overload
    rec = o.recovery if o is not None else None
    cols = st.columns(4)
    cols[0].metric("goodput (req/s)", f"{o.goodput_rps:,.1f}" if o else "-")
    cols[1].metric("timeouts", f"{o.timeouts:,}" if o else "-")
    cols[2].metric("retries", f"{o.retries:,}" if o else "-")
    wasted = o.wasted_share if o else None
    cols[3].metric("wasted work", "-" if wasted is None else f"{wasted:.0%}")
    if rec is not None:
        end = summary.warmup_s + summary.duration_s
        st.markdown(f"**{model}** {recovery_text(rec.recovered_s, end - rec.spike_end_s)}.")
    st.plotly_chart(
        _figure(tl, str(model), rec.spike_end_s if rec else None),
        width="stretch",
        key="overload_chart",
    )
    st.download_button(
        "timeline.csv", tl.to_csv(index=False), "timeline.csv", "text/csv", key="ov_csv"
    )
