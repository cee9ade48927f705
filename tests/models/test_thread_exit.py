"""A thread made for a short connection outlives its answer (``thread_exit_us``):
it waits for the client's close and then goes, holding its thread and no core."""

from __future__ import annotations

import pytest

from simlab.distributions import Fixed
from simlab.models import get_model
from simlab.params import Architecture, Workload
from simlab.platforms import cpython
from simlab.results import SimSummary
from simlab.simulation import simulate

SHORT = Workload(connections=10_000, rate=150.0, cpu=Fixed(0.001), io=Fixed(0.005), calls=1,
                 requests_per_connection=1)  # fmt: skip


def _run(exit_us: float, workload: Workload = SHORT) -> SimSummary:
    p = cpython().with_(thread_exit_us=exit_us, cores=2)
    return simulate("thread-per-connection", workload, p, Architecture(),
                    duration=4.0, warmup=1.0, seed=5, replications=2).summary  # fmt: skip


def test_a_thread_outlives_its_answer_by_its_exit() -> None:
    gone, lingering = _run(0.0), _run(3000.0)
    # Little's law: rate x exit more threads on average, the same answers.
    assert lingering.threads.mean - gone.threads.mean == pytest.approx(150 * 0.003, rel=0.15)
    assert lingering.threads.peak >= gone.threads.peak
    assert lingering.latency_ms.p50 == pytest.approx(gone.latency_ms.p50, rel=0.02)
    assert lingering.cpu_busy_cores == pytest.approx(gone.cpu_busy_cores, rel=0.02)


def test_persistent_connections_keep_their_threads_either_way() -> None:
    held = SHORT.with_(connections=50, requests_per_connection=None)
    assert _run(3000.0, held).threads.mean == _run(0.0, held).threads.mean == 51


def test_the_fast_engine_leaves_an_outliving_thread_to_the_des() -> None:
    model = get_model("thread-per-connection")
    free = cpython().with_(spawn_us=0.0, gil=False, cores=None)
    assert model.fast_reason(SHORT, free, Architecture()) is None
    why = model.fast_reason(SHORT, free.with_(thread_exit_us=3000.0), Architecture())
    assert why is not None and "outlives" in why
