"""The Explore page's charts: constant Vega-Lite specs over named datasets.

Why Vega-Lite and not Plotly, on the Explore page: a control change must be
answered in the browser, not only on the server. Streamlit identifies a
Plotly chart by its figure, so a chart whose data changed is a new element:
the browser builds it from scratch (``Plotly.newPlot``: axes, legend, mode
bar). A Vega-Lite chart drawn with a ``key`` keeps its identity while its
spec stays the same, and the browser swaps the changed datasets into the
live view (Vega's ``view.data``) and re-runs only the dataflow they feed.
In the browser test on this shared, busy 2-core machine (2 December, runs
made back to back), the time a change took beyond the server's own account
of it (median over the 20 changes of a run) was 0.31-0.44 s in three runs
with three Plotly charts, and 0.18-0.34 s in three of four runs with these
five (0.53 s in the fourth, made under a load spike).

So every spec here is a constant of the models shown (their order fixes the
colours): everything that follows the controls is a dataset, and a dataset
whose bytes did not change is not touched in the browser at all.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "delay_histogram",
    "delay_spec",
    "hockey_spec",
    "levels_spec",
    "levels_table",
    "memory_spec",
    "threads_spec",
    "with_data",
]

Spec = dict[str, Any]

# Vega's canvas renderer: a redraw paints pixels instead of updating SVG
# nodes one by one (and the page's charts have at most a few hundred marks).
_CANVAS = {"embedOptions": {"renderer": "canvas"}}
HEIGHT = 300


def _base(title: str, dataset: str) -> Spec:
    return {"title": title, "height": HEIGHT, "usermeta": _CANVAS, "data": {"name": dataset}}


def _color(models: tuple[str, ...]) -> dict[str, Any]:
    # A fixed domain: each model keeps its colour on every chart and every rerun.
    return {"field": "model", "type": "nominal", "title": "model",
            "scale": {"domain": list(models)}}  # fmt: skip


def _log(field: str, title: str) -> dict[str, Any]:
    return {"field": field, "type": "quantitative", "title": title, "scale": {"type": "log"}}


def threads_spec(models: tuple[str, ...]) -> Spec:
    """Threads against connections, each model sized to hold them (dataset ``curve``:
    ``compute.idle_cost_curve``'s table)."""
    return {
        **_base("Threads against connections (each model sized to hold them)", "curve"),
        "mark": {"type": "line", "tooltip": True},
        "encoding": {
            "x": _log("connections", "connections"),
            "y": _log("threads", "threads"),
            "color": _color(models),
        },
    }


def memory_spec(models: tuple[str, ...]) -> Spec:
    """Resident (solid) and reserved (dashed) memory against connections (dataset
    ``curve``, the same table as the threads')."""
    return {
        **_base("Memory: resident (solid) and reserved (dashed)", "curve"),
        "transform": [{"fold": ["resident_mib", "reserved_mib"], "as": ["memory", "MiB"]}],
        "mark": {"type": "line", "tooltip": True},
        "encoding": {
            "x": _log("connections", "connections"),
            "y": _log("MiB", "MiB"),
            "color": _color(models),
            "strokeDash": {
                "field": "memory",
                "type": "nominal",
                "title": "memory",
                "scale": {"domain": ["resident_mib", "reserved_mib"], "range": [[1, 0], [6, 4]]},
            },
        },
    }


def _vline(dataset: str, field: str, dash: list[int]) -> list[Spec]:
    """A labelled vertical line at each row of ``dataset`` (columns ``field``, ``label``)."""
    x = {"field": field, "type": "quantitative"}
    return [
        {"data": {"name": dataset}, "mark": {"type": "rule", "strokeDash": dash},
         "encoding": {"x": x}},
        {"data": {"name": dataset},
         "mark": {"type": "text", "align": "left", "baseline": "top", "dx": 4, "y": 4},
         "encoding": {"x": x, "text": {"field": "label"}}},
    ]  # fmt: skip


def _with_lines(title: str, main: Spec, lines: list[Spec]) -> Spec:
    """A chart of ``main`` with labelled vertical ``lines`` (``_vline``) over it."""
    return {"title": title, "height": HEIGHT, "usermeta": _CANVAS, "layer": [main, *lines]}


def hockey_spec(models: tuple[str, ...]) -> Spec:
    """p99 against the offered rate up to each model's saturation (dataset ``curve``:
    ``compute.capacity_curve``'s table), and the scenario's rate (dataset ``yours``)."""
    curve = {
        "data": {"name": "curve"},
        "mark": {"type": "line", "tooltip": True},
        "encoding": {
            "x": {"field": "rate", "type": "quantitative", "title": "rate (req/s)"},
            "y": _log("p99_ms", "p99 (ms)"),
            "color": _color(models),
        },
    }
    return _with_lines(
        "p99 latency against load: the hockey stick (estimate)",
        curve,
        _vline("yours", "rate", [2, 2]),
    )


def delay_histogram(waits_ms: Any, bins: int = 60) -> pd.DataFrame:
    """The queueing delays binned here (the browser gets ``bins`` counts, not every
    request's wait): one row per bin, ``from_ms``, ``to_ms``, ``requests``."""
    counts, edges = np.histogram(np.asarray(waits_ms, dtype=np.float64), bins=bins)
    return pd.DataFrame({"from_ms": edges[:-1], "to_ms": edges[1:], "requests": counts})


def delay_spec() -> Spec:
    """The run's queueing delays (dataset ``delay``: ``delay_histogram``) and the
    theory's mean where a formula applies (dataset ``theory``: may be empty)."""
    bars = {
        "data": {"name": "delay"},
        "mark": {"type": "rect", "tooltip": True},
        "encoding": {
            "x": {"field": "from_ms", "type": "quantitative", "title": "queueing delay (ms)"},
            "x2": {"field": "to_ms"},
            "y": {"field": "requests", "type": "quantitative", "title": "requests"},
        },
    }
    return _with_lines("Queueing delay (ms)", bars, _vline("theory", "ms", [6, 4]))


# A run's levels, as the chart names them (the series' columns, renamed).
LEVELS = {"threads_alive": "threads", "in_flight": "in flight", "threads_busy": "busy threads"}


def levels_table(series: pd.DataFrame) -> pd.DataFrame:
    """The series' ``time`` and ``LEVELS`` columns, under the chart's names."""
    return series[["time", *LEVELS]].rename(columns=LEVELS).reset_index(drop=True)


def levels_spec() -> Spec:
    """One run's levels over time (dataset ``levels``: ``levels_table``)."""
    return {
        **_base("One run over time", "levels"),
        "transform": [{"fold": list(LEVELS.values()), "as": ["level", "value"]}],
        "mark": {"type": "line", "tooltip": True},
        "encoding": {
            "x": {"field": "time", "type": "quantitative", "title": "simulated s"},
            "y": {"field": "value", "type": "quantitative", "title": "level"},
            "color": {"field": "level", "type": "nominal", "title": "level",
                      "scale": {"domain": list(LEVELS.values())}},
        },
    }  # fmt: skip


def with_data(spec: Spec, **datasets: pd.DataFrame) -> Spec:
    """``spec`` with its named datasets (a new dict: Streamlit moves them out of it)."""
    return {**spec, "datasets": datasets}
