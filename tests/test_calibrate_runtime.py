"""A runtime's calibration (``simlab calibrate --runtime``), fitted on recorded real runs.

``tests/data/runtime-runs.json`` holds what calibration keeps of real runs:
a jvm and a php calibration's of 1 December 2026 (the jvm grid's open runs:
before its closed loops), and a node calibration's of 5 December (its
closed loops included): fitting them again needs no real run, and must label
every parameter honestly. The closed loops of many clients, whose fit
simulates every run on a grid, are tested on loops simulated here
(``_closed_loops``).
"""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from simlab import calibrate, calibrate_runtime, fitting, load_platform
from simlab.calibrate import _from_record
from simlab.calibrate_runtime import memory_fit, runtime_profile
from simlab.footprint import Units
from simlab.platforms import PRESETS, platform_from_profile
from simlab.real.grids import CORES, RUNTIMES, runtime_cases, runtime_grid
from simlab.real.peers import RESEMBLES
from simlab.simulation import simulate

RUNS = Path(__file__).parent / "data" / "runtime-runs.json"


def _recorded(runtime: str) -> list:
    return [_from_record(r) for r in json.loads(RUNS.read_text())[runtime]]


def _fit(runtime: str) -> dict:
    # 100 bootstrap resamples instead of 400: the same fits, a quarter of the
    # time; what is checked here is the labelling, not the committed numbers.
    quick = functools.partial(fitting.fit_robust, boots=100)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(calibrate, "fit_robust", quick)
        mp.setattr(calibrate_runtime, "fit_robust", quick)
        return runtime_profile(runtime, _recorded(runtime))


PROFILES: dict[str, dict] = {}


def _profile(runtime: str) -> dict:
    if runtime not in PROFILES:
        PROFILES[runtime] = _fit(runtime)
    return PROFILES[runtime]


@pytest.fixture(scope="module", params=["jvm", "php", "node"])
def fitted(request: pytest.FixtureRequest) -> tuple[str, dict]:
    return request.param, _profile(request.param)


def test_every_parameter_is_fitted_measured_or_labelled(fitted) -> None:
    # The three honest states: an interval that excludes zero; "measured" with
    # its record; or "not identified", the preset's value and no interval.
    name, profile = fitted
    preset = PRESETS[name]()
    for key, p in profile["parameters"].items():
        if not isinstance(p, dict):
            continue
        if p["identified"] and "ci95" in p and p["ci95"] is not None:
            lo, hi = p["ci95"]
            assert 0 < lo <= hi, key
        elif p["identified"]:
            assert p.get("method", "").startswith(("measured", "lognormal")), key
        else:
            assert "ci95" not in p and p["assumption"], key
            assert p["value"] == pytest.approx(getattr(preset, key)), key
    platform_from_profile(profile)  # and it loads as a platform


def test_the_fit_is_reproducible() -> None:
    assert _fit("php")["parameters"] == _profile("php")["parameters"]


def test_the_memory_fit_reproduces_the_reference_peer(fitted) -> None:
    # The fitted process and per-unit costs, through the model's own units,
    # give back the reference peer's measured memory: the fit minimises
    # relative error, so its median residual is small (robust to one run).
    name, profile = fitted
    residuals = profile["fits"]["memory_user"]["relative_residuals"]
    assert abs(float(np.median(residuals))) < 0.05, name


def test_php_fits_the_front_apart_from_the_back() -> None:
    p = _profile("php")["parameters"]
    # The probe keeps nginx's CPU apart: the front's CPU per request is
    # measured, and the hop's CPU (always per request here) is not separable.
    assert p["front_us"]["identified"] and p["front_us"]["value"] > 0
    assert not p["hop_us"]["identified"] and "hop per request" in p["hop_us"]["assumption"]
    # The hop's and the client path's times are only measured together.
    assert not p["hop_latency_us"]["identified"] and "rtt_us" in p["hop_latency_us"]["assumption"]
    assert "hop messages" in p["rtt_us"].get("method", "")


def test_go_threads_are_goroutines_not_os_threads() -> None:
    assert not RUNTIMES["go"].os_threads and RUNTIMES["jvm"].os_threads


def test_memory_fit_recovers_known_costs() -> None:
    # Synthetic two-tier runs: 14 MiB for the back's master and 0.9 KiB per
    # client connection on the front, the rest at the preset's values.
    base = PRESETS["php"]()
    truth = base.with_(process_kib=14_000.0, front_connection_kib=0.9)
    rows = []
    for n in (50, 200, 1000, 3000, 6000):
        for forks in (4, 12):
            units = Units(fork=forks, thread=forks + 3, front=2, front_conn=n, touched=forks)
            rows.append((units, units.footprint(truth).user_kib))
    fit = memory_fit(rows, base, ("process_kib", "front_connection_kib"), "user")
    assert fit is not None and all(fit.identified)
    assert fit.value("process_kib") == pytest.approx(14_000.0, rel=1e-3)
    assert fit.value("front_connection_kib") == pytest.approx(0.9, rel=1e-3)


