"""Rate schedules: parsing, normalising, bad input as one line naming --rate, and
arrivals that follow the rate segment by segment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import simlab
from simlab import Architecture, Workload
from simlab.cli import main
from simlab.distributions import Fixed
from simlab.errors import UserError
from simlab.overload.schedule import Schedule, parse_rate, read_schedule
from simlab.scenario import build


def test_text_schedules_parse_and_normalise() -> None:
    s = parse_rate("100/s for 60s, 2000/s for 10s, 100/s for 120s")
    assert isinstance(s, Schedule)
    assert s.times == (0.0, 60.0, 70.0) and s.rates == (100.0, 2000.0, 100.0)
    assert s.span == 190.0 and s.settles_at() == 70.0
    assert s.expected(0, 190) == pytest.approx(100 * 180 + 2000 * 10)
    # Units, an open last segment, rps spellings.
    s = parse_rate("5 rps for 500ms, 10/s for 1 min, 3")
    assert isinstance(s, Schedule)
    assert s.times == (0.0, 0.5, 60.5) and s.rates == (5.0, 10.0, 3.0) and s.span is None
    # A zero-length spike and equal neighbours vanish: one constant segment.
    s = parse_rate("100/s for 60s, 2000/s for 0s, 100/s for 120s")
    assert isinstance(s, Schedule)
    assert s.constant and s.rates == (100.0,) and s.span == 180.0
    assert parse_rate("250") == 250.0


def test_csv_schedules(tmp_path: Path) -> None:
    f = tmp_path / "rate.csv"
    f.write_text("time_s,rate\n# a flash sale\n0,100\n30,2000\n40,100\n")
    s = read_schedule(f)
    assert s.times == (0.0, 30.0, 40.0) and s.rates == (100.0, 2000.0, 100.0) and s.span is None
    assert build({"rate": str(f)}).workload.schedule == s


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("-100/s for 5s", "rate (-100/s) must be >= 0"),
        ("100/s for -5s", "must be >= 0"),
        ("100/s for 5 parsecs", "is not s, ms or min"),
        ("100/s, 200/s for 5s", "only the last may omit it"),
        ("0/s for 5s", "above 0 somewhere"),
        (" , ", "empty"),
        ("fast", "is not 'RATE/s for DURATION'"),
    ],
)
def test_bad_text_schedules_say_why(value: str, words: str) -> None:
    with pytest.raises(
        UserError, match="^--rate: .*" + words.replace("(", r"\(").replace(")", r"\)")
    ):
        build({"rate": value})


def run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse checks the option's value itself
        return int(exc.code or 0)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("0,100\n30,200\n20,100\n", "times must increase"),
        ("", "holds no time_s,rate rows"),
        ("time_s,rate\n", "holds no time_s,rate rows"),
        ("0,100\n10,-5\n", "must be a finite number >= 0"),
        ("5,100\n", "must start at time 0"),
        ("0,abc\n", "is not 'time_s,rate'"),
    ],
)
def test_bad_csv_schedules_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, words: str
) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(text)
    code = run(["simulate", "async", "--rate", str(f), "--duration", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "--rate" in err and words in err, err


def test_a_missing_schedule_file_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["simulate", "async", "--rate", "/nowhere/rate.csv"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--rate" in err and "cannot read" in err


def test_a_schedule_sets_the_run_length_unless_given() -> None:
    s = build({"rate": "100/s for 20s, 500/s for 5s, 100/s for 15s", "warmup": 4})
    assert s.run.duration == 36.0
    assert build({"rate": "100/s for 20s, 500/s", "duration": 9}).run.duration == 9.0


def test_arrivals_follow_each_segment() -> None:
    # Counts per segment are Poisson: within 4 standard deviations of rate x length.
    sched = parse_rate("50/s for 40s, 400/s for 10s, 0/s for 5s, 80/s for 45s")
    assert isinstance(sched, Schedule)
    w = Workload(
        connections=10**9,
        rate=sched.mean_rate(),
        schedule=sched,
        cpu=Fixed(0.0),
        io=Fixed(0.001),
        calls=1,
    )
    r = simlab.simulate(
        "async", w, simlab.load_platform("ideal"), Architecture(), duration=100, warmup=0,
        replications=1, seed=7,
    )  # fmt: skip
    t = r.requests["arrival"].to_numpy()
    for lo, hi, rate in ((0, 40, 50), (40, 50, 400), (50, 55, 0), (55, 100, 80)):
        n = int(((t >= lo) & (t < hi)).sum())
        mean = rate * (hi - lo)
        assert abs(n - mean) <= 4 * np.sqrt(max(mean, 1)), (lo, hi, n, mean)
    # The timeline sees the same: offered per second in the spike.
    spike = [x.offered_rps for x in r.summary.timeline or () if 41 <= x.t_s < 49]
    assert 300 < np.mean(spike) < 500
