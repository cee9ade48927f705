"""Runtime mechanisms, both ways on the committed held-out runs (issue 14).

Node's saturated loop: a busy loop serves several requests per wake-up, so
its cost per request falls with the load: a request that finds the loop
awake pays no wake-up (``wake_us``, fitted from the grid's light runs apart
from a request's own cost, which its closed loops set), and the loop's own
batching costs (``loop_event_us``, ``loop_wake_us``) where the runs identify
them. With it the three held-out cases at or beyond the loop's capacity
meet the throughput goal (5%); without it (every request paying what a lone
one does: its own cost and a whole wake-up) the one of 300 connections
beyond it misses the goal (by 9.9%, on the runs of 5 December), and the
median error over the three grows. One comes closer without it: 2,000 connections at 1.14, whose
runs served 192, 219 and 218/s (the model 218 with batching, 206 without).

Go's memory under load.

Two mechanisms the idle micro-benchmarks cannot see, on the ``go`` profile:

- ``thread_served_kib``: a goroutine that has served a request holds more than
  an idle one (its stack grown, net/http's buffers), counted from its first
  request; fitted from the calibration runs, which serve some connections and
  leave others idle;
- ``backend_pool``: the Go peer shares a pool of backend connections (as
  database/sql does), so it holds as many as calls were ever in flight at
  once, not one per goroutine that has called.

Each held-out case of ``data/validation/go`` (run 3 times for real) is
simulated again on the committed profile, with the mechanisms and without
them: with them the median error of user and of kernel memory meets the
validation goal (15%), without them it does not. And the pieces: the pool's
growth on a hand-made trace, the footprint's pooled count, and the fit's
served connections.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simlab import simulate, validate
from simlab.calibrate_runtime import _units
from simlab.footprint import Units
from simlab.metrics import _pool_growth
from simlab.params import Architecture, Fixed, Platform, Workload
from simlab.platforms import load_platform, platform_from_profile
from simlab.real.grids import RUNTIMES, Case, Run, runtime_cases
from simlab.real.peers import RESEMBLES

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "data" / "profiles" / "go.json"
SAVED = REPO / "data" / "validation" / "go" / "validation.json"
NODE = REPO / "data" / "profiles" / "node.json"
NODE_SAVED = REPO / "data" / "validation" / "node" / "validation.json"
JVM = REPO / "data" / "profiles" / "jvm.json"
JVM_SAVED = REPO / "data" / "validation" / "jvm" / "validation.json"
THROUGHPUT_GOAL = 0.05
GOAL = 0.15
OFF = {"thread_served_kib": 0.0, "backend_pool": False}


@cache
def _measured() -> dict[tuple[str, str], float]:
    saved = json.loads(SAVED.read_text())
    return {
        (r["config"], r["metric"]): float(r["measured"])
        for r in saved["rows"]
        if r["metric"] in ("memory_user", "memory_kernel") and r["evidence"]
    }


def _platform(**changes: object) -> Platform:
    profile = json.loads(PROFILE.read_text())
    base = platform_from_profile(profile, source=str(PROFILE))
    return validate.lab_platform(base, profile).with_(**changes)


@cache
def _case_summary(model: str, case: Case, platform: Platform, k: int) -> Any:
    """One replication of held-out case ``k`` as ``simlab validate`` seeds it."""
    return simulate(
        model,
        case.workload,
        platform,
        case.arch,
        duration=case.duration,
        warmup=case.warmup,
        seed=k + 1,
        replications=1,
        tables=False,
    ).summary


def _errors(off: bool) -> dict[str, float]:
    """Median relative error of user and kernel memory over the held-out cases
    (one replication each: a run's memory peak barely varies between them)."""
    platform = _platform(**OFF) if off else _platform()
    measured = _measured()
    errs: dict[str, list[float]] = {"memory_user": [], "memory_kernel": []}
    for k, case in enumerate(runtime_cases("go")):
        s = _case_summary("thread-per-connection", case, platform, k)
        got = {"memory_user": s.memory_mib.user_peak, "memory_kernel": s.memory_mib.kernel_peak}
        for metric, value in got.items():
            real = measured[(case.config(), metric)]
            errs[metric].append(abs(float(value) - real) / real)
    return {m: float(np.median(v)) for m, v in errs.items()}


def test_the_profile_holds_both_mechanisms() -> None:
    assert load_platform("go-preset").backend_pool  # the peer's design, in the preset
    p = platform_from_profile(json.loads(PROFILE.read_text()), source=str(PROFILE))
    assert p.backend_pool
    assert p.thread_served_kib > 0
    served = json.loads(PROFILE.read_text())["parameters"]["thread_served_kib"]
    assert served["identified"] and served["ci95"][0] > 0


@pytest.mark.parametrize("metric", ["memory_user", "memory_kernel"])
def test_go_memory_meets_its_goal_with_the_mechanisms_and_not_without(metric: str) -> None:
    assert _errors(off=False)[metric] <= GOAL
    assert _errors(off=True)[metric] > 2 * GOAL


def test_a_pool_opens_a_connection_each_time_its_peak_in_use_rises() -> None:
    # In service: [0, 2), [1, 3), [2.5, 4), [5, 6): at most two at once,
    # reached at 1; the third starts after the first has ended (2 <= 2.5).
    start = np.array([0.0, 1.0, 2.5, 5.0, math.nan])
    end = np.array([2.0, 3.0, 4.0, 6.0, math.nan])
    opened, kept = _pool_growth(start, end)
    assert opened.tolist() == [0.0, 1.0]
    assert np.isinf(kept).all()
    # Handed back at 2 and asked for again at 2: still two.
    opened, _ = _pool_growth(np.array([0.0, 1.0, 2.0]), np.array([2.0, 3.0, 4.0]))
    assert opened.tolist() == [0.0, 1.0]


def test_a_pooled_footprint_counts_the_requests_in_flight_not_the_callers() -> None:
    units = Units(thread=100, connection=100, task=7, backend_conn=100)
    own = Platform(name="own", connection_kernel_kib=4.0, backend_conn_kib=1.0)
    pooled = own.with_(backend_pool=True)
    per = own.connection_kernel_kib + own.backend_conn_kib
    gap = units.footprint(own).user_kib + units.footprint(own).kernel_kib
    gap -= units.footprint(pooled).user_kib + units.footprint(pooled).kernel_kib
    assert gap == pytest.approx((100 - 7) * per)


def test_the_fit_counts_the_goroutines_that_served_in_the_run() -> None:
    # 3,000 connections at 40/s for 3.5 s: about 137 distinct ones sent a request.
    w = Workload(connections=3000, rate=40.0, cpu=Fixed(0.0005), io=Fixed(0.002), calls=1)
    run = Run("go", w, Architecture(workers=16), "memory", 2.0, 1.5)
    s = {"throughput_rps": 40.0, "latency_ms": {"mean": 3.0}}
    served = _units(run, s).served
    assert served == pytest.approx(3000 * (1 - math.exp(-40 * 3.5 / 3000)))
    # A thread per connection grows once it has served on both (a goroutine's
    # stack, a Java thread's allocation buffer); not where no thread is a
    # connection's (node's loop, PHP-FPM's children).
    assert RUNTIMES["go"].served_growth and RUNTIMES["jvm"].served_growth
    assert not RUNTIMES["node"].served_growth and not RUNTIMES["php"].served_growth


def _served_errors(
    runtime: str,
    profile_path: Path,
    saved_path: Path,
    change: Callable[[Platform], Platform] = lambda p: p,
) -> dict[tuple[str, str], float]:
    """Each saturated held-out case of ``runtime``: its served-rate error,
    one replication as ``simlab validate`` seeds it, on the committed profile
    (through ``change``) against the committed runs, by peer and config."""
    profile = json.loads(profile_path.read_text())
    platform = change(
        validate.lab_platform(platform_from_profile(profile, source=str(profile_path)), profile)
    )
    saved = json.loads(saved_path.read_text())
    measured = {
        (r["model"], r["config"]): float(r["measured"])
        for r in saved["rows"]
        if r["metric"] == "throughput_rps" and r["evidence"]
    }
    errs = {}
    for k, case in enumerate(runtime_cases(runtime)):
        real = measured.get((case.target, case.config()))
        if real is None:
            continue  # below saturation: served = sent on both sides
        s = _case_summary(RESEMBLES[case.target], case, platform, k)
        errs[case.target, case.config()] = abs(s.throughput_rps - real) / real
    return errs


def _lone(platform: Platform) -> Platform:
    """Every request pays what a request that finds the loop asleep pays,
    however many are ready: its own cost and a whole wake-up."""
    lone = platform.loop_parse_us + platform.wake_us + platform.loop_wake_us
    return platform.with_(parse_us=lone, wake_us=0.0, loop_event_us=0.0, loop_wake_us=0.0)


def _node_throughput_errors(batching: bool) -> list[float]:
    errs = _served_errors("node", NODE, NODE_SAVED, (lambda p: p) if batching else _lone)
    return list(errs.values())


def test_node_at_saturation_meets_the_throughput_goal_with_batching_and_not_without() -> None:
    # The wake-up is fitted, with an interval, apart from a request's own cost.
    params = json.loads(NODE.read_text())["parameters"]
    for key in ("parse_us", "wake_us"):
        assert params[key]["identified"] and params[key]["ci95"][0] > 0, key
    with_it, without = _node_throughput_errors(True), _node_throughput_errors(False)
    assert len(with_it) == 3
    # The goal is the median's; no case twice over it (the timer's runs of 6
    # December put 2,000 connections at 1.14 of the loop 6.5% over).
    assert np.median(with_it) <= THROUGHPUT_GOAL
    assert max(with_it) <= 2 * THROUGHPUT_GOAL
    # Without it, a case beyond the loop's capacity misses the goal, and the
    # median over the cases is further off.
    assert max(without) > THROUGHPUT_GOAL
    assert np.median(with_it) < np.median(without)


def test_java_threads_beyond_the_cores_meets_the_throughput_goal_with_crowding() -> None:
    """java-threads on 1,000 threads beyond the cores (4 ms a request): its
    requests cost more CPU the more threads are queued beside them
    (``Platform.crowding``, fitted from the JVM grid's open loops on 100 and
    1,000 connections). With it the model's served rate meets the goal on
    the committed runs; without it the model serves more than the
    server did (9%; 24.7% on the slower runs of the morning of 6 December). The
    Tomcat cases, whose pool holds at most 12 threads, barely move."""
    params = json.loads(JVM.read_text())["parameters"]
    assert params["crowding"]["identified"] and params["crowding"]["ci95"][0] > 0
    with_it = _served_errors("jvm", JVM, JVM_SAVED)
    without = _served_errors("jvm", JVM, JVM_SAVED, lambda p: p.with_(crowding=0.0))
    threads = [key for key in with_it if key[0] == "java-threads"]
    assert len(threads) == 1 and len(with_it) == 3
    assert with_it[threads[0]] <= THROUGHPUT_GOAL
    assert without[threads[0]] > THROUGHPUT_GOAL
    for key in with_it:
        if key[0] != "java-threads":
            assert with_it[key] <= without[key] + 0.01, key
