"""validate --quick end to end on real sockets, with the committed profile; USL on a real server."""

from __future__ import annotations

import json

import pytest

from simlab import load_platform
from simlab.params import Architecture
from simlab.real.grids import held_out
from simlab.usl import usl_study
from simlab.validate import METRICS, validate

pytestmark = [pytest.mark.real, pytest.mark.timeout(900)]


def test_validate_quick_end_to_end(tmp_path) -> None:
    result = validate("cpython", quick=True, out_dir=tmp_path)
    cases = held_out(quick=True)
    assert len(result["rows"]) == len(cases) * len(METRICS)
    assert {r["model"] for r in result["rows"]} >= {
        "async",
        "reactor-pool",
        "thread-per-connection",
        "process-per-connection",
        "thread-pool",
        "iterative",
        "uvicorn",
        "gunicorn-gthread",
        "gunicorn-sync",
    }
    # Below saturation an open-loop server's throughput is the offered rate,
    # and the model must say so: under 10% median error.
    assert result["summary"]["throughput_rps"] < 0.10
    for name in (
        "validation.csv",
        "validation.json",
        "report.md",
        *(f"scatter_{m}.png" for m in METRICS),
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "validation.json").read_text())
    assert saved["summary"] == result["summary"]


def test_usl_on_a_real_server(tmp_path) -> None:
    result = usl_study(
        "async",
        levels=[1, 2, 4, 8],
        cpu_ms=2.0,
        io_ms=0.0,
        calls=0,
        arch=Architecture(),
        platform=load_platform("cpython"),
        duration=2.0,
        warmup=0.5,
        out_dir=tmp_path,
    )
    points = result["points"]
    # One loop and 2 ms of CPU per request: throughput cannot pass about 500/s,
    # so it must flatten with concurrency, measured and simulated alike.
    assert points[-1]["measured"] < 2.5 * points[0]["measured"]
    assert points[-1]["simulated"] < 2.5 * points[0]["simulated"]
    assert result["measured_fit"]["sigma"] > 0.1
    assert (tmp_path / "usl.png").stat().st_size > 0
