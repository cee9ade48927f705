"""An interrupted long run resumes where it stopped, and never trusts another plan's steps."""

from __future__ import annotations

from typing import Any

import pytest

import simlab.journal as journal_mod
import simlab.validate as validate_mod
from simlab.distributions import Fixed
from simlab.journal import Journal, journal_dir
from simlab.params import Architecture, Workload
from simlab.real.grids import Case
from tests.fakes import measured_run


@pytest.fixture(autouse=True)
def own_data_root(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SIMLAB_DATA", str(tmp_path / "data"))


def test_steps_survive_a_restart_and_a_torn_line() -> None:
    j = Journal("plan", {"steps": ["a", "b"]})
    assert not j.resumed
    j.put("a", {"x": 1.5})
    j.put("b", [1, 2])
    with j.path.open("a") as fh:
        fh.write('{"key": "c", "val')  # a crash in mid-write
    again = Journal("plan", {"steps": ["a", "b"]})
    assert again.resumed
    assert again.get("a") == {"x": 1.5} and again.get("b") == [1, 2]
    assert "c" not in again
    again.put("c", 3)
    assert Journal("plan", {"steps": ["a", "b"]}).get("c") == 3


def test_another_plan_starts_afresh_and_done_removes_the_journal() -> None:
    j = Journal("plan", {"steps": ["a"]})
    j.put("a", 1)
    other = Journal("plan", {"steps": ["a", "z"]})
    assert not other.resumed and "a" not in other
    other.done()
    assert not list(journal_dir().glob("*.jsonl"))


def test_a_new_revision_resumes_and_says_so(monkeypatch, capsys) -> None:
    # A commit between two halves of a calibration (docs, findings) keeps the
    # steps, and the resumed run names the revision they were measured at.
    monkeypatch.setattr(journal_mod, "git_revision", lambda: "aaa")
    Journal("plan", {"steps": ["a"]}).put("a", 1)
    monkeypatch.setattr(journal_mod, "git_revision", lambda: "bbb")
    again = Journal("plan", {"steps": ["a"]})
    assert again.get("a") == 1 and again.resumed_from == "aaa"
    assert "measured at revision aaa, now bbb" in capsys.readouterr().err


def _fake_measured(latency_ms: float) -> Any:
    # A run measured before the speed reference and the load generator's record.
    return measured_run(
        throughput=20.0, p50=latency_ms, user=30.0, kernel=1.0, threads=3.0,
        lag=None, client_us=None,
    )  # fmt: skip


def test_validate_resumes_at_its_first_unmeasured_run(monkeypatch, tmp_path) -> None:
    w = Workload(connections=4, rate=20.0, cpu=Fixed(0.001), io=Fixed(0.002), calls=1)
    cases = [Case("thread-pool", w, Architecture(workers=2), duration=2.0, warmup=0.5)] * 2
    calls: list[int] = []

    def measure(case: Case, seed: int) -> Any:
        calls.append(seed)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return _fake_measured(5.0)

    monkeypatch.setattr(validate_mod, "_measure", measure)
    with pytest.raises(KeyboardInterrupt):
        validate_mod.validate("ideal", repeats=2, cases=cases, out_dir=tmp_path)
    assert not (tmp_path / "validation.json").exists()
    interrupted = list(calls)
    calls.clear()
    result = validate_mod.validate("ideal", repeats=2, cases=cases, out_dir=tmp_path)
    # The runs go round the grid (case 0, case 1, then each again; seed
    # 1000 + 10 k + r): the two finished runs are not measured again, the
    # interrupted one (case 0's second) is, then case 1's second.
    assert interrupted == [1000, 1010, 1001]
    assert calls == [1001, 1011]
    assert len(result["rows"]) == 2 * len(validate_mod.METRICS)
    assert not list(journal_dir().glob("*.jsonl"))
