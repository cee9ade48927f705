"""The story (the notes' scenarios, one click each) and the reality check (calibration,
validation, and a short real measurement beside its prediction)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from simlab.claims.generations import JOURNEY_WORKLOAD
from simlab.dashboard import compute
from simlab.dashboard.compute import Scenario
from simlab.dashboard.controls import apply_preset
from simlab.dashboard.pages import simulated_table
from simlab.errors import RunFailed, UserError
from simlab.platforms import profile_path

__all__ = ["reality_page", "story_page"]

STORIES = {
    "C10K: idle connections": (
        "c10k",
        {"workers": 32, "processes": 1, "platform": "cpython", "cores": 2},
        "10,000 persistent connections, only 100 requests/s. Thread-per-connection (and a "
        "thread-pool that owns connections) needs a thread for every idle connection: look "
        "at the threads and the reserved memory. Async and reactor-pool hold an idle "
        "connection as a few KiB on the loop.",
    ),
    "Ad service: sequential fan-out": (
        "ad-service",
        {"workers": 6100, "processes": 1, "platform": "jvm", "cores": 64},
        "1,000 ad requests/s, each waiting on 60 vendor calls of 100 ms one after another: "
        "6 s per request. A reactor-pool worker is held for all of it, so by Little's law "
        "about 6,000 threads are busy. Async holds each wait as a pending coroutine.",
    ),
    "Ad service: parallel fan-out": (
        "ad-service-parallel",
        {"workers": 200, "processes": 1, "platform": "jvm", "cores": 64},
        "The same 60 calls all at once: a request now takes about 100 ms, and the pool "
        "shrinks to about a hundred threads. Fanning out is the other way out of the "
        "thread explosion.",
    ),
}

# The notes' Python path is the models' own order, iterative to async.
JOURNEY = compute.ALL_MODELS


def _load(title: str, preset: str, extra: dict[str, Any]) -> None:
    apply_preset(preset, **extra)
    st.session_state["story"] = title


def story_page(s: Scenario) -> None:
    st.header("The story")
    st.caption(
        "One click loads a scenario from the notes into the controls; the numbers "
        "below are computed live from it."
    )
    cols = st.columns(len(STORIES) + 1)
    # Callbacks run before the script does, when the controls may still be set.
    for col, (title, (preset, extra, _)) in zip(cols, STORIES.items(), strict=False):
        col.button(title, key=f"story_{preset}", on_click=_load, args=(title, preset, extra))
    cols[-1].button(
        "Python journey",
        key="story_journey",
        on_click=_load,
        args=("Python journey", "c10k", JOURNEY_WORKLOAD),
    )
    chosen = st.session_state.get("story")
    if chosen in STORIES:
        st.subheader(chosen)
        st.write(STORIES[chosen][2])
    elif chosen == "Python journey":
        st.subheader("Python journey")
        st.write(
            "The notes' path from an iterative server to async, with the journey "
            "experiment's own workload (python_server_journey): 320 clients, each sending "
            "1 request/s on a new connection, 1 ms of CPU and one 20 ms backend call. The "
            "iterative server serves one request at a time; forking and threads per "
            "connection overlap the waits; a pool bounds the threads; the reactor frees "
            "idle connections from threads; async frees backend waits too."
        )
        # Why steps tie is the ledger's computed reason, never a sentence typed here.
        journey = [r for r in compute.claims_ledger() if r.id == "python-journey"]
        if journey:
            st.caption(f"Measured ({journey[0].verdict}): {journey[0].reason}.")
    run = compute.RUN
    st.markdown(
        f"**Simulated with the sidebar's configuration** (the Compare page's runs: the peak "
        f"over {run.duration:g} s after {run.warmup:g} s of warm-up; a model that cannot "
        "keep up says why)"
    )
    table = simulated_table(s, JOURNEY)
    st.dataframe(table[STORY_COLUMNS], hide_index=True, width="stretch", key="journey_df")
    _ledger()


def _ledger() -> None:
    st.subheader("The notes, claim by claim")
    st.caption(
        "Each verdict is computed by a rule from the committed data (experiments, "
        "measurements, the calibrated profile); `simlab claims` prints the same ledger."
    )
    rows = compute.claims_ledger()
    table = pd.DataFrame(
        [
            {
                "claim": r.en,
                "notes": r.zh,
                "verdict": r.verdict,
                "reason": r.reason,
                "reproduce": r.command,
            }
            for r in rows
        ]
    )
    st.dataframe(table, hide_index=True, width="stretch", key="claims_df")


STORY_COLUMNS = [
    "model",
    "stable",
    "latency_p99_ms",
    "threads_peak",
    "memory_peak_mib",
    "virtual_peak_mib",
    "why_unstable",
]


def reality_page(s: Scenario) -> None:
    st.header("Reality check")
    profiles = compute.profiles()
    if not profiles:
        st.info("No calibrated profile yet: run `simlab calibrate` (about 15 minutes).")
        return
    name = st.selectbox("Profile", profiles, key="profile")
    data = json.loads(profile_path(name).read_text())
    rows = []
    for key, p in data["parameters"].items():
        if isinstance(p, dict):
            ci = p.get("ci95") or [None, None]
            rows.append(
                {"parameter": key, "value": p.get("value"), "ci95 low": ci[0], "ci95 high": ci[1]}
            )
    st.markdown(
        f"Measured on {data['machine'].get('cpu')} ({data['machine'].get('cores')} "
        f"cores), {data.get('created', '')}, git {data.get('git_revision', '')[:10]}."
    )
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="profile_df")
    folder = compute.validation_folder(name)
    summary_file = folder / "validation.json"
    if summary_file.exists():
        summary = json.loads(summary_file.read_text()).get("summary", {})
        st.markdown(
            "**Held-out validation**: each metric's median and worst error over the "
            "configurations where it can disagree (real runs repeated; see the report)"
        )
        st.dataframe(_goals_table(summary), hide_index=True, key="validation_df")
        pngs = sorted(folder.glob("scatter_*.png"))
        for col, png in zip(st.columns(max(1, min(3, len(pngs)))) * 3, pngs, strict=False):
            col.image(str(png), caption=png.stem.replace("scatter_", ""))
    st.subheader("Measure it here")
    st.caption(
        "A short, bounded real run on this machine (a real server, a real backend, "
        "loopback only), beside the simulation of the same configuration."
    )
    # The notes' last step (async) by default: it keeps up with any of these loads.
    last = len(compute.ALL_MODELS) - 1
    model = st.selectbox("Server", compute.ALL_MODELS, index=last, key="real_model")
    rate = st.slider("Rate (req/s)", 10, 400, 100, key="real_rate")
    conns = st.slider("Connections", 10, 500, 50, key="real_conns")
    if st.button("Run a 4-second measurement", key="real_go"):
        _measure(model, float(rate), int(conns), s, name)


def _measure(model: str, rate: float, conns: int, s: Scenario, profile: str) -> None:
    from simlab.real.measure import MeasureOptions, measure  # noqa: PLC0415 - only on demand

    scenario = s.with_(connections=conns, rate=rate, platform=profile)
    scenario = scenario.with_(cores=compute.platform_cores(profile))
    w = scenario.workload()
    arch = compute.architecture_for(model, scenario)
    with st.status(f"measuring {model} for real...", expanded=True) as status:
        try:
            real = measure(
                MeasureOptions(
                    target=model,
                    workload=w,
                    architecture=arch,
                    duration=4.0,
                    warmup=1.0,
                    save=False,
                ),
                progress=status.write,
            )
        except (RunFailed, UserError, OSError) as exc:
            status.update(label="the measurement failed", state="error")
            st.error(f"The real run failed: {exc}")
            return
        status.write("simulating the same configuration...")
        sim = compute.one_run(scenario, model).summary
        status.update(label="done", state="complete")
    st.dataframe(_side_by_side(real.summary.to_row(), sim.to_row()), hide_index=True,
                 key="real_df")  # fmt: skip


def _side_by_side(real: dict[str, Any], sim: dict[str, Any]) -> pd.DataFrame:
    """The measured and simulated rows' shared columns, side by side."""
    rows = [
        {"metric": label, "measured": real[key], "simulated": sim[key]}
        for label, key in (
            ("throughput (req/s)", "throughput_rps"),
            ("latency p50 (ms)", "latency_p50_ms"),
            ("latency p99 (ms)", "latency_p99_ms"),
            ("threads (peak)", "threads_peak"),
            ("memory (MiB, peak)", "memory_peak_mib"),
        )
    ]
    return compute.readable(pd.DataFrame(rows))


def _goals_table(summary: dict[str, Any]) -> pd.DataFrame:
    """One row per metric: median and worst error, cases, goal, met."""
    rows = [
        {
            "metric": metric,
            "median error": v.get("median"),
            "worst error": v.get("worst"),
            "cases": v.get("cases"),
            "goal": v.get("goal"),
            "met": v.get("met"),
        }
        for metric, v in summary.get("metrics", {}).items()
    ]
    return compute.readable(pd.DataFrame(rows))
