"""``simlab calibrate --runtime jvm|go|node|php``: a runtime's profile from its own real peers.

The cpython profile is fitted from simlab's own servers; the other runtimes
are fitted from their peers (``simlab.real.grids.RUNTIMES``): Tomcat NIO and
a thread per connection on the JVM, Go's ``net/http``, Node's ``http``, and
nginx in front of PHP-FPM. Each peer is charged what the model it resembles
charges (its ``request_cost`` and ``units``), with the runtime's structure:

- no GIL for Java and Go, and Go's goroutines scheduled M:N over GOMAXPROCS
  = the machine's cores (the ``cores`` of the profile);
- one loop for Node (``async``: every request's CPU on the loop);
- nginx's front and hop for PHP (``two-tier``): the front's CPU is read
  apart from the back's (the probe keeps the nginx processes' CPU on its
  own), the hop's wall-clock time from what the front adds to the latency.

The same fits as cpython's (``simlab.calibrate``, ``simlab.fitting``): CPU
per request beyond the burn against the costs a request pays, robustly with
bootstrap intervals; the wall-clock overheads and their spread; memory,
user and kernel, against the units the model says the server held. Costs the
runs cannot separate (a wake-up is paid exactly as often as a parse and a
call on these servers; nginx's hop is always per request) keep the preset's
value, labelled an assumption; numbers measured by ``simlab measure memory
--runtime`` keep their record as their source.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from simlab.calibrate import (
    ACCEPT_COSTS,
    BATCHING_METHOD,
    CONTENTION_GRID,
    CPU_COSTS,
    CPU_ROLES,
    GridFit,
    _contention_y,
    _from_record,
    _grid_fit,
    _grid_predictions,
    _lab,
    _light,
    _own_neighbours,
    _per_request_cpu,
    _run_record,
    _strata,
    cpu_row,
    fit_batching,
    fit_spread,
    fit_wall,
    measure_runs,
    served_connections,
)
from simlab.errors import UserError
from simlab.fitting import Fit, fit_robust, median_with_ci
from simlab.journal import Journal
from simlab.models import get_model
from simlab.params import Platform
from simlab.platforms import PRESETS, SOURCES, profile_path
from simlab.provenance import atomic_write_json, git_revision, json_safe, machine, utc_stamp
from simlab.real.grids import CORES, LOOP_SERVERS, RUNTIMES, Run, Runtime, runtime_grid
from simlab.real.peers import RESEMBLES
from simlab.real.speed import session_speed

__all__ = ["calibrate_runtime", "fit_contention", "memory_fit", "runtime_profile"]

Results = list[tuple[Run, dict[str, Any]]]
ROBUST = "soft-L1 least squares over the runs, 95% bootstrap interval"
RELATIVE = "soft-L1 least squares on relative error over the runs, 95% bootstrap interval"
# A wake-up (``context_switch_us``) is paid once per request and once per
# call on these servers, as a parse and a call are: no run separates it.
INSEPARABLE = {
    "context_switch_us": "paid once per request and per backend call, exactly as parse_us "
    "and call_us are: these runs cannot separate it from them",
}
# Memory each runtime's runs fit (the rest: measured records or assumptions).
# The per-unit costs (a thread, a goroutine, a connection, a PHP-FPM child)
# are the micro-benchmarks' (``simlab measure memory --runtime``): they
# measure one unit at two sizes, idle, which these loaded runs cannot do as
# cleanly (a JVM's heap grows with the requests served, not the units). The
# runs fit what the records do not hold: the server process under load, and
# nginx's memory per client connection.
USER_FITTED = ("process_kib",)
# Where a thread (a goroutine) per connection that has served holds more
# than the idle record's (``Runtime.served_growth``): the loaded runs, which
# serve some connections and not others, fit that growth too
# (``Platform.thread_served_kib``).
SERVED_FITTED = ("process_kib", "thread_served_kib")
KERNEL_FITTED = ("process_kernel_kib",)
TWO_TIER_USER = ("process_kib", "front_connection_kib")
TWO_TIER_KERNEL = ("process_kernel_kib", "connection_kernel_kib")
# Every nginx peer run opens a hop per request (connect, request, answer):
# three hop messages per request, on the front's CPU and on the clock.
HOP_MESSAGES = 3
US_PER_S = 1e6


def calibrate_runtime(
    runtime: str,
    *,
    name: str | None = None,
    refit: bool = False,
    out_dir: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run ``runtime``'s grid (or, with ``refit``, reuse the runs kept in its
    profile), fit, and write ``out_dir/NAME.json`` (NAME: the runtime's by
    default; out_dir: the data root's profiles); returns the profile."""
    if runtime not in RUNTIMES:
        raise UserError(f"runtime(={runtime!r}) must be one of: cpython, {', '.join(RUNTIMES)}")
    name = name or runtime
    tick = progress or (lambda _label, _k, _n: None)
    path = (out_dir or profile_path(name).parent) / f"{name}.json"
    journal: Journal | None = None
    if refit:
        try:
            results = [_from_record(r) for r in json.loads(path.read_text())["runs"]]
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise UserError(f"--refit: cannot reuse the runs in {str(path)!r}: {exc}") from None
    else:
        runs = runtime_grid(runtime)
        # An interrupted calibration resumes at its first unmeasured run.
        journal = Journal(
            f"calibrate-{name}", {"runtime": runtime, "runs": [r.label() for r in runs]}
        )
        results = measure_runs(runs, journal, tick, len(runs) + 1)
    tick("fitting", 1, 1)
    profile = runtime_profile(runtime, results, profile=name)
    atomic_write_json(path, profile)
    if journal is not None:
        journal.done()
    return profile


