"""A fork's cost split between the parent's accept loop and the child (``fork_child_us``).

The loaded fork runs served 121 connections/s with a fork costing 9.6 ms of
CPU: a parent paying all of it one connection at a time would saturate at
about 104/s. With only its os.fork() call on the accept loop, forks run in
parallel on the cores, up to the cores' capacity; and each child lives its
own start longer, which the thread count shows.
"""

from __future__ import annotations

import pytest

from simlab.distributions import Fixed
from simlab.models import get_model
from simlab.params import Architecture, Workload
from simlab.platforms import cpython
from simlab.simulation import simulate

FORK_US, PARENT_US = 9600.0, 550.0
WORK = Workload(connections=10_000, rate=120.0, cpu=Fixed(0.001), io=Fixed(0.005), calls=1,
                requests_per_connection=1)  # fmt: skip


def _run(child_us: float, exit_us: float = 0.0, rate: float = 120.0) -> object:
    p = cpython().with_(fork_us=FORK_US, fork_child_us=child_us, fork_exit_us=exit_us, cores=2)
    return simulate("process-per-connection", WORK.with_(rate=rate), p, Architecture(),
                    duration=4.0, warmup=1.0, seed=2, replications=2).summary  # fmt: skip


def test_the_whole_fork_on_the_accept_loop_saturates_it() -> None:
    s = _run(0.0)
    assert s.stability.offered_load["acceptor"] > 1
    assert not s.stable


def test_the_childs_part_runs_in_parallel() -> None:
    s = _run(FORK_US - PARENT_US)
    # Only the parent's call queues at the accept loop: 120/s x 0.55 ms.
    assert s.stability.offered_load["acceptor"] == pytest.approx(120 * PARENT_US * 1e-6)
    assert s.stable
    assert s.throughput_rps == pytest.approx(120, rel=0.1)
    # The cores carry the whole fork either way: the CPU is not lost.
    assert s.cpu_busy_cores == pytest.approx(_run(0.0, rate=60.0).cpu_busy_cores * 2, rel=0.15)


def test_a_child_lives_through_its_own_start_and_its_exit() -> None:
    light = 30.0
    alone = _run(0.0, rate=light)
    split = _run(FORK_US - PARENT_US, rate=light)
    exiting = _run(FORK_US - PARENT_US, 20_000.0, rate=light)
    # At a light load nobody queues: a child's start moves from the parent's
    # loop (before the child exists) into the child's life, and its exit adds
    # rate x exit to the mean count of children (Little's law).
    assert split.threads.mean > alone.threads.mean
    assert exiting.threads.mean - split.threads.mean == pytest.approx(light * 0.02, rel=0.15)
    # ... and the exit holds no core and delays no answer.
    assert exiting.latency_ms.p50 == pytest.approx(split.latency_ms.p50, rel=0.02)


def test_persistent_connections_wait_for_their_children() -> None:
    # The load generator opens 200 connections at once and sends 560 req/s of
    # 2 ms: the accepting process forks a child per connection in turn while
    # the children it forked already keep the cores busy (each pays its own
    # start with its first request). The count of children climbs over the
    # run's start, and the first requests wait for theirs.
    w = Workload(connections=200, rate=560.0, cpu=Fixed(0.002))
    split = cpython().with_(fork_us=FORK_US, fork_child_us=FORK_US - PARENT_US, cores=2)
    whole = split.with_(fork_child_us=0.0)
    runs = {
        name: simulate(
            "process-per-connection",
            w,
            p,
            Architecture(),
            duration=2.0,
            warmup=0.0,
            seed=4,
            replications=2,
        ).summary
        for name, p in (("split", split), ("whole", whole))
    }
    assert runs["whole"].threads.mean == runs["whole"].threads.peak == 201
    # The children's first requests, each with its child's 9 ms start, queue
    # at the cores ahead of the parent's later forks, so the last few may come
    # after the 2 s (as the real parent's did: about 5 s at 700/s).
    assert runs["split"].threads.mean < runs["split"].threads.peak_exact
    assert 180 <= runs["split"].threads.peak_exact <= 201
    assert runs["split"].latency_ms.p99 > 2 * runs["whole"].latency_ms.p99
    assert runs["split"].engine == "des"


