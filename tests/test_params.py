"""Parameter objects reject bad values with a message naming the field and the value."""

from __future__ import annotations

import pytest

from simlab import Architecture, Platform, Trace, Workload
from simlab.distributions import Fixed


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Architecture(workers=0), r"workers\(=0\) must be an integer >= 1"),
        (lambda: Architecture(processes=-2), r"processes\(=-2\)"),
        (lambda: Architecture(backlog=-1), r"backlog\(=-1\)"),
        (lambda: Workload(connections=0, rate=1.0), r"connections\(=0\)"),
        (lambda: Workload(rate=-5.0), r"rate\(=-5.0\) must be > 0"),
        (Workload, "give exactly one of rate, think or trace"),
        (lambda: Workload(rate=1.0, think=Fixed(1.0)), "exactly one"),
        (lambda: Workload(rate=1.0, calls=-1), r"calls\(=-1\)"),
        (lambda: Workload(rate=1.0, fanout="sideways"), "fanout"),
        (lambda: Workload(rate=1.0, requests_per_connection=0), "requests_per_connection"),
        (lambda: Workload(connections=2, trace=Trace((0.0,), (5,))), "trace uses connection 5"),
        (lambda: Trace((1.0, 0.5), (0, 0)), "goes back in time"),
        (lambda: Platform(cores=0), r"cores\(=0\)"),
        (lambda: Platform(thread_kib=-1.0), r"thread_kib\(=-1.0\)"),
        (lambda: Platform(parse_us=float("inf")), "parse_us"),
        (lambda: Platform(loop_passes=1.5), r"loop_passes\(=1.5\) must be a whole number"),
        (lambda: Platform(loop_passes=65.0), r"loop_passes\(=65.0\) .* from 0 to 64"),
    ],
)
def test_validation_names_field_and_value(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_params_are_frozen():
    a = Architecture()
    with pytest.raises(AttributeError):
        a.workers = 3  # type: ignore[misc]