def runtime_profile(name: str, results: Results, *, profile: str | None = None) -> dict[str, Any]:
    """The profile of runtime ``name`` fitted from its peers' runs (no I/O)."""
    runtime = RUNTIMES[name]
    base = PRESETS[name]()
    params: dict[str, Any] = _sourced(name, base)
    cpu, dropped = _fit_cpu(runtime, results, base)
    for key in cpu.names:
        params[key] = cpu.parameter(key, preset=getattr(base, key), method=ROBUST)
    for key in dropped:
        params[key] = _assumed(
            base, key, "these runs cannot separate it from the other costs (left out of the "
            "CPU fit, which holds it at the preset's value; the fitted costs' intervals are "
            "given that value)",
        )  # fmt: skip
    for key, why in INSEPARABLE.items():
        params[key] = _assumed(base, key, why)
    costs = {k: _value(params, base, k) for k in (*CPU_COSTS, *ACCEPT_COSTS)}
    service, rtt, rtt_ci = fit_wall(results, costs, gil=base.gil)
    params["call_latency_us"] = service.parameter(
        "call_latency_us", preset=base.call_latency_us, method=ROBUST
    )
    spread = fit_spread(results, costs, gil=base.gil)
    params["call_latency_cv"] = _spread(spread["call_latency_cv"])
    fits: dict[str, Any] = {
        "cpu": {"rows": cpu.rows, "residuals_us": cpu.residuals},
        "wall": {"rows": service.rows, "residuals_us": service.residuals},
    }
    if runtime.two_tier:
        fits.update(_front(params, results, base, costs, spread))
    else:
        params["rtt_us"] = _median_parameter(
            base, "rtt_us", rtt, rtt_ci or None,
            "median over light runs of latency - service - CPU overheads (95% bootstrap interval)",
        )  # fmt: skip
        params["rtt_cv"] = _spread(spread["rtt_cv"])
    fitted = _platform(base, params)
    fits.update(_batching(results, fitted, params))
    fitted = _platform(base, params)
    contention = fit_contention(results, fitted, os_threads=runtime.os_threads)
    for key in ("switch_contention", "crowding"):
        if contention is None:
            why = "no run of this runtime's grid varies the runnable threads"
            params[key] = _assumed(base, key, why)
        else:
            params[key] = contention[key].parameter(key, preset=base, method=CONTENTION_METHOD)
    fitted = _platform(base, params)
    memory = _memory(runtime, results, fitted, params)
    params["cores"] = os.cpu_count() or 1
    params["gil"] = False
    out = {
        "name": profile or name,
        "base": name,
        "runtime": {
            "peers": list(runtime.peers),
            "reference": runtime.reference,
            "os_threads": runtime.os_threads,
            "structure": _structure_note(runtime),
        },
        "created": utc_stamp(),
        "git_revision": git_revision(),
        "machine": machine(),
        "quick": False,
        "parameters": params,
        "lab": _lab(results),
        "fits": {**fits, **memory},
        "peers": _peer_offsets(runtime, results, _platform(base, params)),
        # The median of the runs' machine speeds: what a later session compares with.
        "speed_reference": session_speed([s["kept"].get("speed_reference") for _, s in results]),
        "runs": [_run_record(run, s) for run, s in results],
    }
    cleaned: dict[str, Any] = json_safe(out)
    return cleaned