def _served_fit(runs: list) -> fitting.Fit:
    """Go's user-memory fit on ``runs``, measured as a known platform gives
    them (a goroutine that has served holds 30 KiB more), each run off by a
    fixed few percent, as real runs are."""
    base = load_platform("go")
    truth = base.with_(process_kib=5_800.0, thread_served_kib=30.0)
    off = [1.03, 0.98, 1.01, 0.97, 1.02, 0.99, 1.0, 1.02]
    rows = []
    for k, run in enumerate(runs):
        w = run.workload
        units = calibrate_runtime._units(
            run, {"throughput_rps": w.rate, "latency_ms": {"mean": 5.0}}
        )
        rows.append((units, units.footprint(truth).user_kib * off[k % len(off)]))
    fit = memory_fit(rows, base, calibrate_runtime.SERVED_FITTED, "user")
    assert fit is not None
    return fit


def test_the_served_run_sets_what_serving_adds_apart_from_the_process() -> None:
    """Go's memory runs at 40/s serve about as many connections at 200 and
    at 3,000 held: what a served goroutine adds moves with the process's own
    memory there. One run serves most of 1,000 connections, and sets them
    apart: fitted on runs measured as a known platform gives them, both are
    identified and near the truth."""
    runs = runtime_grid("go")
    light = [r for r in runs if r.role == "memory" and r.workload.rate == 40.0]
    served = [r for r in runs if r.role == "memory" and r.workload.rate >= 400]
    assert len(light) == 2 and len(served) == 1
    assert all(calibrate.served_connections(r) < 150 for r in light)
    assert calibrate.served_connections(served[0]) > 0.7 * served[0].workload.connections
    fit = _served_fit(runs)
    assert all(fit.identified)
    assert fit.value("thread_served_kib") == pytest.approx(30.0, rel=0.35)
    assert fit.value("process_kib") == pytest.approx(5_800.0, rel=0.35)
    # Only the runtimes that fit such growth have it.
    for name, runtime in RUNTIMES.items():
        has = [
            r for r in runtime_grid(name) if r.role == "memory" and (r.workload.rate or 0) >= 400
        ]
        assert bool(has) == runtime.served_growth, name


@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_held_out_cases_are_not_in_the_grid_and_include_saturation_and_slow_clients(
    runtime: str,
) -> None:
    grid = {(r.target, r.workload, r.arch) for r in runtime_grid(runtime)}
    cases = runtime_cases(runtime)
    assert len(cases) >= 8
    assert not [c for c in cases if (c.target, c.workload, c.arch) in grid]
    assert sum(c.workload.slow_clients for c in cases) >= 2
    assert {c.target for c in cases} == set(RUNTIMES[runtime].peers)


@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_validation_cases_reach_saturation_on_the_committed_profile(runtime: str) -> None:
    # At least two cases per runtime are offered rho >= 0.9 on their busiest
    # resource (cores, a loop, a pool) by the model on the committed profile,
    # with the lab's own CPU as validation simulates it.
    from simlab.models import get_model  # noqa: PLC0415
    from simlab.provenance import ROOT  # noqa: PLC0415
    from simlab.real.peers import RESEMBLES  # noqa: PLC0415
    from simlab.streams import Deal  # noqa: PLC0415
    from simlab.validate import lab_platform  # noqa: PLC0415

    path = ROOT / "data" / "profiles" / f"{runtime}.json"
    platform = lab_platform(load_platform(str(path)), json.loads(path.read_text()))
    rhos = []
    for c in runtime_cases(runtime):
        cls = get_model(RESEMBLES[c.target])
        loads = cls.offered_load(c.workload, platform, c.arch, Deal.of_run(1, 1))
        rhos.append(max(v for k, v in loads.items() if k != "client"))
    assert sum(r >= 0.9 for r in rhos) >= 2, rhos
    assert max(rhos) <= 1.5, rhos


