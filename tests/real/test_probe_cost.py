"""The probe's own CPU (``simlab.real.probe_cost``): a real probe on small trees
of sleeping processes (no sockets, about two seconds)."""

from __future__ import annotations

import os

import psutil
import pytest

from simlab.real import probe_cost
from simlab.real.probe_cost import measure_probe_cost


# Timed by this process's CPU: in the sequential phase, beside no other test
# (CI's parallel phase once measured 16 times this machine's cost a process).
@pytest.mark.real
def test_a_larger_tree_costs_the_probe_more_per_sample() -> None:
    before = {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)}
    cost = measure_probe_cost((1, 41), seconds=0.5)
    per = cost["per_sample_us"]
    # 40 more processes each read from /proc at every sample: a few ms more
    # than the root alone on any machine.
    assert per["41"] > per["1"] > 0
    assert cost["process_us"] == pytest.approx((per["41"] - per["1"]) / 40, rel=1e-9)
    assert 0 <= cost["sample_us"] <= per["1"]
    line_at_41 = cost["sample_us"] + 41 * cost["process_us"]
    if cost["sample_us"] > 0:
        # The line goes through both trees.
        assert line_at_41 == pytest.approx(per["41"], rel=1e-9)
    else:
        # The root alone cost less than one process more (a CI host did): the
        # intercept is held at 0, the line passes above both trees, and
        # the method says so.
        assert line_at_41 >= per["41"]
        assert "held at 0" in cost["method"]
    assert cost["interval_s"] == 0.1
    # Every process the benchmark forked is gone.
    after = {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)}
    assert after <= before


def test_sizes_must_grow() -> None:
    with pytest.raises(ValueError, match="sizes"):
        measure_probe_cost((5, 5), seconds=0.1)


def test_a_root_cheaper_than_one_process_holds_the_intercept_at_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The costs a CI host measured (per sample: 4,465 us for the root alone,
    # 246,226 us for 41 processes): the line through both would cross zero.
    measured = {1: 4465.0, 41: 246226.0}
    monkeypatch.setattr(probe_cost, "_per_sample_us", lambda n, seconds: measured[n])
    cost = measure_probe_cost((1, 41), seconds=0.1)
    assert cost["sample_us"] == 0
    assert cost["process_us"] == pytest.approx((246226.0 - 4465.0) / 40)
    assert "held at 0" in cost["method"]