def _batching(results: Results, platform: Platform, params: dict[str, Any]) -> dict[str, Any]:
    """An event loop's own costs (``loop_event_us``, ``loop_wake_us``) from the
    runs of peers that are one loop (Node's): as cpython's loops are fitted
    (``simlab.calibrate.fit_batching``), with each peer charged as the model it
    resembles. A busy loop serves several requests per wake-up, so its cost per
    request falls with the load; the light and the busier grid runs separate
    the two. Nothing when no peer is a loop."""
    loops = [
        (replace(run, target=RESEMBLES[run.target]), s)
        for run, s in results
        if RESEMBLES.get(run.target) in LOOP_SERVERS
    ]
    fit = fit_batching(loops, platform) if loops else None
    if fit is None:
        return {}
    for key in fit.names:
        params[key] = fit.parameter(key, preset=getattr(platform, key), method=BATCHING_METHOD)
    return {"batching": {"rows": fit.rows, "residuals_us": fit.residuals}}


# The closed loops the contention is fitted to.
CONTENTION_RUNTIME_ROLES = ("batch", "threads")
# The two costs' grids for a runtime, tried together (every point a DES of
# each loop): the switch's contention to 0.5 (the JVM's and Go's fitted at
# 0.02 to 0.05 alone, 6 December), and how much slower a phase runs for each
# thread queued beside it. 1e-4 makes a phase 10% slower beside 1,000.
RUNTIME_CONTENTION_GRID = tuple(c for c in CONTENTION_GRID if c <= 0.5)
CROWDING_GRID = (0.0, 2.5e-5, 5e-5, 1e-4, 1.5e-4, 2e-4, 3e-4, 5e-4)
CONTENTION_METHOD = (
    "simulated CPU a request beyond the burn matched to closed loops with no think time, "
    "each peer's at more clients than cores (4 to 1,024: as many threads runnable on a thread "
    "per connection; OS threads simulated as their server held them) at a 1 ms burn, and "
    "open loops beyond the cores on 100 and 1,000 connections at a 4 ms burn (twice each), "
    "with a level a peer and a burn, so that only the growth with the clients counts; "
    "switch_contention and crowding on one grid (a switch's cost does not grow with the "
    "burn, a slowed phase's does), each run's own load "
    "generator's CPU beside it, the other costs held at their fitted values and "
    "context_switch_us at its value (the runs show their product); 95% bootstrap interval "
    "over each peer's few and many clients' runs"
)


