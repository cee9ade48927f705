"""The speed gate (``simlab.gate``) on a fake machine: no real run.

A fake clock advances only when the gate sleeps, and a fake speed source
replays a list of references, so each test states exactly what the gate saw
and checks what it did: waited (and for how long), stopped waiting at its
bound, repeated a run the machine left (at most ``retries`` times), kept the
attempt nearest the usual speed, and recorded every attempt with its values.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from simlab import gate as g
from simlab.errors import UserError
from simlab.journal import journal_dir
from simlab.params import Architecture, Fixed, Workload
from simlab.real.grids import Case
from simlab.real.speed import STALL_MS, WATCH_NICE, WORK
from simlab.results import SpeedReference
from tests.fakes import measured_run

USUAL = 10_000.0  # the calibration's speed; the floor at the default margin is 7,500


class FakeMachine:
    """A speed source replaying ``speeds`` (the last one repeats) and a clock
    that moves only when the gate sleeps."""

    def __init__(self, speeds: list[float]) -> None:
        self.speeds: Iterator[float] = iter(speeds)
        self.last = speeds[-1]
        self.t = 0.0
        self.sleeps: list[float] = []

    def speed(self) -> float:
        self.last = next(self.speeds, self.last)
        return self.last

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s

    def clock(self) -> g.Clock:
        return g.Clock(speed=self.speed, sleep=self.sleep, now=lambda: self.t)


@pytest.fixture(autouse=True)
def _own_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The gate holds the real-run lock; a test's own file keeps it off the machine's.
    monkeypatch.setenv("SIMLAB_LAB_LOCK", str(tmp_path / "lab.lock"))


def _run_with(
    ends: list[tuple[float, float]], values: list[float], stalls: list[float] | None = None
) -> Any:
    """A fake real run: each call returns the next (before, after) speed ends and value,
    and the longest stall its watch saw (ms)."""
    calls = iter(zip(ends, values, stalls or [10.0] * len(values), strict=True))
    count = []

    def run() -> dict[str, Any]:
        (before, after), v, stall = next(calls)
        count.append(v)
        watch = {"stall_max_ms": stall, "watch_nice": float(WATCH_NICE)}
        ref = SpeedReference.of(before, after, WORK, watch).to_dict()
        return {"latency_p50": v, "speed_reference": ref}

    run.count = count  # type: ignore[attr-defined]
    return run


def test_the_gate_waits_for_the_usual_speed_and_records_what_it_saw() -> None:
    m = FakeMachine([5_000.0, 6_000.0, 9_000.0])
    gate = g.Gate(USUAL, wait_s=60.0, poll_s=2.0)
    budget = g.Budget(900.0)
    seen = g.await_speed(gate, budget, m.clock())
    assert seen == {"ops_s": [5_000.0, 6_000.0, 9_000.0], "waited_s": 4.0, "slow_machine": False}
    assert budget.spent_s == 4.0
    # At the usual speed it does not wait at all.
    fast = FakeMachine([9_900.0])
    assert g.await_speed(gate, g.Budget(900.0), fast.clock())["waited_s"] == 0.0
    assert fast.sleeps == []


def test_the_wait_is_bounded_and_then_the_run_is_marked_slow() -> None:
    m = FakeMachine([4_000.0])  # never reaches the floor
    gate = g.Gate(USUAL, wait_s=10.0, poll_s=3.0)
    seen = g.await_speed(gate, g.Budget(900.0), m.clock())
    assert seen["waited_s"] == 10.0 and seen["slow_machine"] is True
    assert m.sleeps == [3.0, 3.0, 3.0, 1.0]  # the last sleep ends at the bound
    # The session's budget bounds it too: 4 s left, 4 s waited.
    m = FakeMachine([4_000.0])
    seen = g.await_speed(gate, g.Budget(900.0, spent_s=896.0), m.clock())
    assert seen["waited_s"] == 4.0 and seen["slow_machine"] is True


def test_a_run_the_machine_left_is_repeated_once_and_both_are_recorded() -> None:
    m = FakeMachine([9_000.0])
    run = _run_with([(9_000.0, 5_000.0), (9_100.0, 9_200.0)], [30.0, 20.0])
    out = g.gated(g.Gate(USUAL, retries=1), run, g.Budget(900.0), clock=m.clock())
    assert run.count == [30.0, 20.0]
    assert out["latency_p50"] == 20.0  # the repeat held the floor: it is kept
    rec = out["gate"]
    assert rec["attempts"] == 2 and rec["slow_machine"] is False
    (repeated,) = rec["repeated"]
    assert repeated["values"]["latency_p50"] == 30.0
    assert repeated["slowest_ops_s"] == 5_000.0
    assert "fell to 5,000 ops/s" in repeated["why"] and "7,500" in repeated["why"]


def test_repeats_are_bounded_and_the_attempt_nearest_the_usual_speed_is_kept() -> None:
    m = FakeMachine([9_000.0])
    ends = [(9_000.0, 6_000.0), (9_000.0, 7_000.0), (9_000.0, 4_000.0)]
    run = _run_with(ends, [31.0, 25.0, 40.0])
    out = g.gated(g.Gate(USUAL, retries=2), run, g.Budget(900.0), clock=m.clock())
    assert len(run.count) == 3  # 1 + 2 retries, no more
    assert out["latency_p50"] == 25.0  # slowest end 7,000: the nearest to usual
    rec = out["gate"]
    assert rec["slow_machine"] is True and rec["attempts"] == 3
    assert sorted(a["values"]["latency_p50"] for a in rec["repeated"]) == [31.0, 40.0]
    assert any(a["why"].startswith("discarded") for a in rec["repeated"])


def test_a_run_the_machine_stalled_in_is_repeated_and_a_run_without_a_stall_kept() -> None:
    m = FakeMachine([9_000.0])
    # At the usual speed at both ends, but the machine stalled for 2 s inside the run.
    run = _run_with([(9_000.0, 9_000.0)] * 2, [900.0, 20.0], [2_000.0, 12.0])
    out = g.gated(g.Gate(USUAL, retries=1), run, g.Budget(900.0), clock=m.clock())
    assert run.count == [900.0, 20.0] and out["latency_p50"] == 20.0
    rec = out["gate"]
    assert rec["stall_ms"] is None and rec["slow_machine"] is False
    (repeated,) = rec["repeated"]
    assert repeated["stall_ms"] == 2_000.0 and "stalled for 2,000 ms" in repeated["why"]
    # A stall under STALL_MS is a busy core, not a stall: no repeat.
    calm = _run_with([(9_000.0, 9_000.0)], [20.0], [STALL_MS * 0.9])
    assert g.gated(g.Gate(USUAL), calm, g.Budget(900.0), clock=m.clock())["gate"]["attempts"] == 1
    # Every attempt stalled: the one that did not fall under the floor is kept.
    both = _run_with([(9_000.0, 5_000.0), (9_000.0, 9_000.0)], [40.0, 30.0], [900.0, 800.0])
    out = g.gated(g.Gate(USUAL, retries=1), both, g.Budget(900.0), clock=m.clock())
    assert out["latency_p50"] == 30.0 and out["gate"]["stall_ms"] == 800.0
    # A watch that could not have its priority (not root) reads the run's own
    # busy cores as late wake-ups: recorded, never repeated on.
    low = {"stall_max_ms": 2_000.0, "watch_nice": 0.0}
    ref = SpeedReference.of(9_000.0, 9_000.0, WORK, low).to_dict()
    assert g.stall_ms({"speed_reference": ref}) is None
    # With the gate off, a stall is measured and kept as it is.
    off = _run_with([(9_000.0, 9_000.0)], [900.0], [2_000.0])
    assert g.gated(g.Gate.off(), off, g.Budget(900.0), clock=m.clock())["gate"]["attempts"] == 1


def test_a_first_check_that_passes_is_no_wait_and_the_record_counts_only_waits() -> None:
    # On the real clock: the microseconds after a first check that passed are no wait.
    fast = g.Clock(speed=lambda: 9_900.0)
    seen = g.await_speed(g.Gate(USUAL), g.Budget(900.0), fast)
    assert seen["waited_s"] == 0.0
    # A record counts as waits only the runs checked more than once.
    passed = {"ops_s": [9_900.0], "waited_s": 3e-6, "slow_machine": False}
    waited = {"ops_s": [5_000.0, 9_000.0], "waited_s": 2.0, "slow_machine": False}
    base = {"slowest_ops_s": 9_000.0, "slow_machine": False, "attempts": 1, "repeated": []}
    runs = [
        ("a", 0, {"gate": {**base, "check": passed}}),
        ("b", 0, {"gate": {**base, "check": waited}}),
    ]
    rec = g.record(g.Gate(USUAL), runs)
    assert (rec["waited"], rec["waited_s"]) == (1, 2.0)
    assert [h["case"] for h in rec["held"]] == ["b"]


def test_no_gate_runs_once_and_measures_nothing() -> None:
    m = FakeMachine([1_000.0])
    run = _run_with([(1_000.0, 1_000.0)], [50.0])
    for gate in (g.Gate.off(), g.Gate(USUAL, margin=0.0), g.Gate(None)):
        run = _run_with([(1_000.0, 1_000.0)], [50.0])
        out = g.gated(gate, run, g.Budget(900.0), clock=m.clock())
        assert run.count == [50.0] and out["gate"]["slow_machine"] is None
        assert out["gate"]["check"]["ops_s"] == []
    assert m.sleeps == []


def test_a_spent_budget_neither_waits_nor_repeats() -> None:
    m = FakeMachine([4_000.0])
    run = _run_with([(4_000.0, 4_000.0)], [50.0])
    budget = g.Budget(100.0, spent_s=100.0)
    out = g.gated(g.Gate(USUAL, retries=2), run, budget, clock=m.clock())
    assert run.count == [50.0] and m.sleeps == []
    assert out["gate"]["slow_machine"] is True and out["gate"]["check"]["ops_s"] == [4_000.0]


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("margin", 0.95, "--gate-margin"),
        ("margin", -0.1, "--gate-margin"),
        ("wait_s", float("nan"), "--gate-wait"),
        ("retries", 6, "--gate-retries"),
        ("retries", 1.5, "--gate-retries"),
        ("budget_s", -1.0, "--gate-budget"),
    ],
)
def test_bad_gate_options_name_themselves(field: str, value: Any, flag: str) -> None:
    with pytest.raises(UserError, match=f"^{flag}"):
        g.Gate(USUAL, **{field: value})


def test_the_gate_reads_the_profiles_calibration_speed() -> None:
    profile = {"speed_reference": {"median_ops_s": 8_000.0, "runs": 70, "work": WORK}}
    gate = g.Gate.from_profile(profile, margin=0.25)
    assert gate.on and gate.floor == 6_000.0
    old = g.Gate.from_profile({"speed_reference": {"median_ops_s": 8_000.0, "work": "older"}})
    assert not old.on and "no speed reference" in old.source
    # The command line's ways to turn it off, each named in the record.
    args = SimpleNamespace(no_gate=False, gate_margin=0.0, gate_wait=60.0, gate_retries=1,
                           gate_budget=900.0)  # fmt: skip
    assert g.from_options(args, profile).source == "--gate-margin 0"
    args.no_gate = True
    assert g.from_options(args, profile).to_dict()["on"] is False


def _fake_summary(p50: float, before: float, after: float) -> Any:
    speed = SpeedReference.of(before, after, WORK)
    return measured_run(throughput=20.0, p50=p50, user=30.0, kernel=1.0, threads=3.0, speed=speed)


def test_validate_resumes_a_repeated_run_and_reports_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import simlab.validate as v  # noqa: PLC0415

    monkeypatch.setattr(v, "_plots", lambda rows, out: None)
    fake = FakeMachine([9_000.0]).clock()
    monkeypatch.setattr(g, "Clock", lambda: fake)
    w = Workload(connections=4, rate=20.0, cpu=Fixed(0.001), io=Fixed(0.002), calls=1)
    case = Case("thread-pool", w, Architecture(workers=2), duration=2.0, warmup=0.5)
    gate = g.Gate(USUAL, retries=1)
    # The first attempt ends slow and is to be repeated; the repeat is interrupted.
    runs = iter([_fake_summary(9.0, 9_000.0, 5_000.0), KeyboardInterrupt()])
    seeds: list[int] = []

    def measure(c: Case, seed: int) -> Any:
        seeds.append(seed)
        got = next(runs)
        if isinstance(got, BaseException):
            raise got
        return got

    monkeypatch.setattr(v, "_measure", measure)
    with pytest.raises(KeyboardInterrupt):
        v.validate("ideal", repeats=1, cases=[case], out_dir=tmp_path, gate=gate)
    # Resumed: the journalled first attempt stands, only its repeat runs (same seed).
    runs = iter([_fake_summary(7.0, 9_000.0, 9_100.0)])
    result = v.validate("ideal", repeats=1, cases=[case], out_dir=tmp_path, gate=gate)
    assert seeds == [1000, 1000, 1000]
    row = next(r for r in result["rows"] if r["metric"] == "latency_p50")
    assert row["measured_runs"] == [7.0]
    record = result["gate"]
    assert record["options"]["floor_ops_s"] == 7_500.0
    assert record["repeated"] == 1 and record["slow_machine"] == 0
    (held,) = record["held"]
    assert held["attempts"] == 2 and held["repeated"][0]["values"]["latency_p50"] == 9.0
    report = (tmp_path / "report.md").read_text()
    assert "## Runs gated on the machine's speed" in report and "1 were repeated" in report
    assert "fell to 5,000 ops/s" in report
    assert not list(journal_dir().glob("validate-ideal*"))


def test_the_lock_is_reentrant_in_a_thread_and_still_excludes_others(tmp_path: Path) -> None:
    # The gate holds the lock from its check through measure(), whose own
    # exclusive() must not wait for itself; another thread still waits.
    import threading  # noqa: PLC0415

    from simlab.real import lock  # noqa: PLC0415

    other: list[str] = []

    def contender() -> None:
        with lock.exclusive(other.append):
            other.append("held")

    with lock.exclusive(), lock.exclusive():  # nested: no deadlock
        t = threading.Thread(target=contender)
        t.start()
        t.join(timeout=1.5)
        assert t.is_alive() and other and other[0].startswith("waiting")  # it waits
    t.join(timeout=5)
    assert other[-1] == "held"


def test_calibrations_runs_go_through_the_same_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    import simlab.calibrate as cal  # noqa: PLC0415
    from simlab.journal import Journal  # noqa: PLC0415
    from simlab.real.grids import grid  # noqa: PLC0415

    fake = FakeMachine([9_000.0]).clock()
    monkeypatch.setattr(g, "Clock", lambda: fake)
    ends = iter([(9_000.0, 4_000.0), (9_000.0, 9_500.0)])

    def measure(opts: Any, progress: Any = None) -> Any:
        before, after = next(ends)
        ref = SpeedReference.of(before, after, WORK).to_dict()
        summary = SimpleNamespace(to_dict=lambda: {"throughput_rps": 50.0, "speed_reference": ref})
        return SimpleNamespace(summary=summary, front_cpu_cores=None)

    monkeypatch.setattr(cal, "measure", measure)
    run = grid(quick=True)[0]
    journal = Journal("calibrate-gate-test", {"runs": [run.label()]})
    gate = g.Gate(USUAL, retries=1)
    ((_, kept),) = cal.measure_runs([run], journal, lambda *_: None, 1, gate=gate)
    assert kept["kept"]["speed_reference"]["after_ops_s"] == 9_500.0
    assert kept["kept"]["gate"]["attempts"] == 2
    assert f"1: {run.label()} repeat 0" in journal  # the repeated attempt, journalled
    record = g.record(gate, [(run.label(), 0, kept["kept"])])
    assert record["repeated"] == 1 and record["held"][0]["repeated"][0]["slowest_ops_s"] == 4_000.0
    journal.done()
