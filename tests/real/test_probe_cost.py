"""The probe's own CPU (``simlab.real.probe_cost``): a real probe on small trees
of sleeping processes (no sockets, about two seconds)."""

from __future__ import annotations

import os

import psutil
import pytest

from simlab.real.probe_cost import measure_probe_cost


def test_a_larger_tree_costs_the_probe_more_per_sample() -> None:
    before = {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)}
    cost = measure_probe_cost((1, 41), seconds=0.5)
    per = cost["per_sample_us"]
    # 40 more processes each read from /proc at every sample: a few ms more
    # than the root alone on any machine, and the line goes through both.
    assert per["41"] > per["1"] > 0
    assert cost["process_us"] > 0
    assert cost["sample_us"] + 41 * cost["process_us"] == pytest.approx(per["41"], rel=1e-9)
    assert cost["interval_s"] == 0.1
    # Every process the benchmark forked is gone.
    after = {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)}
    assert after <= before


def test_sizes_must_grow() -> None:
    with pytest.raises(ValueError, match="sizes"):
        measure_probe_cost((5, 5), seconds=0.1)