def fit_contention(
    results: Results,
    platform: Platform,
    *,
    os_threads: bool = True,
    grids: dict[str, tuple[float, ...]] | None = None,
) -> dict[str, GridFit] | None:
    """What a thread switch costs more for each runnable thread queued
    (``Platform.switch_contention``) and how much slower a phase runs for
    each (``Platform.crowding``), from the runs of ``runtime_grid`` with
    more clients than cores and no backend call: each peer's closed loops
    with no think time, few (role "batch": 4 to 64 clients) and many (role
    "threads": 256 and 1,024) at a 1 ms burn, and its open loops beyond the
    cores on 100 and 1,000 connections at 4 ms (role "threads"), each peer
    as the model it resembles. Each run is simulated on ``grids`` (default
    ``RUNTIME_CONTENTION_GRID`` by ``CROWDING_GRID``) at ``platform`` (every other
    cost fitted already), its own load generator's CPU beside it, and its
    CPU a request beyond the burn set against the measured one, least
    squares, each peer's runs at each burn with a level of their own
    (``simlab.calibrate._grid_fit``'s ``levels``): only the growth from few
    clients to many tells a cost, and how that growth scales with the burn
    tells the two apart (a switch's does not, a slowed phase's does). On a
    thread per connection every client's thread is runnable, on a pool at
    most the pool's. A level the CPU fit leaves off (the same at 4 clients
    as at 1,024) is not a contention, and a fit to levels would take it for
    one. Each is identified only where the bootstrap's interval reaches
    neither end of its grid; None when no run has many clients. A loop of
    fewer clients than cores leaves a core idle between requests
    (wake-ups): not a level of the others'. Where the runtime's threads are
    the OS's (``os_threads``), a thread per connection's loop is simulated
    as its server held it (``_held``)."""
    own = _own_threads(results) if os_threads else {}
    runs = [
        (
            replace(
                _held(run, s, own.get(run.target)), target=RESEMBLES.get(run.target, run.target)
            ),
            s,
        )
        for run, s in results
        if run.role in CONTENTION_RUNTIME_ROLES
        and run.workload.connections > CORES
        and run.workload.calls == 0
    ]
    if not any(run.role == "threads" for run, _ in runs):
        return None
    grid = grids if grids is not None else {
        "switch_contention": RUNTIME_CONTENTION_GRID, "crowding": CROWDING_GRID
    }  # fmt: skip
    measured = [_contention_y(s.get("cpu_busy_cores"), s.get("throughput_rps"), run)
                for run, s in runs]  # fmt: skip
    if any(m is None for m in measured):
        why = "a closed loop served nothing"
        return {k: GridFit(getattr(platform, k), None, False, why) for k in grid}
    neighbours = [_own_neighbours(s, platform) for _, s in runs]
    # A level a peer and a burn: a cost a request that differs between the
    # burns at few clients (java-threads' 4 ms loops cost more beyond their
    # burn than its 1 ms ones at 64 clients) is not a growth with clients.
    groups = [(run.target, run.workload.cpu.mean) for run, _ in runs]
    return _grid_fit(
        _grid_predictions(runs, platform, grid, neighbours),
        np.asarray(measured, dtype=float),
        _strata([(run.target, run.role) for run, _ in runs]),
        grid,
        levels=np.array([sorted(set(groups)).index(g) for g in groups]),
        at_zero="the closed loops' CPU a request does not grow with the clients beyond what "
        "the model's other costs make it",
        at_top="the closed loops do not bound it",
    )


def _own_threads(results: Results) -> dict[str, float]:
    """Each thread-per-connection peer's threads beyond its clients in its
    closed loops of few (role "batch", no call): the runtime's own (a JVM's
    JIT compilers, collectors, its acceptor), the median over the loops."""
    extra: dict[str, list[float]] = {}
    for run, s in results:
        mean = (s.get("threads") or {}).get("mean")
        if (
            run.role == "batch"
            and run.workload.calls == 0
            and mean is not None
            and _holds_connection(run.target)
        ):
            extra.setdefault(run.target, []).append(float(mean) - run.workload.connections)
    return {peer: float(np.median(v)) for peer, v in extra.items()}


def _holds_connection(peer: str) -> bool:
    """Whether ``peer``'s model gives each connection its own thread."""
    model = RESEMBLES.get(peer)
    return model is not None and get_model(model).holds_connection


def _held(run: Run, s: dict[str, Any], own: float | None) -> Run:
    """A thread per connection's closed loop as its server held it: the
    clients whose thread it had started (its mean threads less ``own``, the
    runtime's own), where that is fewer than the loop's clients and more
    than the cores. Its acceptor is one thread among hundreds runnable: on
    6 December java-threads' loop of 1,024 clients held 386 threads on
    average (465 at most), its loop of 256 held 229, the rest of their
    clients waiting in the listen queue and costing the server nothing
    (``simlab.calibrate.as_held`` does the same for cpython's saturated
    runs). Other runs are as they were."""
    mean = (s.get("threads") or {}).get("mean")
    if own is None or mean is None or not math.isfinite(float(mean)):
        return run
    n = round(float(mean) - own)
    if not CORES < n < run.workload.connections:
        return run
    return replace(run, workload=run.workload.with_(connections=n))


def _structure_note(runtime: Runtime) -> str:
    return {
        "jvm": "no GIL; a platform thread per connection (java-threads) or a pool behind "
        "NIO (tomcat-nio); every run is a fresh JVM measured over its first seconds, so "
        "its CPU costs hold what JIT compilation costs in that time",
        "go": "no GIL; goroutines M:N over GOMAXPROCS = cores OS threads",
        "node": "one event loop per process (async)",
        "php": "nginx front (one loop per core) and a hop per request to PHP-FPM children "
        "of one thread (two-tier)",
    }[runtime.name]