def test_a_fork_storm_longer_than_the_warm_up_is_said() -> None:
    p = cpython().with_(fork_us=FORK_US, fork_child_us=FORK_US - PARENT_US, cores=2)
    many = Workload(connections=2000, rate=50.0, cpu=Fixed(0.001))
    s = simulate("process-per-connection", many, p, Architecture(), duration=2.0, warmup=1.0,
                 seed=1, replications=1).summary  # fmt: skip
    # 2,000 os.fork() calls of 0.55 ms in turn: 1.1 s of forking.
    assert any("forking a child for each of the 2,000 connections" in w for w in s.warnings)
    few = many.with_(connections=50)
    s = simulate("process-per-connection", few, p, Architecture(), duration=2.0, warmup=1.0,
                 seed=1, replications=1).summary  # fmt: skip
    assert not any("forking" in w for w in s.warnings)
    # 50 x e^-1 connections silent through the warm-up: their children start in the window.
    assert any("about 18 of the 50 connections send nothing" in w for w in s.warnings)
    s = simulate("process-per-connection", few, p, Architecture(), duration=2.0, warmup=6.0,
                 seed=1, replications=1).summary  # fmt: skip
    assert not s.warnings


def test_a_planner_sizes_persistent_children_in_their_steady_state() -> None:
    # simulate forks persistent connections' children as the run starts, as a
    # real run does (a cold start); a plan is for the steady state, in which
    # every child exists and none is forked again. Its checks start there.
    model = get_model("process-per-connection")
    p = cpython().with_(fork_us=FORK_US, fork_child_us=FORK_US - PARENT_US, cores=2)
    persistent = WORK.with_(connections=200, requests_per_connection=None, rate=60.0)
    assert model.forks_at_start(persistent, p)
    steady = model.steady_platform(persistent, p)
    assert not model.forks_at_start(persistent, steady)
    cold = simulate("process-per-connection", persistent, p, Architecture(), duration=3.0,
                    warmup=0.5, seed=3, replications=2).summary  # fmt: skip
    warm = simulate("process-per-connection", persistent, steady, Architecture(), duration=3.0,
                    warmup=0.5, seed=3, replications=2).summary  # fmt: skip
    # 200 children's first requests, each with its child's 9 ms start, hold
    # the cold run's first seconds: the steady run's do not.
    assert cold.latency_ms.p99 > 2 * warm.latency_ms.p99
    assert warm.threads.peak_exact == cold.threads.peak_exact == 201
    # A child per short connection is forked all the time: nothing changes.
    assert model.steady_platform(WORK, p) is p


def test_a_persistent_child_pays_its_start_with_its_first_request() -> None:
    # Children forked as the run starts sleep in recv until their client
    # speaks: the start (copy-on-write faults) falls on each connection's
    # first request. All 300 are forked within the 3 s warm-up (300 x 9 ms
    # on 2 cores), but about 300 x e^-1.5 connections have not spoken by
    # then, so the window's tail holds first requests, and its p50 does not.
    p = cpython().with_(fork_us=FORK_US, fork_child_us=FORK_US - PARENT_US, cores=2)
    slow = Workload(connections=300, rate=150.0, cpu=Fixed(0.002), io=Fixed(0.01), calls=1)
    s = simulate("process-per-connection", slow, p, Architecture(), duration=4.0, warmup=3.0,
                 seed=6, replications=2).summary  # fmt: skip
    steady = simulate("process-per-connection", slow, get_model("process-per-connection")
                      .steady_platform(slow, p), Architecture(), duration=4.0, warmup=3.0,
                      seed=6, replications=2).summary  # fmt: skip
    assert s.latency_ms.p50 == pytest.approx(steady.latency_ms.p50, rel=0.05)
    # About 58 first requests in the window's 600: its p99 holds a child's
    # start (9 ms of CPU), the steady run's does not.
    assert s.latency_ms.p99 > steady.latency_ms.p99 + 0.5 * (FORK_US - PARENT_US) / 1e3
