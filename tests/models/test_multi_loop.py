"""Several event loops per async process (``Architecture.loops``).

The notes' "one process, several threads, coroutines on each thread": without
a GIL, L loops in one process use L cores, as L processes of one loop do;
under CPython's GIL they take turns on it and use one core between them.
Saturated closed-loop throughput is the number compared: it is the cores'
capacity (cores / CPU per request), not a seed-dependent draw, so the
tolerance is the 3% that a 3-second run's edges (warm-up, the last requests)
can move it by.
"""

from __future__ import annotations

import pytest

import simlab
from simlab import Architecture, Fixed, Workload
from simlab.errors import UserError
from simlab.models.async_ import Async
from simlab.models.reactor_pool import ReactorPool
from simlab.planner.estimate import memory

CORES, LOOPS = 4, 4
TOL = 0.03


def _run(gil: bool, processes: int, loops: int) -> simlab.Result:
    w = Workload(connections=128, think=Fixed(1e-6), cpu=Fixed(0.002), io=Fixed(0.005))
    platform = simlab.load_platform("cpython-preset").with_(cores=CORES, gil=gil)
    return simlab.simulate(
        Async.name,
        w,
        platform,
        Architecture(processes=processes, loops=loops),
        duration=3.0,
        warmup=1.0,
        seed=1,
        replications=1,
        tables=False,
    )


def test_loops_without_a_gil_use_the_cores_like_processes() -> None:
    one = _run(False, 1, 1).summary.throughput_rps
    loops = _run(False, 1, LOOPS).summary
    procs = _run(False, LOOPS, 1).summary
    assert loops.throughput_rps == pytest.approx(procs.throughput_rps, rel=TOL)
    assert loops.throughput_rps > (LOOPS - 1) * one
    assert loops.threads.peak == LOOPS
    # One interpreter with L threads, against L forked copies and their master.
    assert loops.memory_mib.peak < procs.memory_mib.peak


def test_loops_under_the_gil_share_one_core() -> None:
    one = _run(True, 1, 1).summary.throughput_rps
    loops = _run(True, 1, LOOPS).summary.throughput_rps
    procs = _run(True, LOOPS, 1).summary.throughput_rps
    assert loops == pytest.approx(one, rel=TOL)
    assert procs > (LOOPS - 1) * one


def test_one_loop_is_the_old_model() -> None:
    a = _run(True, 2, 1).summary.to_dict()
    b = _run(True, 2, 1).summary.to_dict()
    assert a == b
    assert "loops" not in Architecture().describe()
    assert Architecture(loops=2).describe()["loops"] == 2


def test_memory_counts_a_thread_per_loop() -> None:
    w = Workload(connections=1000, rate=100.0, cpu=Fixed(0.001), io=Fixed(0.01))
    p = simlab.load_platform("cpython-preset")
    t1, r1, _ = memory(Async.name, w, p, Architecture(loops=1))
    t4, r4, _ = memory(Async.name, w, p, Architecture(loops=4))
    assert t4 - t1 == 3
    assert r4 > r1


def test_loops_are_refused_by_models_without_a_loop_to_add() -> None:
    w = Workload(connections=10, rate=10.0, cpu=Fixed(0.001), io=Fixed(0.01))
    with pytest.raises(UserError, match="loops"):
        simlab.simulate(
            ReactorPool.name,
            w,
            simlab.load_platform("cpython-preset"),
            Architecture(loops=2),
            duration=1.0,
            warmup=0.0,
            seed=1,
            replications=1,
            tables=False,
        )
    with pytest.raises(ValueError, match="loops"):
        Architecture(loops=0)


def test_the_analytic_plan_sees_the_loops() -> None:
    from simlab.planner import Goals, max_rate  # noqa: PLC0415

    w = Workload(connections=1000, rate=100.0, cpu=Fixed(0.002), io=Fixed(0.01))
    base = simlab.load_platform("cpython-preset").with_(cores=8)
    goals = Goals(p99_ms=200.0)

    def rate(gil: bool, arch: Architecture) -> float:
        (r,) = max_rate(
            w, base.with_(gil=gil), goals, models=[Async.name], architecture=arch, check="analytic"
        )
        return r.max_rate_rps

    free_loops = rate(False, Architecture(loops=4))
    free_procs = rate(False, Architecture(processes=4))
    assert free_loops == pytest.approx(free_procs, rel=0.01)
    assert rate(True, Architecture(loops=4)) < free_loops / 2