# ------------------------------------------------------------------ sources


def _sourced(name: str, base: Platform) -> dict[str, Any]:
    """The preset's numbers as the profile records them: measured ones with
    their record, estimates as assumptions (replaced below where fitted)."""
    out: dict[str, Any] = {}
    for key, source in SOURCES.get(name, {}).items():
        value = getattr(base, key)
        if not _is_measured(source):
            # No run of the grid measures it: the preset's number stays.
            why = source.replace("; calibration replaces it", "")
            out[key] = {"value": value, "identified": False, "assumption": f"not identified: {why}"}
        else:
            out[key] = {"value": value, "identified": True, "method": f"measured: {source}"}
    return out


def _is_measured(source: str) -> bool:
    return not ("estimate" in source or "preset's value" in source)


def _assumed(base: Platform, key: str, why: str) -> dict[str, Any]:
    return {
        "value": getattr(base, key),
        "identified": False,
        "assumption": f"not identified: {why}; the preset's value",
    }


def _spread(cv: float) -> dict[str, Any]:
    return {
        "value": cv,
        "identified": cv > 0,
        "method": "lognormal fitted to p50 and p99; the median over runs",
    }


def _value(params: dict[str, Any], base: Platform, key: str) -> float:
    p = params.get(key)
    return float(p["value"]) if isinstance(p, dict) else float(getattr(base, key))


def _platform(base: Platform, params: dict[str, Any]) -> Platform:
    numeric = set(Platform.numeric_fields())
    return base.with_(**{k: v["value"] for k, v in params.items() if k in numeric})


# ---------------------------------------------------------------------- CPU


def _back_cpu(run: Run, s: dict[str, Any]) -> float | None:
    """CPU microseconds per request beyond the burn, a front's own taken off."""
    y = _per_request_cpu(s, run)
    front = s["kept"].get("front_cpu_cores")
    if y is None or not front:
        return y
    return float(y - front / s["throughput_rps"] * US_PER_S)


def _fit_cpu(runtime: Runtime, results: Results, base: Platform) -> tuple[Fit, tuple[str, ...]]:
    """Per-request CPU (the back's, for two-tier) against the costs the
    resembled model charges: the costs some run pays are fitted, except
    those measured by micro-benchmark or inseparable, which are held at
    their value and taken off. Returns the fit and the costs it had to hold
    at the preset's value to identify the rest.

    The runs are cpython's CPU runs' roles (``CPU_ROLES``): a loop's closed
    loops too, priced as the open runs are (a wake-up at 1 - busy). They
    keep the loop full, so they set what a request costs with no wake-up
    (``parse_us``); without them Node's four open runs, three light and one
    about 80% busy, left a per-request cost and a wake-up nearly
    collinear, and two fresh calibrations of one morning held one or the
    other at the preset's value."""
    measured = {k for k, v in SOURCES.get(runtime.name, {}).items() if _is_measured(v)}
    rows: list[dict[str, float]] = []
    ys: list[float] = []
    for run, s in results:
        y = _back_cpu(run, s)
        if run.role not in CPU_ROLES or y is None:
            continue
        busy = float(s["cpu_busy_cores"] or 0.0)
        rows.append(cpu_row(run.target, run.workload.calls, busy, gil=base.gil))
        ys.append(y)
    if not rows:
        raise UserError(f"calibrate: no usable CPU run of {runtime.name}")
    names = (*CPU_COSTS, *ACCEPT_COSTS)
    paid = [k for k in names if any(r[k] for r in rows)]
    free = tuple(k for k in paid if k not in measured and k not in INSEPARABLE)
    held = [k for k in paid if k not in free]
    dropped: list[str] = []
    while True:
        held = [k for k in paid if k not in free]
        target = np.array(
            [
                yi - sum(r[k] * getattr(base, k) for k in held)
                for r, yi in zip(rows, ys, strict=True)
            ]
        )
        fit = fit_robust(np.array([[r[k] for k in free] for r in rows]), target, free)
        if all(fit.identified) or len(free) == 1:
            break
        # Backward elimination: the runs cannot separate every cost, so the
        # least determined one (the widest interval for its estimate) is held
        # at the preset's value, labelled, and the rest fitted again.
        worst = max(
            (k for k in free if not fit.is_identified(k)),
            key=lambda k: _spread_of(fit, k),
        )
        dropped.append(worst)
        free = tuple(k for k in free if k != worst)
    return fit, tuple(dropped)