def _node_runs(event_us: float, wake_us: float, noise: float) -> list:
    """Node's grid "measured" from planted loop costs: each run's CPU per
    request is what the shared costs (the node profile's) make of it, less
    the parse, plus ``event_us`` and ``wake_us`` times the share of a wake-up
    the request pays (``calibrate.loop_share``), off by up to +-``noise``."""
    platform = load_platform("node")
    rng = np.random.default_rng(11)
    out = []
    for run in runtime_grid("node"):
        if run.role not in ("cpu", "batch"):
            continue
        w = run.workload
        busy = 1.0 if run.role == "batch" else 0.5
        for _ in range(50):  # an open loop's busy share and its cost per request agree
            share = calibrate.loop_share(run, busy)
            idle = 1.0 - min(busy, calibrate.MAX_BUSY_SEEN)
            row = calibrate.cpu_row("async", w.calls, busy, w.requests_per_connection)
            held = sum(row[k] * getattr(platform, k) for k in calibrate.CPU_COSTS)
            held += -platform.parse_us + platform.wake_us * (share - idle)
            us = (held + event_us + wake_us * share) * (1 + rng.uniform(-noise, noise))
            cost = w.cpu.mean + us * 1e-6
            busy = 1.0 if run.role == "batch" else min(w.rate * cost, 0.99)
        served = busy / cost
        out.append((run, {"cpu_busy_cores": busy, "throughput_rps": served}))
    return out


def test_node_closed_loops_set_the_loop_event_cost_apart() -> None:
    """Node's grid has closed loops of 1 to 64 clients (a loop that wakes
    finds them all ready), as cpython's loop servers do, Go's too (a closed
    loop keeps its scheduler awake), and no other runtime's has: with them,
    loop costs planted at 250 us an event and 600 us a wake-up come back
    identified, within their intervals, from runs off by up to 5%."""
    for name, runtime in RUNTIMES.items():
        for peer in runtime.peers:
            clients = sorted(
                r.workload.connections
                for r in runtime_grid(name)
                if r.role == "batch" and r.target == peer and r.workload.calls == 0
            )
            assert clients == ([1, 4, 16, 64] if runtime.loop or runtime.saturates else []), peer
            # And where a closed loop keeps the process awake, one of 64
            # clients with four backend calls a request: a call's own cost.
            calls = [
                (r.workload.connections, r.workload.calls)
                for r in runtime_grid(name)
                if r.role == "batch" and r.target == peer and r.workload.calls
            ]
            assert calls == ([(64, 4)] if runtime.saturates else []), peer
    runs = _node_runs(250.0, 600.0, noise=0.05)
    fitted = load_platform("node")
    params: dict = {}
    calibrate_runtime._batching(runs, fitted, params)
    for key, truth in (("loop_event_us", 250.0), ("loop_wake_us", 600.0)):
        entry = params[key]
        assert entry["identified"], (key, entry)
        assert entry["ci95"][0] <= truth <= entry["ci95"][1], (key, entry)


def test_node_closed_loops_set_a_request_apart_from_a_wake_up() -> None:
    """On real node runs, the CPU fit takes the closed loops as cpython's
    takes its loop servers' (``CPU_ROLES``): they keep the loop full, so a
    request's own cost (``parse_us``, about 40 us there) comes apart from
    the wake-up a light run's request pays (``wake_us``, about 200 us), and
    both are identified. With the open runs alone (three light, one about
    80% busy) the two are nearly collinear, and one of them is not."""
    recorded = _recorded("node")
    base = PRESETS["node"]()
    quick = functools.partial(fitting.fit_robust, boots=100)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(calibrate_runtime, "fit_robust", quick)
        both, _ = calibrate_runtime._fit_cpu(RUNTIMES["node"], recorded, base)
        open_only = [(run, s) for run, s in recorded if run.role != "batch"]
        alone, dropped = calibrate_runtime._fit_cpu(RUNTIMES["node"], open_only, base)
    for key in ("parse_us", "wake_us"):
        assert both.is_identified(key), key
    assert both.value("parse_us") == pytest.approx(40.0, rel=0.6)
    assert both.value("wake_us") > 3 * both.value("parse_us")
    assert {"parse_us", "wake_us"} & set(dropped) or not all(
        alone.is_identified(k) for k in ("parse_us", "wake_us")
    )


def _closed_loops(platform, seed: int) -> list:
    """The JVM grid's closed loops of more clients than cores, each peer
    "measured" by simulating the model it resembles on ``platform`` (1.2 s
    instead of 5.5: the fit's cost, not its sense), its numbers as a real
    run's summary has them."""
    out = []
    for r, run in enumerate(runtime_grid("jvm")):
        if run.role not in ("batch", "threads") or run.workload.connections <= CORES:
            continue
        short = replace(run, duration=1.0, warmup=0.2)
        s = simulate(
            RESEMBLES[run.target], run.workload, platform, run.arch,
            duration=short.duration, warmup=short.warmup, replications=2, seed=seed + r,
        ).summary  # fmt: skip
        out.append(
            (short, {"cpu_busy_cores": s.cpu_busy_cores, "throughput_rps": s.throughput_rps})
        )
    return out


