"""``simlab.resimulate``: fresh predictions for a written validation's real runs, no real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simlab import validate
from simlab.distributions import Fixed
from simlab.errors import UserError
from simlab.params import Architecture, Workload
from simlab.platforms import load_platform, profile_path
from simlab.real.grids import Case
from simlab.resimulate import remeasure, resimulate

CASE = Case(
    "thread-pool",
    Workload(connections=8, rate=80.0, cpu=Fixed(0.001), io=Fixed(0.005)),
    Architecture(workers=8),
    duration=1.0,
    warmup=0.5,
)


def _saved(tmp_path: Path, cases: list[Case]) -> Path:
    runs = {"throughput_rps": [79.0, 81.0, 80.0], "latency_p50": [7.1, 7.3, 7.0],
            "latency_p99": [15.0, 18.0, 16.0], "memory_user": [15.0, 15.1, 15.0],
            "memory_kernel": [0.5, 0.5, 0.6], "threads_peak": [9.0, 9.0, 9.0]}  # fmt: skip
    rows = [
        {"model": c.target, "config": c.config(), "metric": m, "measured_runs": v}
        for c in cases
        for m, v in runs.items()
    ]
    saved = {"rows": rows, "quick": True, "repeats": 3, "seed": 4,
             "created": "20260101T000000Z", "git_revision": "abc",
             "machine": {"cpu": "Xeon", "cores": 2}}  # fmt: skip
    (tmp_path / "validation.json").write_text(json.dumps(saved))
    return tmp_path


def test_resimulate_predicts_as_validate_does_and_keeps_the_runs(tmp_path: Path) -> None:
    out = resimulate(_saved(tmp_path, [CASE]), cases=[CASE])
    extras = validate._profile_extras("cpython")
    platform = validate.lab_platform(load_platform("cpython"), extras)
    # Each run replayed from the arrivals of the seed validate gave it.
    seeds = [validate.run_seed(4, 0, r) for r in range(3)]
    pred = validate.predict_case(CASE, platform, extras, 4, seeds)
    by = {r["metric"]: r for r in out["rows"]}
    assert by["latency_p50"]["predicted"] == pred.predicted["latency_p50"].value
    assert by["latency_p50"]["run_seeds"] == [4000, 4001, 4002]
    assert by["latency_p50"]["prediction"] == "replayed"
    assert by["latency_p50"]["measured_runs"] == [7.1, 7.3, 7.0]
    assert by["latency_p50"]["measured"] == pytest.approx(7.1333333)
    # Where the runs were measured stays the report's; where it was simulated is said apart.
    assert out["measured_runs_from"] == {
        "created": "20260101T000000Z", "git_revision": "abc", "machine": {"cpu": "Xeon", "cores": 2}
    }  # fmt: skip
    assert out["machine"] == {"cpu": "Xeon", "cores": 2}
    assert out["resimulated_on"]["cpu"] != "Xeon"
    written = json.loads((tmp_path / "validation.json").read_text())
    assert written["rows"] == json.loads(json.dumps(out["rows"]))
    assert (
        "measured 20260101T000000Z (git abc) on Xeon, 2 cores"
        in (tmp_path / "report.md").read_text()
    )
    # Simulated again, the same: the machine does not become this one.
    again = resimulate(tmp_path, cases=[CASE])
    assert again["machine"] == {"cpu": "Xeon", "cores": 2}
    assert again["measured_runs_from"] == out["measured_runs_from"]


def test_resimulate_refuses_a_case_that_was_not_measured(tmp_path: Path) -> None:
    other = Case(CASE.target, CASE.workload.with_(rate=90.0), CASE.arch, 1.0, 0.5)
    with pytest.raises(UserError, match="was not measured"):
        resimulate(_saved(tmp_path, [CASE]), cases=[CASE, other])


def test_remeasure_replaces_only_its_cases_runs_with_validates_seeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Case(CASE.target, CASE.workload.with_(rate=90.0), CASE.arch, 1.0, 0.5)
    folder = _saved(tmp_path, [CASE, other])
    saved = json.loads((folder / "validation.json").read_text())
    saved["platform"] = "cpython"
    (folder / "validation.json").write_text(json.dumps(saved))
    seeds: list[int] = []

    def fake(case: Case, seed: int) -> object:
        seeds.append(seed)
        return object()

    monkeypatch.setattr("simlab.resimulate._measure", fake)
    monkeypatch.setattr(
        "simlab.resimulate._kept",
        lambda s: {**{m: 1.0 + len(seeds) for m in validate.METRICS},
                   "speed_reference": {"ops_s": 1e4 + len(seeds), "work": "w"},
                   "load_generator": {"send_delay_ms": {"p50": 0.1, "p99": 2.0}},
                   "cpu_ms_per_request": 2.5},
    )  # fmt: skip
    label = f"{other.target} {other.config()}"
    out = remeasure(folder, [label], "the probe changed", cases=[CASE, other])
    # The second case of the plan, 3 repeats: seed * 1000 + k * 10 + r.
    assert seeds == [4010, 4011, 4012]
    rows = {(r["config"], r["metric"]): r for r in out["rows"]}
    assert rows[(other.config(), "latency_p50")]["measured_runs"] == [2.0, 3.0, 4.0]
    assert rows[(CASE.config(), "latency_p50")]["measured_runs"] == [7.1, 7.3, 7.0]
    assert out["remeasured"][0]["case"] == label and out["remeasured"][0]["why"]
    assert out["remeasured"][0]["machine"]["cores"] >= 1  # this machine, where it ran again
    # The runs' speed references are kept, and the case joins the history as a session of its own.
    assert rows[(other.config(), "latency_p50")]["speed_reference_runs"][0]["ops_s"] == 10001.0
    history = json.loads((folder / "history.json").read_text())
    assert [s["source"] for s in history["sessions"]] == ["remeasure"]
    assert list(history["cases"]) == [label]
    with pytest.raises(UserError, match="no case"):
        remeasure(folder, ["iterative N=1"], "x", cases=[CASE, other])
    # Predicted again, the remeasured case's load generator is kept beside a case
    # measured before it was recorded, in the table too.
    again = resimulate(folder, cases=[CASE, other])
    rows = {(r["config"], r["metric"]): r for r in again["rows"]}
    assert rows[(other.config(), "latency_p50")]["load_generator_runs"][0]["send_delay_ms"]
    assert "load_generator_runs" not in rows[(CASE.config(), "latency_p50")]
    # The server's CPU a request too; predicted again, for every case.
    assert rows[(other.config(), "latency_p50")]["cpu_ms_runs"] == [2.5] * 3
    assert rows[(CASE.config(), "latency_p50")]["cpu_ms_runs"] is None
    assert all(r["cpu_ms_predicted"] > 0 for r in again["rows"])
    table = (folder / "validation.csv").read_text()
    assert "load_generator_runs" in table.splitlines()[0]


def test_a_peers_own_costs_reach_its_simulation(tmp_path: Path) -> None:
    # A profile whose uvicorn has loop costs of its own, far below the shared
    # ones: the saturated uvicorn case is simulated with them (resimulate and
    # validate both go through case_platform), so its loop serves more than on
    # the shared costs; simlab's own async server keeps the shared ones.
    profile = json.loads(profile_path("cpython").read_text())
    profile["parameters"]["loop_event_us"] = {"value": 260.0}
    profile["parameters"]["loop_wake_us"] = {"value": 650.0}
    profile["peers"]["uvicorn"]["costs"] = {
        "loop_event_us": {"value": 40.0, "identified": True},
        "loop_wake_us": {"value": 10.0, "identified": True},
    }
    (tmp_path / "own").mkdir()
    path = tmp_path / "own" / "cpython.json"
    path.write_text(json.dumps(profile))
    shared = validate.lab_platform(load_platform(str(path)), profile)
    w = Workload(connections=50, rate=500.0, cpu=Fixed(0.0018), calls=0)
    case = Case("uvicorn", w, Architecture(), duration=0.5, warmup=0.2)
    out = resimulate(_saved(tmp_path, [case]), platform_spec=str(path), cases=[case])
    served = next(r["predicted"] for r in out["rows"] if r["metric"] == "throughput_rps")
    seeds = [validate.run_seed(4, 0, r) for r in range(3)]
    own_costs = shared.with_(loop_event_us=40.0, loop_wake_us=10.0)
    own = validate.predict_case(case, own_costs, profile, 4, seeds).predicted["throughput_rps"]
    plain = validate.predict_case(case, shared, profile, 4, seeds).predicted["throughput_rps"]
    assert own.value is not None and plain.value is not None
    assert served == own.value
    assert served > 1.05 * plain.value
    twin = Case("async", w, Architecture(), duration=0.5, warmup=0.2)
    assert validate.case_platform(twin, shared, profile) == shared
    assert validate.case_platform(case, shared, {}) == shared


def test_remeasure_can_take_more_runs_than_the_report_and_says_how_many(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Case(CASE.target, CASE.workload.with_(rate=90.0), CASE.arch, 1.0, 0.5)
    folder = _saved(tmp_path, [CASE, other])
    saved = json.loads((folder / "validation.json").read_text())
    saved["platform"] = "cpython"
    for row in saved["rows"]:
        row["run_seeds"] = [1, 2, 3]  # a replayed case's, as validate records them
    (folder / "validation.json").write_text(json.dumps(saved))
    seeds: list[int] = []

    def fake(case: Case, seed: int) -> object:
        seeds.append(seed)
        return object()

    monkeypatch.setattr("simlab.resimulate._measure", fake)
    monkeypatch.setattr(
        "simlab.resimulate._kept",
        lambda s: {**{m: 1.0 + len(seeds) for m in validate.METRICS},
                   "speed_reference": {"ops_s": 1e4, "work": "w"}},
    )  # fmt: skip
    label = f"{other.target} {other.config()}"
    with pytest.raises(UserError, match="repeats"):
        remeasure(folder, [label], "x", cases=[CASE, other], repeats=11)
    assert seeds == []  # refused before any run
    out = remeasure(folder, [label], "runs too spread", cases=[CASE, other], repeats=5)
    # Every run of the case is new (one session), with validate's seeds for runs 0 to 4.
    assert seeds == [4010, 4011, 4012, 4013, 4014]
    rows = {(r["config"], r["metric"]): r for r in out["rows"]}
    assert rows[(other.config(), "latency_p50")]["measured_runs"] == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert rows[(other.config(), "latency_p50")]["run_seeds"] == seeds
    assert rows[(CASE.config(), "latency_p50")]["run_seeds"] == [1, 2, 3]
    assert out["remeasured"][0]["runs"] == 5
    history = json.loads((folder / "history.json").read_text())
    assert history["sessions"][0]["repeats"] == 5
    # Predicted again: each of the five runs from its own seed, and the report says so.
    again = resimulate(folder, cases=[CASE, other])
    rows = {(r["config"], r["metric"]): r for r in again["rows"]}
    assert len(rows[(other.config(), "latency_p50")]["predicted_runs"]) == 5
    text = (folder / "report.md").read_text()
    assert f"{label}: measured again" in text and ", 5 runs: runs too spread." in text