def _spread_of(fit: Fit, name: str) -> float:
    lo, hi = fit.ci95[fit.names.index(name)]
    return (hi - lo) / max(abs(fit.value(name)), 1e-9)


# -------------------------------------------------------------------- front


def _front(
    params: dict[str, Any],
    results: Results,
    base: Platform,
    costs: dict[str, float],
    spread: dict[str, float],
) -> dict[str, Any]:
    """nginx's CPU per request (the front's processes, from the probe), and the
    client path: what is left of latency - service at light load once the
    front's CPU, the back's CPU overheads and the hop messages are taken off.
    The hop's and the client path's wall-clock times are paid together in
    every run, so only one of them can be fitted: the hop keeps the preset's
    time, labelled, and the client path takes the rest."""
    per_request, paths = [], []
    for run, s in results:
        front = s["kept"].get("front_cpu_cores")
        if run.role != "cpu" or not front or not s["throughput_rps"]:
            continue
        front_us = front / s["throughput_rps"] * US_PER_S
        per_request.append(front_us - HOP_MESSAGES * base.hop_us)
        if _light(run, s) and s["queue_delay_ms"]["p50"] is not None:
            gap_us = s["queue_delay_ms"]["p50"] * 1e3
            row = cpu_row(run.target, run.workload.calls, gil=base.gil)
            back = sum(row[k] * costs[k] for k in CPU_COSTS)
            paths.append(gap_us - front_us - back - HOP_MESSAGES * base.hop_latency_us)
    value, ci = median_with_ci(per_request)
    params["front_us"] = _median_parameter(
        base, "front_us", value, ci,
        f"median over the runs of the nginx processes' CPU per request, less {HOP_MESSAGES} "
        "hop messages at hop_us (95% bootstrap interval)",
    )  # fmt: skip
    params["hop_us"] = _assumed(
        base, "hop_us", f"every nginx run opens a hop per request ({HOP_MESSAGES} messages), so "
        "the front's CPU per request is front_us + 3 hop_us: only their sum is measured",
    )  # fmt: skip
    params["front_byte_ns"] = _assumed(
        base, "front_byte_ns", "every run sends and answers the same few bytes"
    )
    params["front_process_kib"] = _assumed(
        base, "front_process_kib", "nginx runs one worker per core in every run: its workers' "
        "memory is not separable from the pool's own (process_kib)",
    )  # fmt: skip
    params["hop_latency_us"] = _assumed(
        base, "hop_latency_us", "the hop's wall-clock time and the client path's (rtt_us) are "
        "paid together in every run: only their sum is measured",
    )  # fmt: skip
    value, ci = median_with_ci(paths)
    params["rtt_us"] = _median_parameter(
        base, "rtt_us", max(0.0, value), ci,
        f"median over light runs of latency - service - front CPU - back CPU overheads - "
        f"{HOP_MESSAGES} hop messages at hop_latency_us (95% bootstrap interval)",
    )  # fmt: skip
    params["rtt_cv"] = _spread(spread["rtt_cv"])
    return {"front": {"per_request_us": per_request, "client_path_us": paths}}


def _median_parameter(
    base: Platform, key: str, value: float, ci: list[float] | None, method: str
) -> dict[str, Any]:
    if ci is not None and ci[0] > 0 and math.isfinite(value):
        return {"value": value, "ci95": ci, "identified": True, "method": method}
    why = "too few runs" if ci is None else f"its interval [{ci[0]:.3g}, {ci[1]:.3g}] spans zero"
    out = _assumed(base, key, why)
    out["estimate"] = value
    return out


# ------------------------------------------------------------------- memory


def _units(run: Run, s: dict[str, Any]) -> Any:
    """What the run's server held, as its model counts it, with the threads
    that had served by the run's end where each connection has its own: the
    expected distinct connections that sent a request (a short run at a low
    rate leaves most of them idle), not the steady state's every one."""
    cls = get_model(RESEMBLES.get(run.target, run.target))
    in_flight = round((s["throughput_rps"] or 0.0) * (s["latency_ms"]["mean"] or 0.0) / 1e3)
    units = cls.units(run.workload, run.arch, in_flight)
    if cls.holds_connection and run.workload.persistent:
        units = replace(units, served=min(float(units.served), served_connections(run)))
    return units


