"""The load generator's histogram reads (``loadgen.percentile``, ``loadgen.mean``),
which take only the histogram's nonzero slots, against the library's own walk
over every slot and numpy's percentile of the same values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simlab.real import loadgen

latencies_us = st.lists(st.integers(min_value=1, max_value=60_000_000), min_size=1, max_size=400)


def _filled(values: list[int]):
    h = loadgen._histogram()
    for v in values:
        h.record_value(v)
    # Through the wire format, as measure reads the load generator's histograms.
    return loadgen.decode(h.encode().decode())


@settings(max_examples=60, deadline=None)
@given(latencies_us, st.sampled_from([0.0, 1.0, 50.0, 95.0, 99.0, 99.9, 100.0]))
def test_percentile_is_numpys_over_the_recorded_values(values: list[int], q: float) -> None:
    h = _filled(values)
    # Each value as the histogram keeps it: its bucket's highest equivalent.
    kept = [h.get_highest_equivalent_value(v) for v in values]
    # The same definition; numpy interpolates with its own rounding (1e-16).
    expected = float(np.percentile(np.asarray(kept, dtype=float), q))
    assert loadgen.percentile(h, q) == pytest.approx(expected, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(latencies_us)
def test_mean_is_the_librarys(values: list[int]) -> None:
    h = _filled(values)
    assert loadgen.mean(h) == h.get_mean_value()


def test_recorded_walks_the_librarys_recorded_values_in_order() -> None:
    h = _filled([5, 5, 1_000, 1_001, 123_456, 59_000_000])
    values, counts = loadgen.recorded(h)
    steps = [
        (s.value_iterated_to, s.count_added_in_this_iter_step) for s in h.get_recorded_iterator()
    ]
    assert list(zip(values.tolist(), counts.tolist(), strict=True)) == steps


def test_an_empty_histogram_reads_as_nothing() -> None:
    h = loadgen._histogram()
    assert np.isnan(loadgen.percentile(h, 50))
    assert loadgen.mean(h) == 0.0
