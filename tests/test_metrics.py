"""Levels rebuilt from intervals: exact peaks and time-weighted means."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simlab.metrics import Step
from simlab.stats import ci95


def test_step_peak_and_mean():
    # Intervals [0,2), [1,3), [2,4) of weight 1: level 1,2,2,1 on unit steps.
    s = Step.build([(np.array([0.0, 1.0, 2.0]), np.array([2.0, 3.0, 4.0]), 1.0)], base=10)
    assert s.window(0.0, 4.0) == (12.0, 11.5)
    # An interval ending as another starts is not a momentary peak of 3.
    assert s.window(1.5, 2.5)[0] == 12.0
    assert s.at(np.array([-1.0, 0.0, 3.5, 9.0])).tolist() == [10.0, 11.0, 11.0, 10.0]


def test_open_ended_and_unstarted_intervals():
    starts = np.array([1.0, math.nan, 2.0])
    ends = np.array([math.inf, math.nan, 3.0])
    s = Step.build([(starts, ends, 2.0)])
    assert s.window(0.0, 4.0) == (4.0, (3 * 2 + 1 * 2) / 4)


def test_weights_combine():
    s = Step.build(
        [(np.array([0.0]), np.array([1.0]), 3.0), (np.array([0.5]), np.array([2.0]), 0.5)]
    )
    assert s.window(0.0, 2.0) == (3.5, (0.5 * 3 + 0.5 * 3.5 + 1 * 0.5) / 2)


def test_ci95():
    assert ci95([1.0]) is None
    lo, hi = ci95([1.0, 2.0, 3.0])
    assert (lo + hi) / 2 == pytest.approx(2.0)
    assert hi - lo == pytest.approx(2 * 4.302652729911275 * 1.0 / math.sqrt(3))


def test_no_events_is_the_base_level():
    s = Step.build([(np.array([math.nan]), np.array([math.nan]), 1.0)], base=3.0)
    assert s.window(0.0, 1.0) == (3.0, 3.0)