# Small grids for the planted fits (the calibration's own are 8 by 8): each
# truth inside its axis, so that an identified value is not an end.
PLANTED_GRIDS = {"switch_contention": (0.0, 0.2, 0.35), "crowding": (0.0, 2e-4, 4e-4)}


@pytest.mark.parametrize(("contention", "crowding"), [(0.2, 0.0), (0.0, 2e-4)])
def test_the_closed_loops_of_many_clients_tell_a_contention_from_crowding(
    contention: float, crowding: float
) -> None:
    """The JVM's and Go's grids hold closed loops of 256 and 1,024 clients
    beside their loops of 4 to 64 at a 1 ms burn (``CONTENTION_CLIENTS``),
    and open loops beyond the cores on 100 and 1,000 connections at a 4 ms
    burn, twice each (``CROWDING_CLIENTS``). A
    switch's contention planted at 0.2 comes back identified, its interval
    around it, and crowding planted at 0 is not identified; the other way
    round, crowding planted at 2e-4 (a phase 2% slower a hundred threads
    queued) is identified and contention is not: the growth with the
    clients scales with the burn for one and not the other. A level the
    same at every client count is not taken for either."""
    for name in ("jvm", "go"):
        threads = [
            (r.workload.connections, r.workload.cpu.mean)
            for r in runtime_grid(name)
            if r.role == "threads"
        ]
        loops = [(256, 0.001), (1024, 0.001), (100, 0.004), (100, 0.004), (1000, 0.004)]
        assert threads == [*loops, (1000, 0.004)] * len(RUNTIMES[name].peers), name
    base = load_platform("jvm").with_(switch_contention=0.0, crowding=0.0)
    truth = {"switch_contention": contention, "crowding": crowding}
    runs = _closed_loops(base.with_(**truth), seed=500)
    fit = calibrate_runtime.fit_contention(runs, base, grids=PLANTED_GRIDS)
    assert fit is not None
    for key, value in truth.items():
        got = fit[key]
        assert got.ci95 is not None and got.ci95[0] <= value <= got.ci95[1], (key, got)
        assert got.identified == (value > 0), (key, got)
    # No run of many clients, no fit.
    few = [(run, s) for run, s in runs if run.role != "threads"]
    assert calibrate_runtime.fit_contention(few, base, grids=PLANTED_GRIDS) is None
    # Every run of one peer dearer by the same 150 us: the same fit.
    if crowding == 0:
        return
    dearer = [
        (run, {**s, "cpu_busy_cores": s["cpu_busy_cores"] + 150e-6 * s["throughput_rps"]})
        if run.target == "java-threads" else (run, s)
        for run, s in runs
    ]  # fmt: skip
    again = calibrate_runtime.fit_contention(dearer, base, grids=PLANTED_GRIDS)
    assert again is not None
    assert {k: f.value for k, f in again.items()} == {k: f.value for k, f in fit.items()}


def test_a_thread_per_connection_loop_is_simulated_as_its_server_held_it() -> None:
    """java-threads' loop of 1,024 clients held 386 threads on average, 20
    of them the JVM's own (its loops of 4 to 64 clients held 20 more than
    their clients): it is simulated as a loop of 366. A pool's loop, a run
    that held all its clients, and a runtime whose threads are not the OS's
    (Go's goroutines) are simulated as they ran."""
    loops = {
        (r.target, r.workload.connections): r
        for r in runtime_grid("jvm")
        if r.role in ("batch", "threads") and r.workload.calls == 0 and r.workload.cpu.mean == 0.001
    }
    held = {
        ("java-threads", 4): 23.8, ("java-threads", 16): 36.0, ("java-threads", 64): 84.0,
        ("java-threads", 1024): 386.0, ("tomcat-nio", 64): 40.0, ("tomcat-nio", 1024): 40.0,
    }  # fmt: skip
    results = [(loops[k], {"threads": {"mean": mean}}) for k, mean in held.items()]
    own = calibrate_runtime._own_threads(results)
    assert own == {"java-threads": pytest.approx(20.0)}
    by = {(run.target, run.workload.connections): (run, s) for run, s in results}
    run, s = by["java-threads", 1024]
    assert calibrate_runtime._held(run, s, own["java-threads"]).workload.connections == 366
    run, s = by["java-threads", 64]
    assert calibrate_runtime._held(run, s, own["java-threads"]) is run
    run, s = by["tomcat-nio", 1024]
    assert calibrate_runtime._held(run, s, own.get("tomcat-nio")) is run
