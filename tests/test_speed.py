"""The machine's speed reference (``simlab.real.speed``) and where its values go.

The reference does the same work every time (only its time may differ), its
rate is positive, and the values measured beside a run reach calibration's
run records and the profile's median unchanged. (That ``simlab measure``
records it is checked on real runs, in tests/real/test_lab.py.)
"""

from __future__ import annotations

import math
import os
import sys
import time

import pytest

from simlab import calibrate as cal
from simlab.distributions import Fixed
from simlab.params import Architecture, Workload
from simlab.real import speed
from simlab.real.grids import Run
from simlab.results import SpeedReference


def test_the_work_is_the_same_every_time_and_grows_with_the_ops() -> None:
    first, again = speed.work(), speed.work()
    assert first == again > 0
    # Twice the ops, about twice the checksum: it counts what each op produced.
    assert speed.work(2 * speed.OPS_PER_BATCH) == pytest.approx(2 * first, rel=0.05)


def test_a_measurement_is_a_positive_rate_its_best_batch_at_least_its_median() -> None:
    s = speed.measure_speed(batches=3, ops_per_batch=5)
    assert math.isfinite(s.ops_s) and s.ops_s > 0
    assert s.ops_s >= s.median_ops_s > 0
    assert (s.batches, s.ops_per_batch) == (3, 5)
    with pytest.raises(ValueError, match="batches"):
        speed.measure_speed(batches=0)


def test_the_watch_reads_the_speed_and_a_stall_inside_its_window() -> None:
    w = speed.SpeedWatch(interval_s=0.02)
    w.start()
    time.sleep(0.3)
    # A stall: the watch's thread is held back, here by one C call that keeps
    # the GIL (a stalled machine holds every thread back alike). It starts as
    # a batch has just ended: a stall inside a batch would read as a slow
    # batch, not a late wake-up.
    seen = len(w.samples)
    while len(w.samples) == seen:
        time.sleep(0.0005)
    start = time.perf_counter()
    math.factorial(100_000)
    held = time.perf_counter() - start
    time.sleep(0.2)
    w.stop()
    times = [s[0] for s in w.samples]
    out = w.summary((times[0], times[-1]))
    assert out is not None
    assert out["during_ops_s"] >= out["during_min_ops_s"] > 0
    # The watch may take the GIL as the call returns, before this thread
    # reads the clock: up to a switch interval of its batch counts in ``held``.
    assert out["stall_max_ms"] >= (held - w.interval_s - sys.getswitchinterval()) * 1e3
    assert out.get("steal_cores", 0.0) >= 0
    # Its thread asked for WATCH_NICE: as root it has it, else the process's own.
    assert out["watch_nice"] == (speed.WATCH_NICE if os.geteuid() == 0 else os.nice(0))
    # A window with too few reads has no reading at all.
    assert w.summary((times[0], times[0])) is None
    # And the reference keeps what the watch read.
    ref = SpeedReference.of(9_000.0, 8_000.0, speed.WORK, out)
    assert ref.stall_max_ms == out["stall_max_ms"] and ref.ops_s == 8_500.0
    assert "stall_max_ms" not in SpeedReference.of(9_000.0, 8_000.0, speed.WORK).to_dict()


def test_a_sessions_speed_is_the_median_of_its_runs_of_the_same_work() -> None:
    refs = [
        SpeedReference.of(100.0, 110.0, speed.WORK).to_dict(),
        SpeedReference.of(200.0, 200.0, speed.WORK).to_dict(),
        SpeedReference.of(300.0, 310.0, speed.WORK).to_dict(),
        SpeedReference.of(9e9, 9e9, "another-work").to_dict(),  # not comparable: left out
        None,  # a run from before the reference
    ]
    got = speed.session_speed(refs)
    assert got == {"median_ops_s": 200.0, "min_ops_s": 105.0, "max_ops_s": 305.0,
                   "runs": 3, "work": speed.WORK}  # fmt: skip
    assert speed.session_speed([None]) is None


def test_calibration_keeps_each_runs_reference_through_a_refit() -> None:
    ref = SpeedReference.of(4000.0, 4200.0, speed.WORK)
    assert ref.ops_s == 4100.0
    summary = {"throughput_rps": 10.0, "speed_reference": ref.to_dict()}
    kept = cal._keep(summary)
    assert kept["speed_reference"] == ref.to_dict()
    w = Workload(connections=4, rate=10.0, cpu=Fixed(0.001), io=Fixed(0.005))
    run = Run("async", w, Architecture(workers=4), "cpu")
    record = cal._run_record(run, cal._as_summary(kept))
    assert record["measured"]["speed_reference"]["before_ops_s"] == 4000.0
    # A refit reads the runs back from the profile: the reference survives it.
    _, again = cal._from_record(record)
    assert again["kept"]["speed_reference"] == ref.to_dict()
    median = speed.session_speed([again["kept"]["speed_reference"]])
    assert median is not None and median["median_ops_s"] == 4100.0
