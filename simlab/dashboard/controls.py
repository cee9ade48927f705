"""The sidebar: the scenario's controls, with units, ranges and help, and presets.

Every widget has a key, so that presets can set them and tests can find them.
A combination that cannot be built (say, a lognormal with a bad cv) is
reported in one plain line that says what to change; nothing raises.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from simlab.dashboard.compute import ALL_MODELS, Scenario, platform_names, scenario_from_preset
from simlab.errors import UserError
from simlab.params import SCENARIOS

__all__ = ["PRESETS", "apply_preset", "scenario_controls"]

PRESETS = tuple(SCENARIOS)


def _set_state(s: Scenario) -> None:
    st.session_state["connections"] = s.connections
    st.session_state["rate"] = s.rate
    st.session_state["cpu_ms"] = s.cpu_ms
    st.session_state["io_ms"] = s.io_ms
    st.session_state["calls"] = s.calls
    st.session_state["fanout"] = s.fanout
    st.session_state["rpc"] = s.requests_per_connection or 0


def apply_preset(name: str, **extra: Any) -> None:
    """Load a built-in scenario (and any other control values) into the controls."""
    _set_state(scenario_from_preset(name))
    for key, value in extra.items():
        st.session_state[key] = value


def _on_preset() -> None:
    apply_preset(st.session_state["preset"])


def scenario_controls() -> tuple[Scenario | None, tuple[str, ...]]:
    """Draw the controls; return the scenario (None if it cannot be built) and the models."""
    sb = st.sidebar
    if "connections" not in st.session_state:
        # The command line's defaults (simlab.scenario), so both show the same scenario.
        defaults = Scenario.default()
        _set_state(defaults)
        st.session_state.update(
            platform=defaults.platform,
            cores=defaults.cores or 0,
            workers=defaults.workers,
            processes=defaults.processes,
            models=list(ALL_MODELS),
        )
    sb.selectbox(
        "Scenario preset",
        PRESETS,
        key="preset",
        on_change=_on_preset,
        help="Load one of the notes' scenarios; the controls below then refine it.",
    )
    sb.markdown("**Workload**")
    connections = sb.number_input(
        "Connections",
        1,
        10_000_000,
        step=1000,
        key="connections",
        help="Client connections, mostly idle (each sends one request at a time).",
    )
    rate = sb.number_input(
        "Arrival rate (req/s)",
        0.1,
        1_000_000.0,
        step=10.0,
        key="rate",
        help="Open Poisson arrivals over all connections.",
    )
    cpu_ms = sb.number_input(
        "CPU per request (ms)",
        0.0,
        10_000.0,
        step=0.5,
        key="cpu_ms",
        help="Thread CPU time each request burns.",
    )
    cpu_dist = sb.selectbox("CPU distribution", ("fixed", "exp", "lognormal:1"), key="cpu_dist")
    io_ms = sb.number_input(
        "Backend call latency (ms)",
        0.0,
        600_000.0,
        step=10.0,
        key="io_ms",
        help="How long one backend (database, API) call waits.",
    )
    io_dist = sb.selectbox(
        "Call latency distribution", ("fixed", "exp", "lognormal:1"), key="io_dist"
    )
    calls = sb.number_input("Backend calls per request", 0, 1000, step=1, key="calls")
    fanout = sb.radio("Fan-out", ("sequential", "parallel"), key="fanout", horizontal=True)
    rpc = sb.number_input(
        "Requests per connection (0 = persistent)",
        0,
        1_000_000,
        step=1,
        key="rpc",
        help="0 keeps connections open for ever; K closes a connection after K requests.",
    )
    sb.markdown("**Platform and server**")
    names = platform_names()
    platform = sb.selectbox(
        "Platform",
        names,
        key="platform",
        help="A preset or a calibrated profile from data/profiles/ (cpython is this machine).",
    )
    cores = sb.number_input("Cores (0 = unlimited)", 0, 1024, step=1, key="cores")
    workers = sb.number_input(
        "Workers per process",
        1,
        200_000,
        step=1,
        key="workers",
        help="Pool size of thread-pool and reactor-pool.",
    )
    processes = sb.number_input("Processes", 1, 256, step=1, key="processes")
    models = sb.multiselect("Models", ALL_MODELS, key="models")
    if not models:
        sb.warning("Choose at least one model.")
    scenario = Scenario(
        connections=int(connections),
        rate=float(rate),
        cpu_ms=float(cpu_ms),
        cpu_dist=str(cpu_dist),
        io_ms=float(io_ms),
        io_dist=str(io_dist),
        calls=int(calls),
        fanout=str(fanout),
        requests_per_connection=int(rpc) or None,
        platform=str(platform),
        cores=int(cores) or None,
        workers=int(workers),
        processes=int(processes),
    )
    try:
        scenario.built()
    except UserError as exc:
        st.error(f"This combination cannot be simulated: {exc}. Change that control.")
        return None, tuple(models)
    return scenario, tuple(models)
