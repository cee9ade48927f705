"""validate --quick end to end on real sockets, against the committed calibration
(or one made here, on a machine slower than its); USL on a real server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simlab import load_platform
from simlab.calibrate import calibrate
from simlab.gate import Budget, Gate, await_speed
from simlab.params import Architecture
from simlab.real.grids import held_out
from simlab.usl import usl_study
from simlab.validate import GOALS, METRICS, validate

pytestmark = [pytest.mark.real, pytest.mark.timeout(1800)]

# The repository's calibration, not the tests' frozen profile: what is checked
# is the model with the costs calibration fitted for it, on the machine.
COMMITTED = Path(__file__).resolve().parents[2] / "data" / "profiles" / "cpython.json"
# The quick set is 8 cases of 4 s each (so that make test stays in its
# budget), against the full set's 33 of 8 s, run on whichever host runs the
# test, while the profile's costs come from the calibration's (the gate lets
# a machine up to a quarter slower run). The goals are asserted on the low
# end of the median error's interval over the runs
# (``simlab.validate.median_error_interval``: how far the runs' own noise
# moves the median), with this much slack for what that interval leaves
# out: other cases, another host. On the same 8 configurations the committed
# full validation's p99 median is 4%; quick runs on 3 December put it at 22%
# (interval 15% to 25%) here and at 42.5% in a CI run. So this catches gross
# misses; the full validation is the test of the goals.
MIN_CASES = 3
QUICK_SLACK = 1.5


def _rounded(values: list[float | None]) -> list[float | None]:
    return [None if v is None else round(v, 1) for v in values]


def _rows_of(metric: str, rows: list[dict]) -> str:
    """Each evidence row of ``metric``: runs, predictions, error and noise, the
    first thing a failed goal prints (CI output keeps only its head)."""
    return "\n".join(
        f"  {r['model']} {r['config']}: measured {_rounded(r['measured_runs'])}, "
        f"predicted {_rounded(r['predicted_runs'] or [])}, "
        f"error {r['rel_error']:.1%}, noise {r['noise']:.1%}"
        for r in rows
        if r["metric"] == metric and r["evidence"] and r["rel_error"] is not None
    )


# The runs are gated on the machine's speed (simlab.gate), as a full validation
# is, with a smaller budget: a run on a machine under its calibration's speed,
# or one the machine stalled in, measures the machine and not the model (a CI
# run on 2 December served the saturated quick cases 11% under the model,
# ungated, while this host agreed within 3%).
QUICK_GATE = {"wait_s": 20.0, "retries": 1, "budget_s": 150.0}


def _profile_for_this_machine(tmp_path: Path) -> tuple[Path, Gate]:
    """The committed calibration when this machine reaches its speed within the
    gate's wait; else (another host, a slower one: its costs are not this
    machine's) a quick calibration made here, as a user would make one; with
    the gate at that profile's speed."""
    gate = Gate.from_profile(json.loads(COMMITTED.read_text()), **QUICK_GATE)
    assert gate.on, f"{COMMITTED} records no speed reference"
    seen = await_speed(gate, Budget(gate.wait_s))
    if not seen["slow_machine"]:
        return COMMITTED, gate
    made = calibrate("cpython", quick=True, out_dir=tmp_path / "profile")
    return tmp_path / "profile" / "cpython.json", Gate.from_profile(made, **QUICK_GATE)


def _saturated_runs(rows: list[dict]) -> str:
    """Each saturated case's runs beside its predictions and the machine's speed
    and stalls: what a failed goal needs to be read."""
    lines = []
    for r in rows:
        if r["metric"] == "throughput_rps" and r["evidence"]:
            refs = [ref or {} for ref in r["speed_reference_runs"]]
            speed = [round(ref.get("during_ops_s") or 0) for ref in refs]
            stall = [round(ref.get("stall_max_ms") or 0) for ref in refs]
            steal = [round(ref.get("steal_cores") or 0, 2) for ref in refs]
            lines.append(
                f"{r['model']} {r['config']}: measured {r['measured_runs']}, "
                f"predicted {r['predicted_runs']}, speed {speed} ops/s, "
                f"stall {stall} ms, steal {steal} cores"
            )
    return "\n".join(lines)


