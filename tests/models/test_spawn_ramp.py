"""Thread-per-connection under a GIL spawns its persistent connections' threads
as the run starts, one at a time on the accepting thread, which needs the GIL
for each spawn (``Dedicated.ramps_at_start``).

Measured on the real server (the calibration's saturated closed loops, 300
clients with no think time): 85 to 174 threads alive on average, peaks of 107
to 190, not 301: the acceptor waits for the GIL behind every thread already
serving, so under saturation the threads come slowly, and the fewer threads
wait for the GIL the less their wake-ups cost (``gil_poll_us``).
"""

from __future__ import annotations

import pytest

from simlab.distributions import Fixed
from simlab.models import get_model
from simlab.params import Architecture, Workload
from simlab.platforms import cpython
from simlab.simulation import simulate

SPAWN_US = 612.0  # the calibrated cpython profile's spawn
PLATFORM = cpython().with_(spawn_us=SPAWN_US, cores=2)
# As the calibration's saturated runs: every client's next request is ready at once.
CLOSED = Workload(connections=300, think=Fixed(1e-6), cpu=Fixed(0.001), io=Fixed(0.005), calls=1)
MODEL = get_model("thread-per-connection")


def _run(workload: Workload, platform: object, **kw: float) -> object:
    options = {"duration": 4.0, "warmup": 1.0, "seed": 5, "replications": 2} | kw
    return simulate("thread-per-connection", workload, platform, Architecture(), **options).summary


def test_a_saturated_server_under_a_gil_does_not_spawn_every_thread() -> None:
    ramped = _run(CLOSED, PLATFORM)
    # Each spawn waits its turn at the GIL behind the threads already serving.
    assert ramped.engine == "des"
    assert ramped.threads.peak_exact < 250
    assert ramped.threads.mean < ramped.threads.peak_exact
    # Without a GIL the acceptor needs only a core, and without a spawn cost
    # there is nothing to ramp: every thread is there from the start.
    for p in (PLATFORM.with_(gil=False), PLATFORM.with_(spawn_us=0.0)):
        whole = _run(CLOSED, p)
        assert whole.threads.mean == whole.threads.peak_exact == 301


def test_fewer_threads_alive_cost_less_when_waiters_wake() -> None:
    # The GIL's waiters each wake every switch interval; with the threads
    # ramped, fewer wait, and a request costs less CPU than with all 300.
    polled = PLATFORM.with_(gil_poll_us=5.0)
    ramped, whole = _run(CLOSED, polled), _run(CLOSED, polled.with_(spawn_us=0.0))
    per_request = [s.cpu_busy_cores / s.throughput_rps for s in (ramped, whole)]
    assert per_request[0] < per_request[1]
    assert ramped.throughput_rps > whole.throughput_rps


def test_a_light_load_spawns_every_thread_within_the_warm_up() -> None:
    light = Workload(connections=300, rate=100.0, cpu=Fixed(0.001), io=Fixed(0.005), calls=1)
    s = _run(light, PLATFORM)
    # 300 spawns of 0.6 ms take 0.18 s at a light load: all there by the window.
    assert s.threads.mean == pytest.approx(301)
    assert not s.warnings


def test_requests_wait_for_their_thread() -> None:
    # A cold start with no warm-up: the last connections' first requests wait
    # in the backlog for their threads, which a planner's steady state has.
    light = Workload(connections=300, rate=300.0, cpu=Fixed(0.001), io=Fixed(0.005), calls=1)
    cold = _run(light, PLATFORM, warmup=0.0, duration=1.0)
    warm = _run(light, MODEL.steady_platform(light, PLATFORM), warmup=0.0, duration=1.0)
    assert cold.threads.mean < warm.threads.mean == 301
    assert cold.latency_ms.p99 > warm.latency_ms.p99


def test_a_planner_sizes_the_threads_all_spawned() -> None:
    assert MODEL.ramps_at_start(CLOSED, PLATFORM)
    steady = MODEL.steady_platform(CLOSED, PLATFORM)
    assert steady.spawn_us == 0 and not MODEL.ramps_at_start(CLOSED, steady)
    # A thread per short connection is spawned all the time: nothing changes.
    short = CLOSED.with_(requests_per_connection=1)
    assert not MODEL.ramps_at_start(short, PLATFORM)
    assert MODEL.steady_platform(short, PLATFORM) is PLATFORM


def test_a_spawn_storm_longer_than_the_warm_up_is_said() -> None:
    many = Workload(connections=3000, rate=50.0, cpu=Fixed(0.001))
    s = _run(many, PLATFORM, duration=2.0, replications=1)
    # 3,000 spawns of 0.612 ms in turn: 1.8 s of spawning.
    assert any("spawning a thread for each of the 3,000 connections" in w for w in s.warnings)
    # A thread has no start of its own to pay with its first request.
    assert not any("send nothing" in w for w in s.warnings)
