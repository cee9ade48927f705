"""A validation's history between sessions (``simlab.sessions``), on made-up runs.

Sessions come from a report's rows (a case measured again is a session of
its own), adding one twice changes nothing, the history is seeded from
every committed version of a report, a case *moves* only when its sessions'
intervals are apart, and ``simlab validate`` adds its session, with each
run's speed reference, and reports the sessions beside its own runs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from simlab import sessions
from simlab import validate as v
from simlab.distributions import Fixed
from simlab.params import Architecture, Workload
from simlab.real.grids import Case
from simlab.real.speed import WORK
from simlab.results import SpeedReference
from tests.fakes import measured_run

LABEL = "async N=500 380/s cpu=2.4ms 1x5ms seq W=32 P=1"


def _row(metric: str, runs: list[float], *, config: str = LABEL.partition(" ")[2],
         predicted: float = 300.0, speeds: list | None = None) -> dict:  # fmt: skip
    return {"model": "async", "config": config, "metric": metric, "measured_runs": runs,
            "predicted": predicted, "evidence": True,
            "speed_reference_runs": speeds or []}  # fmt: skip


def _result(created: str, runs: list[float], **kw: object) -> dict:
    return {"rows": [_row("latency_p50", runs)], "created": created, "git_revision": "abc",
            "quick": False, "repeats": len(runs), **kw}  # fmt: skip


def test_a_reports_runs_are_its_session_and_a_case_measured_again_is_another() -> None:
    result = _result("20260101T000000Z", [100.0, 110.0, 120.0])
    result["rows"].append(_row("latency_p50", [5.0, 6.0], config="N=1 1/s"))
    result["remeasured"] = [{"case": "async N=1 1/s", "measured": "20260102T000000Z",
                             "git_revision": "def", "why": "x"}]  # fmt: skip
    found = {s["session"]["id"]: s for s in sessions.session_of(result, source="test")}
    assert set(found) == {"20260101T000000Z", "20260102T000000Z"}
    assert found["20260102T000000Z"]["session"]["git_revision"] == "def"
    assert list(found["20260102T000000Z"]["cases"]) == ["async N=1 1/s"]
    case = found["20260101T000000Z"]["cases"][LABEL]["metrics"]["latency_p50"]
    assert case == {"mean": 110.0, "runs": [100.0, 110.0, 120.0]}
    # An early report kept one value per case and no runs: one run.
    early = {"model": "async", "config": LABEL.partition(" ")[2], "metric": "latency_p50",
             "measured": 90.0}  # fmt: skip
    old = {"rows": [early], "created": "20251201T000000Z", "git_revision": "0"}
    (s,) = sessions.session_of(old, source="test")
    assert s["cases"][LABEL]["metrics"]["latency_p50"]["runs"] == [90.0]
    assert s["session"]["repeats"] == 1


def test_adding_a_session_twice_changes_nothing_and_the_file_reads_back(tmp_path: Path) -> None:
    h = sessions.add({}, sessions.session_of(_result("20260101T000000Z", [1.0, 2.0]), source="a"))
    h = sessions.add(h, sessions.session_of(_result("20260102T000000Z", [3.0, 4.0]), source="b"))
    same = sessions.session_of(_result("20260102T000000Z", [3.0, 4.0]), source="b")
    again = sessions.add(json.loads(json.dumps(h)), same)
    assert again == h
    assert [e["session"] for e in h["cases"][LABEL]] == ["20260101T000000Z", "20260102T000000Z"]
    sessions.write(tmp_path, h)
    assert sessions.load(tmp_path) == h
    assert sessions.load(tmp_path / "nowhere") == {"sessions": [], "cases": {}}


def test_the_history_is_seeded_from_every_committed_report_of_the_grids_cases(
    tmp_path: Path,
) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    folder = tmp_path / "data" / "validation" / "cpython"
    folder.mkdir(parents=True)
    first = _result("20260101T000000Z", [100.0, 101.0, 102.0])
    first["rows"].append(_row("latency_p50", [1.0, 1.0], config="N=9 9/s"))  # not in the grid
    first["rows"].append(_row("memory_peak", [30.0]))  # an early metric, another quantity
    origin = {"created": "20260101T000000Z", "git_revision": "abc"}
    resimulated = _result("20260103T000000Z", [100.0, 101.0, 102.0], measured_runs_from=origin)
    second = _result("20260105T000000Z", [300.0, 310.0, 320.0])
    for k, report in enumerate((first, resimulated, second)):
        (folder / "validation.json").write_text(json.dumps(report))
        git("add", "-A")
        git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", f"v{k}")
    h = sessions.seed_from_git(folder, {LABEL}, {"latency_p50"}, repo=tmp_path)
    # The resimulated report's runs are the first session's: two sessions, not three.
    assert [s["id"] for s in h["sessions"]] == ["20260101T000000Z", "20260105T000000Z"]
    assert h["sessions"][0]["source"].startswith("validation.json at ")
    assert list(h["cases"]) == [LABEL]
    means = [e["metrics"]["latency_p50"]["mean"] for e in h["cases"][LABEL]]
    assert means == [101.0, 310.0]
    assert set(h["cases"][LABEL][0]["metrics"]) == {"latency_p50"}


def _history(*sessions_runs: list[float], quick: tuple[bool, ...] = ()) -> dict:
    h: dict = {}
    for k, runs in enumerate(sessions_runs):
        q = quick[k] if quick else False
        result = _result(f"2026010{k + 1}T000000Z", runs, quick=q)
        h = sessions.add(h, sessions.session_of(result, source="t"))
    return h


def test_a_case_moves_only_when_its_sessions_intervals_are_apart() -> None:
    rows = [_row("latency_p50", [300.0, 310.0, 320.0], predicted=300.0)]
    moved = sessions.between(_history([100.0, 110.0, 120.0], [500.0, 510.0, 520.0]), rows,
                             quick=False)  # fmt: skip
    (case,) = moved["cases"]
    assert case["apart"] is not None and case["inside"]
    assert (case["low"], case["high"]) == (110.0, 510.0)
    assert case["between"] == pytest.approx(200.0 / 310.0)
    assert moved["metrics"]["latency_p50"]["moved"] == 1
    # Doctored: the same means, runs spread so wide that the intervals overlap.
    wide = sessions.between(_history([10.0, 20.0, 300.0], [220.0, 700.0, 610.0]), rows,
                            quick=False)  # fmt: skip
    assert wide["cases"][0]["apart"] is None and wide["metrics"]["latency_p50"]["moved"] == 0
    # A quick session is another grid (shorter runs): it is not compared with full ones.
    mixed = sessions.between(_history([100.0, 110.0], [500.0, 510.0], quick=(True, False)), rows,
                             quick=False)  # fmt: skip
    assert mixed["cases"] == []
    lines = sessions.report_lines(moved)
    assert lines[0] == "## Between sessions"
    assert any(line.startswith("| async |") and line.endswith("| yes |") for line in lines)


CASE = Case(
    "thread-pool",
    Workload(connections=8, rate=80.0, cpu=Fixed(0.001), io=Fixed(0.005)),
    Architecture(workers=8),
    duration=1.0,
    warmup=0.5,
)


def _fake_run(p50: float, ops: float) -> SimpleNamespace:
    speed = SpeedReference.of(ops, ops + 10, WORK)
    return measured_run(throughput=80.0, p50=p50, user=15.0, kernel=0.5, threads=9.0, speed=speed)


def test_validate_adds_its_session_with_the_speed_references_and_reports_the_sessions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two stamps per validation: its session's, then its report's.
    stamps = iter(["20260101T000000Z", "20260101T000001Z", "20260102T000000Z", "20260102T000001Z"])
    monkeypatch.setattr(v, "_plots", lambda rows, out: None)
    monkeypatch.setattr(v, "utc_stamp", lambda: next(stamps))
    p50s = iter([7.0, 7.1, 7.2, 9.0, 9.1, 9.2])
    opses = iter([1000.0, 1010.0, 1020.0, 900.0, 905.0, 910.0])
    monkeypatch.setattr(v, "_measure", lambda case, seed: _fake_run(next(p50s), next(opses)))
    first = v.validate("cpython", repeats=3, out_dir=tmp_path, cases=[CASE])
    row = next(r for r in first["rows"] if r["metric"] == "latency_p50")
    assert [s["before_ops_s"] for s in row["speed_reference_runs"]] == [1000.0, 1010.0, 1020.0]
    history = sessions.load(tmp_path)
    (meta,) = history["sessions"]
    assert meta["source"] == "simlab validate" and meta["speed_reference"]["median_ops_s"] == 1015.0
    assert meta["cpu"]  # the machine the session ran on
    assert "No case has two sessions" in (tmp_path / "report.md").read_text()
    second = v.validate("cpython", repeats=3, out_dir=tmp_path, cases=[CASE])
    history = sessions.load(tmp_path)
    assert [s["id"] for s in history["sessions"]] == ["20260101T000000Z", "20260102T000000Z"]
    label = f"{CASE.target} {CASE.config()}"
    assert [e["speed_ops_s"] for e in history["cases"][label]][1] == [905.0, 910.0, 915.0]
    moved = {c["metric"]: c for c in second["between_sessions"]["cases"]}
    assert moved["latency_p50"]["apart"] is not None  # 7.1 then 9.1, each +-0.1
    assert moved["latency_p50"]["apart"]["high"]["speed_ops_s"] == 910.0
    # The goals still count this session's runs only.
    assert next(r for r in second["rows"] if r["metric"] == "latency_p50")["measured"] == 9.1
    assert "## Between sessions" in (tmp_path / "report.md").read_text()