def _user_fitted(runtime: Runtime) -> tuple[str, ...]:
    if runtime.two_tier:
        return TWO_TIER_USER
    if runtime.served_growth:
        return SERVED_FITTED
    return USER_FITTED


def memory_fit(
    rows: list[tuple[Any, float]], base: Platform, free: tuple[str, ...], kind: str
) -> Fit | None:
    """Measured memory (KiB) against the units held: ``rows`` of (units,
    measured). Each free parameter's column is what one KiB of it adds to the
    footprint (the footprint is linear in them); the rest of the footprint,
    at the platform's values, is taken off. Relative error is minimised: a
    large run must not drown a small one."""
    if len(rows) < len(free) + 2:
        return None

    def part(units: Any, p: Platform) -> float:
        f = units.footprint(p)
        return float(f.user_kib if kind == "user" else f.kernel_kib)

    x, y = [], []
    for units, measured in rows:
        at = part(units, base)
        col = [part(units, base.with_(**{k: getattr(base, k) + 1.0})) - at for k in free]
        rest = at - sum(c * getattr(base, k) for c, k in zip(col, free, strict=True))
        x.append([c / measured for c in col])
        y.append((measured - rest) / measured)
    return fit_robust(np.array(x), np.array(y), free)


def _memory(
    runtime: Runtime, results: Results, base: Platform, params: dict[str, Any]
) -> dict[str, Any]:
    """User and kernel memory per unit from the reference peer's runs, but
    its closed loops: with no think time they serve ten times the others'
    rate on a few connections, and a collected heap holds garbage by the
    rate, not by the units. With them in, Go's fit on 6 December put
    what a served goroutine holds at 0 (not identified; 22 KiB without
    them), and its held-out user memory came out 41% low at the median."""
    user = _user_fitted(runtime)
    kernel = TWO_TIER_KERNEL if runtime.two_tier else KERNEL_FITTED
    out: dict[str, Any] = {}
    for kind, free, key in (("user", user, "pss_peak_mib"), ("kernel", kernel, "kernel_peak_mib")):
        rows = [
            (_units(run, s), s["kept"][key] * 1024)
            for run, s in results
            if run.target == runtime.reference
            and run.role not in ("batch", "threads")
            and s["kept"].get(key)
        ]
        fit = memory_fit(rows, base, free, kind)
        if fit is None:
            continue
        for name in free:
            params[name] = fit.parameter(name, preset=getattr(base, name), method=RELATIVE)
        out[f"memory_{kind}"] = {"rows": fit.rows, "relative_residuals": fit.residuals}
    return out


def _peer_offsets(runtime: Runtime, results: Results, platform: Platform) -> dict[str, Any]:
    """What each peer holds beyond its model on the fitted profile: threads
    (the runtime's own: JIT, GC, pollers) and, for a peer other than the
    reference, memory (Tomcat's own classes beyond a plain JVM server)."""
    out: dict[str, Any] = {}
    for peer in runtime.peers:
        threads, user, kernel = [], [], []
        for run, s in results:
            if run.target != peer or s["threads"]["peak"] is None:
                continue
            units = _units(run, s)
            f = units.footprint(platform)
            threads.append(s["threads"]["peak"] - units.thread)
            if s["kept"].get("pss_peak_mib") is not None:
                user.append(s["kept"]["pss_peak_mib"] - f.user_mib)
            if s["kept"].get("kernel_peak_mib") is not None:
                kernel.append(s["kept"]["kernel_peak_mib"] - f.kernel_mib)
        entry: dict[str, Any] = {"runs": len(threads)}
        if runtime.os_threads:
            value, ci = median_with_ci(threads)
            entry["threads_offset"] = {"value": round(value), "ci95": ci}
        else:
            entry["threads_offset"] = None
            entry["threads_note"] = (
                "the model's threads are goroutines; the probe counts the runtime's OS threads"
            )
        if peer != runtime.reference:
            for key, values in (("user_offset_mib", user), ("kernel_offset_mib", kernel)):
                value, ci = median_with_ci(values)
                entry[key] = {"value": value, "ci95": ci}
        out[peer] = entry
    return out