def test_validate_quick_end_to_end(tmp_path) -> None:
    profile, gate = _profile_for_this_machine(tmp_path)
    result = validate(str(profile), quick=True, out_dir=tmp_path, gate=gate)
    cases = held_out(quick=True)
    assert result["repeats"] >= 3
    assert len(result["rows"]) == len(cases) * len(METRICS)
    assert {r["model"] for r in result["rows"]} >= {
        "async",
        "reactor-pool",
        "thread-per-connection",
        "process-per-connection",
        "thread-pool",
        "iterative",
        "uvicorn",
    }
    rows = result["rows"]
    # Every real metric was measured three times, with an interval.
    for r in rows:
        if r["measured"] is not None:
            assert len(r["measured_runs"]) == result["repeats"], r
    # Every quick case is open-loop: each run is predicted from its own arrivals.
    for r in rows:
        assert r["prediction"] == "replayed", r
        assert len(r["run_seeds"]) == len(r["predicted_runs"]) == result["repeats"], r
    # Throughput counts only where the server is saturated; below it, never.
    for r in rows:
        if r["metric"] == "throughput_rps":
            assert r["evidence"] == (r["rho"] >= 0.9), r
    assert any(r["metric"] == "throughput_rps" and r["evidence"] for r in rows)
    # The goals, for the metrics that can disagree: each metric's median error
    # over the evidence, the low end of its interval held to the stated slack
    # for the quick set. A median needs at least MIN_CASES cases: over one or
    # two it is a single run's error, and the full validation (simlab
    # validate) reports those against the goals.
    asserted = 0
    for metric, stats in result["summary"]["metrics"].items():
        if stats["median"] is None or stats["cases"] < MIN_CASES:
            continue
        asserted += 1
        assert stats["median_ci95"] is not None, metric
        median, (low, high) = stats["median"], stats["median_ci95"]
        assert low <= QUICK_SLACK * GOALS[metric], (
            f"{metric}: median error {median:.1%} over {stats['cases']} cases, 95% interval "
            f"[{low:.1%}, {high:.1%}] over the runs, above {QUICK_SLACK:g} x the goal "
            f"{GOALS[metric]:.0%}; the profile: {profile}\n{_rows_of(metric, rows)}\n"
            f"saturated cases:\n{_saturated_runs(rows)}\nthe gate: {result['gate']}"
        )
    assert asserted >= 4  # both latencies and both memory parts, at least
    for name in (
        "validation.csv",
        "validation.json",
        "report.md",
        *(f"scatter_{m}.png" for m in METRICS if m != "memory_kernel"),
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "validation.json").read_text())
    assert saved["summary"] == result["summary"]
    # The session joins the history beside the report, each run with the
    # machine's speed measured before and after it.
    history = json.loads((tmp_path / "history.json").read_text())
    (session,) = history["sessions"]
    assert session["source"] == "simlab validate" and session["quick"]
    assert session["speed_reference"]["runs"] == len(cases) * result["repeats"]
    assert all(
        ref["before_ops_s"] > 0 and ref["after_ops_s"] > 0
        for r in rows
        for ref in r["speed_reference_runs"]
    )
    # And each run's load generator: how late it sent, what a request cost it.
    assert all(
        lag["send_delay_p99_ms"] >= lag["send_delay_p50_ms"] >= 0
        and lag["client_us_per_request"] > 0
        and lag["open_seconds"] >= 0
        for r in rows
        for lag in r["load_generator_runs"]
    )
    # And each run's stability reasons (a list, empty for a steady window),
    # which the report lists where there are any.
    assert all(
        len(r["unsteady_runs"]) == result["repeats"]
        and all(isinstance(why, list) for why in r["unsteady_runs"])
        for r in rows
    )
    assert "## Runs whose window was not steady" in (tmp_path / "report.md").read_text()


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
