"""``simlab calibrate``: fit the platform's parameters to real runs on this machine.

It runs ``measure memory`` and the calibration grid (``simlab.real.grids``),
then fits, each robustly (soft-L1) with bootstrap intervals, and labels every
parameter the runs do not identify as an assumption (``simlab.fitting``):

- **CPU per request** beyond the requested burn, from the probe's CPU time
  divided by the requests served. Each server pays a known mix of costs, its
  model's ``request_cost`` (``cpu_row``): a loop's parse, task and calls; a
  reactor's parse and dispatch; a thread's parse, calls and wake-ups; a
  phase that finds its process idle pays ``wake_us``, with probability about
  1 - busy. Light runs, heavy runs and closed loops of 1 to 64 clients (a
  loop that wakes with many ready requests shares its wake-up: batching)
  separate the per-request costs from the per-wake-up one; runs with a
  thread or process made per connection fit their creation cost under load.
- **The GIL's hand-off** (``gil_handoff_us``: how long the GIL idles while
  the waiter it goes to wakes), **its waiters' wake-ups** (``gil_poll_us``)
  and **switch contention** (``fit_thread_costs``), from the same load on 8
  to 2,048 threads (does the CPU a request costs grow with the threads?) and
  from thread-per-connection saturated on 8 to 300 threads (does a request
  cost the GIL more when more threads wait for it?), and on 300 at 5 and at
  50 ms switch intervals (the waiters wake a tenth as often at 50; a switch
  costs the same; a hand-off costs the same whatever the threads: the
  wake-ups are fitted to this pair's contrast alone, which the machine's
  speed leaves), and from an open loop at about the GIL's capacity at both
  intervals (``convoy``: all 250 connections' threads can wait there). Where an
  interval spans zero, that cost is not identified here, and the profile
  says so. What each waiter's wake-up takes of a core (``gil_wake_us``) is
  measured directly first (``simlab.real.gil_wake``: an interpreter spinning
  2 and then 201 threads, CPU over wake-ups), and the three above are
  fitted with it in place.
- **The close wait** (``close_wait_us``): how long a blocking server's thread
  waits after a short connection's answer to read the client's close, from
  the real iterative server's own record of it (``simlab.real.close_wait``),
  measured first like the GIL's wake-ups.
- **Wall-clock overheads**: latency added per backend call
  (``call_latency_us``) and the client and loopback path (``rtt_us``), from
  the runs that are light on every count (``_light``): what the model,
  simulated as each ran, leaves of its mean latency (``fit_path``); their
  spread (a cv each) from the same runs' latency
  p50 and p99, through the model too (``simlab.spread``).
- **Memory**, user (the tree's PSS) and kernel (the server's own, from its
  memory cgroup), each a fit of what the server held: processes, threads,
  connections, forks, backend connections.
- **The lab's neighbours**: the load generator's CPU per request and the
  backend's per call, kept apart (``lab``) for validation to simulate the
  lab as it ran; they are not the server's.
- **Peers' structure**: gunicorn's and uvicorn's idle threads and memory.

Nothing is written until the fit is done, and then atomically: an
interrupted calibration leaves the previous profile as it was, and runs
again from its first unmeasured run (``simlab.journal``).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from simlab.distributions import Exponential, Fixed
from simlab.errors import UserError
from simlab.fitting import Fit, fit_robust, median_with_ci
from simlab.gate import Budget, Gate, journalled, spent
from simlab.gate import record as gate_record
from simlab.journal import Journal
from simlab.models import get_model
from simlab.models.base import MAX_BUSY_SEEN
from simlab.params import LAB_KEYS, Architecture, Platform, Workload
from simlab.platforms import PRESETS, profile_path
from simlab.provenance import atomic_write_json, git_revision, json_safe, machine, utc_stamp
from simlab.real.close_wait import measure_close_wait
from simlab.real.gil_wake import measure_gil_wake
from simlab.real.grids import (
    LOOP_SERVERS,
    PEER_LOOPS,
    PEER_REQUESTS,
    SLOW_SWITCH_MS,
    Run,
    grid,
    measure_options,
)
from simlab.real.measure import MeasureOptions, measure
from simlab.real.memory import measure_memory
from simlab.real.peers import PEERS, RESEMBLES, as_designed, with_own_costs
from simlab.real.probe_cost import measure_probe_cost
from simlab.real.speed import session_speed
from simlab.spread import PARAMETERS as SPREAD_PARAMETERS
from simlab.spread import (
    SpreadFit,
    fit_spread_table,
    spread_parameters,
    spread_summary,
    spread_table,
)
from simlab.stats import bootstrap_ci, ci95
from simlab.streams import Deal

__all__ = [
    "CPU_COSTS",
    "calibrate",
    "close_wait_parameter",
    "cpu_row",
    "fit_batching",
    "fit_child_kernel",
    "fit_copies",
    "fit_cpu",
    "fit_fork_split",
    "fit_forks",
    "fit_peer_loops",
    "fit_peer_requests",
    "fit_spread_through_model",
    "fork_law_parameters",
    "gil_wake_parameter",
    "measure_runs",
]

CPU_COSTS = ("parse_us", "task_us", "dispatch_us", "call_us", "context_switch_us", "wake_us")
ACCEPT_COSTS = ("spawn_us", "fork_us")
MEMORY_UNITS = ("process", "thread", "connection", "fork", "backend_conn", "touched")
# Contention values the DES tries against the thread runs (a fraction of a
# switch per runnable thread): a grid, so that a bootstrap costs no new runs.
CONTENTION_GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
# The GIL's waiters' wake-ups (us of the holder's time each), tried with it:
# about 1.5 us was seen on 2 December (300 threads at 5 against 50 ms); with
# the hand-off beside the lab's neighbours on (5 December, night), the
# contrast asked for 6 us, its interval [4, 10] at the top of a grid that
# ended at 10, so it reaches further.
POLL_GRID = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0, 10.0, 15.0, 25.0)
# The GIL's hand-off (us the GIL idles each time a waiter takes it), at 2 to
# 4 hand-offs a request under contention.
HANDOFF_GRID = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 50.0, 60.0, 80.0, 120.0)
# The runs it is fitted on: the same load on 8 to 2,048 threads, 8 to 300
# threads saturated (nearly all of them waiting for the GIL), and the open
# loop at the GIL's capacity at two switch intervals.
CONTENTION_ROLES = ("threads", "saturate", "convoy")


def cpu_row(
    target: str, calls: int, busy: float = 0.0, k: int | None = None, *, gil: bool = True
) -> dict[str, float]:
    """How much of each cost one request of ``target`` pays (the design matrix):
    its model's ``request_cost`` at ``busy`` cores of load (on a platform with
    or without a ``gil``), and, with ``k`` requests per connection, 1/k of
    its accept cost (a thread spawned or a process forked per connection)."""
    # A peer pays the costs of the model it resembles.
    model = RESEMBLES.get(target, target)
    cost = get_model(model).request_cost(Workload(connections=1, rate=1.0, calls=calls))
    row = cost.terms(busy, gil=gil)
    for name in ACCEPT_COSTS:
        row[name] = cost.accept.get(name, 0.0) / k if k else 0.0
    return row


def _per_request_cpu(s: dict[str, Any], run: Run) -> float | None:
    """CPU microseconds per request beyond the requested burn."""
    busy = s.get("cpu_busy_cores")
    served = s.get("throughput_rps")
    if not busy or not served:
        return None
    return float((busy / served - run.workload.cpu.mean) * 1e6)


CPU_ROLES = ("cpu", "batch", "fork", "spawn")


def fit_cpu(results: list[tuple[Run, dict[str, Any]]]) -> Fit:
    names = (*CPU_COSTS, *ACCEPT_COSTS)
    rows, ys = [], []
    for run, s in results:
        if run.target in PEERS:
            continue  # a peer's own code costs what it costs (fit_peer_loops)
        y = _per_request_cpu(s, run)
        if run.role in CPU_ROLES and y is not None:
            busy = float(s["cpu_busy_cores"] or 0.0)
            w = run.workload
            row = cpu_row(run.target, w.calls, busy, w.requests_per_connection)
            rows.append([row[k] for k in names])
            ys.append(y)
    return fit_robust(np.array(rows), np.array(ys), names)


def _contention_y(busy: float | None, served: float | None, run: Run) -> float | None:
    """What a thread run says about contention, in microseconds a request,
    the same on both sides: a saturated run's bottleneck time (1/served: the
    GIL's, nearly every thread waiting for it, as if its one core were all
    that is busy; a ``beside`` run's too, an open loop over the GIL's
    capacity), and a convoy run's (an open loop at about the GIL's
    capacity: where the server falls behind, 1/served is its GIL's time a
    request; where it keeps up, the offered rate's, on both sides alike; a
    ``siblings`` run's, two copies' served rate, on both sides alike);
    any other's CPU beyond the requested burn."""
    if run.role in ("saturate", "convoy", "beside", "siblings"):
        busy = 1.0
    return _per_request_cpu({"cpu_busy_cores": busy, "throughput_rps": served}, run)


def as_held(run: Run, summary: dict[str, Any]) -> Run:
    """A saturated thread run as its server held it: its closed loop of the
    connections the server had accepted, its mean thread count less the
    accepting thread, where that is fewer than the run opened. A closed loop
    with no think time keeps every served thread busy, and the accepting
    thread waits for the GIL behind them: on 4 December a run of 300
    connections held 98 to 146 threads on average (121 at most in a hand
    run), the rest of its connections waiting in the listen queue, unserved
    and costing the GIL nothing. Simulated with all 300 waiting, the
    waiters' wake-ups (``gil_poll_us``) cost the model's GIL holder two to
    three times what they cost the server's. Other runs are as they were.
    ``summary``: the run's numbers as the fits read them (``_as_summary``)."""
    held = (summary.get("threads") or {}).get("mean")
    if run.role != "saturate" or held is None or not math.isfinite(float(held)):
        return run
    n = round(float(held)) - 1
    if not 1 <= n < run.workload.connections:
        return run
    return replace(run, workload=run.workload.with_(connections=n))


@dataclass(frozen=True)
class GridFit:
    """One parameter of a grid search: the value chosen over every run, its
    bootstrap interval, and whether the runs identify it (and why not)."""

    value: float
    ci95: list[float] | None
    identified: bool
    why: str

    def used(self, key: str, preset: Platform) -> float:
        """The value a profile uses: the fitted one, or the preset's."""
        return self.value if self.identified else float(getattr(preset, key))

    def parameter(self, key: str, preset: Platform, method: str) -> dict[str, Any]:
        """The profile's record of it: fitted with its interval and ``method``,
        or the preset's value, labelled an assumption, with its estimate."""
        if self.identified:
            return {"value": self.value, "ci95": self.ci95, "identified": True, "method": method}
        return {
            "value": getattr(preset, key),
            "identified": False,
            "assumption": f"not identified: {self.why}; the preset's value",
            "estimate": self.value,
        }


def _grid_predictions(
    runs: list[tuple[Run, dict[str, Any]]],
    platform: Platform,
    grids: dict[str, tuple[float, ...]],
    own: list[dict[str, float]] | None = None,
) -> np.ndarray:
    """Each run's simulated cost per request (``_contention_y``) at every
    point of ``grids`` (axes in their order, the runs last), simulated as it
    ran (``Run.platform``: its switch interval; ``own``: each run's own
    values of other parameters, such as its neighbours' measured CPU)."""
    from simlab.simulation import simulate  # noqa: PLC0415 - heavy, and only here

    shape = tuple(len(g) for g in grids.values())
    predicted = np.zeros((*shape, len(runs)))
    for point in np.ndindex(*shape):
        p = platform.with_(**{k: g[i] for (k, g), i in zip(grids.items(), point, strict=True)})
        for r, (run, _) in enumerate(runs):
            on = p.with_(**own[r]) if own is not None else p
            s = simulate(
                run.target, run.workload, run.platform(on), run.arch,
                duration=run.duration, warmup=run.warmup, replications=2, seed=r + 1,
            ).summary  # fmt: skip
            cost = _contention_y(s.cpu_busy_cores, s.throughput_rps or 1.0, run)
            predicted[(*point, r)] = cost if cost is not None else 0.0
    return predicted


def _strata(keys: list[Any]) -> list[np.ndarray]:
    """The places of the runs of each key, in the keys' first order: the
    groups a bootstrap draws within."""
    return [np.array([r for r, k in enumerate(keys) if k == key]) for key in dict.fromkeys(keys)]


def _grid_fit(
    predicted: np.ndarray,
    y: np.ndarray,
    strata: list[np.ndarray],
    grids: dict[str, tuple[float, ...]],
    *,
    levels: np.ndarray | None = None,
    at_zero: str = "the thread runs do not show this cost",
    at_top: str = "the thread runs do not bound it",
) -> dict[str, GridFit]:
    """The point of ``grids`` whose predictions best match ``y`` (least
    squares over the runs), and each axis's 95% interval from 400 bootstrap
    draws of the runs within their ``strata``. ``levels`` (a group index a
    run): each group's runs free to sit at a level of their own, its mean
    residual taken off at each point, so that only how the runs differ
    within a group is matched. ``at_zero``, ``at_top``: why an interval at
    an end of the grid is not identified (``_on_grid``)."""

    def best(pick: np.ndarray) -> tuple[int, ...]:
        residuals = predicted[..., pick] - y[pick]
        if levels is not None:
            for group in np.unique(levels[pick]):
                mine = levels[pick] == group
                residuals[..., mine] -= residuals[..., mine].mean(axis=-1, keepdims=True)
        sse = (residuals**2).sum(axis=-1)
        return tuple(int(i) for i in np.unravel_index(int(np.argmin(sse)), sse.shape))

    chosen = best(np.arange(len(y)))
    rng = np.random.default_rng(0)
    draws = np.array(
        [best(np.concatenate([rng.choice(g, len(g)) for g in strata])) for _ in range(400)]
    )
    return {
        name: _on_grid(grid, chosen[axis], draws[:, axis], at_zero, at_top)
        for axis, (name, grid) in enumerate(grids.items())
    }


def _on_grid(
    grid: tuple[float, ...], chosen: int, draws: np.ndarray, at_zero: str, at_top: str
) -> GridFit:
    """The value of ``grid`` at ``chosen`` with the 95% interval of its
    bootstrap ``draws`` (indices into it), identified only where that
    interval reaches neither end of the grid: at zero the cost is not seen
    (``at_zero`` says how), at the top the grid has no bound (``at_top``)."""
    values = np.asarray(grid)[draws]
    lo, hi = (float(x) for x in np.percentile(values, [2.5, 97.5]))
    identified = lo > 0 and hi < grid[-1]
    why = "" if identified else (
        f"its bootstrap interval [{lo:g}, {hi:g}] includes zero: {at_zero}"
        if lo <= 0
        else f"its bootstrap interval [{lo:g}, {hi:g}] reaches the top of the grid tried "
        f"({grid[-1]:g}): {at_top}"
    )  # fmt: skip
    return GridFit(float(grid[chosen]), [lo, hi], identified, why)


def _pair(runs: list[Run]) -> tuple[list[int], list[int]]:
    """The saturated pair's runs, by their places in ``runs`` (as measured,
    before ``as_held`` set each one's threads): those at the default switch
    interval of the workload that the slow interval's runs have (the most
    threads, as the grid repeats them), and those at the slow one."""
    slow = [r for r, run in enumerate(runs)
            if run.role == "saturate" and run.switch_interval_ms == SLOW_SWITCH_MS]  # fmt: skip
    loads = {runs[r].workload for r in slow}
    default = [r for r, run in enumerate(runs)
               if run.role == "saturate" and run.switch_interval_ms is None
               and run.workload in loads]  # fmt: skip
    return default, slow


def _contrast_fit(
    predicted: np.ndarray,
    y: np.ndarray,
    default: list[int],
    slow: list[int],
    grid: tuple[float, ...],
) -> GridFit:
    """``gil_poll_us`` from the saturated pair's contrast: the mean log cost a
    request (``_contention_y``) of the runs at the default switch interval
    less that of the runs at ten times it, measured against simulated at
    each value of ``grid`` (``predicted``: the grid's values by the runs).
    A difference of logs: a machine a few percent faster or slower in one
    session than in another moves both intervals' runs alike and leaves it,
    where it moves the costs themselves (the level the hand-off is fitted
    to). The interval is 400 bootstrap draws of each side's runs."""
    a, b = np.asarray(default), np.asarray(slow)
    log_y, log_p = np.log(y), np.log(predicted)

    def best(i: np.ndarray, j: np.ndarray) -> int:
        measured = log_y[i].mean() - log_y[j].mean()
        simulated = log_p[:, i].mean(axis=1) - log_p[:, j].mean(axis=1)
        return int(np.argmin((simulated - measured) ** 2))

    rng = np.random.default_rng(0)
    draws = [best(rng.choice(a, len(a)), rng.choice(b, len(b))) for _ in range(400)]
    measured = float(log_y[a].mean() - log_y[b].mean())
    at_zero = float(log_p[0, a].mean() - log_p[0, b].mean())  # the grid starts at 0
    return _on_grid(
        grid,
        best(a, b),
        np.asarray(draws),
        "the saturated pair's contrast (log GIL time a request at the default switch "
        f"interval less at ten times it) is {measured:.3f} measured, {at_zero:.3f} "
        "simulated without this cost",
        "the saturated pair does not bound it",
    )


def _poll_fit(
    runs: list[tuple[Run, dict[str, Any]]],
    y: np.ndarray,
    default: list[int],
    slow: list[int],
    platform: Platform,
) -> GridFit:
    """``_contrast_fit`` on the saturated pair's runs (``_pair``'s places in
    ``runs`` and ``y``), simulated on ``POLL_GRID`` with ``platform``'s other
    costs (its hand-off among them: the contrast is a ratio, so the level
    it is taken at moves it a little); not identified with fewer than two
    runs a side (a bootstrap of one run has no spread) or a cost a request
    at or under zero (no log to take)."""
    keep = GridFit(platform.gil_poll_us, None, False, "")
    if len(default) < 2 or len(slow) < 2:
        return replace(keep, why="fewer than two saturated runs at each switch interval")
    not_positive = replace(
        keep, why="a saturated run's cost a request beyond the burn at or under zero"
    )
    measured = y[[*default, *slow]]
    if (measured <= 0).any():
        return not_positive
    pair = [runs[r] for r in (*default, *slow)]
    predicted = _grid_predictions(pair, platform, {"gil_poll_us": POLL_GRID})
    if (predicted <= 0).any():
        return not_positive
    at = list(range(len(default))), list(range(len(default), len(pair)))
    return _contrast_fit(predicted, measured, *at, POLL_GRID)


def fit_thread_costs(
    results: list[tuple[Run, dict[str, Any]]], platform: Platform
) -> dict[str, GridFit]:
    """The GIL's waiters' wake-ups (``gil_poll_us``), its hand-off
    (``gil_handoff_us``) and switch contention from the thread runs, by
    simulation, each run simulated as it ran, one after another:

    - the wake-ups from the saturated pair's contrast alone (``_poll_fit``:
      300 threads saturated at Python's switch interval against ten times it,
      ``SLOW_SWITCH_MS``): the waiters wake ten times as often at the
      default, which is what their cost to the holder and their own CPU
      (``gil_wake_us``, measured, in the model at both) depend on; a
      difference of log costs, so that the machine's speed, which drifts
      between sessions by more than this cost, cancels (the hand-off, not
      yet fitted, at the platform's value);
    - the hand-off on ``HANDOFF_GRID``, the wake-ups held at their value: the
      level of every run's simulated cost per request (``_contention_y``)
      against the measured one, least squares (a hand-off costs the GIL the
      same at 8 waiting threads as at 100);
    - contention on ``CONTENTION_GRID`` with those two held: a contention is
      fitted to what the GIL's costs leave, so it is identified only where
      the runs show a cost growing with the runnable threads beyond them
      (nested, not joint: a contention the two have absorbed is not found).

    The last two intervals are bootstraps over runs, stratified by role and
    switch interval, the others held. Fitted on its levels alone (the grid
    of both at once, until December 2026), the wake-ups were not identified:
    a session whose machine ran 5% faster than another's moved every run by
    more than the pair's contrast (4.5% in both).
    """
    measured_runs = [run for run, s in results if run.role in CONTENTION_ROLES]
    runs = [(as_held(run, s), s) for run, s in results if run.role in CONTENTION_ROLES]
    measured = [_contention_y(s.get("cpu_busy_cores"), s.get("throughput_rps"), run)
                for run, s in runs]  # fmt: skip
    saturated = [r for r, (run, _) in enumerate(runs) if run.role == "saturate"]
    names = ("gil_handoff_us", "gil_poll_us", "switch_contention")
    if len(saturated) < 2 or any(m is None for m in measured) or not platform.gil:
        why = "too few saturated thread runs" if platform.gil else "no GIL"
        return {k: GridFit(getattr(platform, k), None, False, why) for k in names}
    y = np.asarray(measured, dtype=float)
    fits = {"gil_poll_us": _poll_fit(runs, y, *_pair(measured_runs), platform)}
    strata = _strata([(run.role, run.switch_interval_ms) for run, _ in runs])
    held = platform.with_(gil_poll_us=fits["gil_poll_us"].value)
    handoff_grid: dict[str, tuple[float, ...]] = {"gil_handoff_us": HANDOFF_GRID}
    fits |= _grid_fit(_grid_predictions(runs, held, handoff_grid), y, strata, handoff_grid)
    held = held.with_(gil_handoff_us=fits["gil_handoff_us"].value)
    contention_grid: dict[str, tuple[float, ...]] = {"switch_contention": CONTENTION_GRID}
    fits |= _grid_fit(_grid_predictions(runs, held, contention_grid), y, strata, contention_grid)
    return fits


# Shares of GIL hand-offs beside a running neighbour whose waiter waits for it.
NEIGHBOUR_GRID = tuple(k / 10 for k in range(11))


def fit_neighbour_share(results: list[tuple[Run, dict[str, Any]]], platform: Platform) -> GridFit:
    """How often a GIL handed to a waiter while a neighbour runs waits for the
    neighbour's core (``gil_neighbour_share``), from the ``beside`` runs:
    threads at their GIL's capacity in an open loop over it, the load
    generator busy beside them. Each run is simulated on a grid of shares,
    ``platform`` (the GIL's other costs fitted, the lab's neighbours on the
    cores) holding the rest but its neighbours' CPU, which is the run's own
    as measured (the load generator's a request, the backend's a call), and
    its GIL time a request (1/served, ``_contention_y``) is set against the
    measured; least squares, and a bootstrap over each configuration's runs.
    Nested after the other GIL costs (``fit_thread_costs``), which are fitted
    at ``platform``'s share (the preset's where it is not identified: 1 in
    cpython's), so a share the runs do not identify is the one those costs
    assume. The grid's 0 also turns the neighbours' runs back into runs
    that queue for cores each on its own (``Cpu.background``)."""
    lab = any(getattr(platform, k) > 0 for k in LAB_KEYS)
    no_lab = "no lab neighbours simulated (no cores, or the lab's CPU at 0)"
    return _fit_share(
        results, platform, "beside", key="gil_neighbour_share",
        why=no_lab if platform.cores is None or not lab else "",
        runs_are="beside the load generator", shares=NEIGHBOUR_GRID,
    )  # fmt: skip


def fit_sibling_share(results: list[tuple[Run, dict[str, Any]]], platform: Platform) -> GridFit:
    """How often a GIL handed to a waiter while another copy of the server
    runs on a core waits for that core (``gil_sibling_share``), from the
    ``siblings`` runs: two copies of a threaded server saturated in an open
    loop. As ``fit_neighbour_share``, with each run's neighbours at their
    measured CPU, after every other GIL cost and the neighbour share
    (fitted on one process, where the share does nothing)."""
    why = "no cores" if platform.cores is None else ""
    return _fit_share(
        results, platform, "siblings", key="gil_sibling_share", why=why,
        runs_are="of two copies", shares=SIBLING_GRID,
    )  # fmt: skip


# Finer where two copies' runs put it (0.25 by hand on 6 December).
SIBLING_GRID = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.75, 1.0)


def _fit_share(
    results: list[tuple[Run, dict[str, Any]]],
    platform: Platform,
    role: str,
    *,
    key: str,
    why: str,
    runs_are: str,
    shares: tuple[float, ...],
) -> GridFit:
    """A share of GIL hand-offs (``key``) on the grid ``shares`` from the runs
    of ``role``: each simulated at every share, its neighbours at their own
    measured CPU, its GIL time a request (1/served) set against the
    measured; least squares, and a bootstrap over each configuration's
    runs. ``why``: a reason it cannot be fitted already known, else ""."""
    runs = [(run, s) for run, s in results if run.role == role]
    served = [s.get("throughput_rps") or 0.0 for _, s in runs]
    why = (
        "no GIL" if not platform.gil
        else why if why
        else f"too few runs {runs_are}" if len(runs) < 2
        else f"a run {runs_are} served nothing" if min(served) <= 0
        else ""
    )  # fmt: skip
    if why:
        return GridFit(getattr(platform, key), None, False, why)
    y = np.array([_contention_y(1.0, x, run) for (run, _), x in zip(runs, served, strict=True)])
    own = [_own_neighbours(s, platform) for _, s in runs]
    strata = _strata([run.label() for run, _ in runs])
    grid: dict[str, tuple[float, ...]] = {key: shares}
    fits = _grid_fit(_grid_predictions(runs, platform, grid, own), y, strata, grid)
    return fits[key]


# Turns of the GIL's costs and the neighbour share, each fitted at the
# other's last values (``fit_gil_rounds``).
GIL_ROUNDS = 4


def fit_gil_rounds(
    results: list[tuple[Run, dict[str, Any]]], platform: Platform, preset: Platform
) -> tuple[dict[str, GridFit], GridFit, int]:
    """The GIL's costs (``fit_thread_costs``) and the neighbour share
    (``fit_neighbour_share``) fitted in turn, each at the other's last
    values (a preset's where one is not identified), from ``platform``'s
    share, until the share comes back where it was fitted from: the rounds
    taken, or ``GIL_ROUNDS + 1`` if it still moved. The two trade off (on 5
    December the wake-ups came out at 2 us with the share held at 0, and at 6
    with it at 1, fitted there at 0.8), so one nested pass answered whichever
    share the preset assumed; each fit's interval is still its own, the other
    held."""
    at = platform.gil_neighbour_share
    for rounds in range(1, GIL_ROUNDS + 1):
        on = platform.with_(gil_neighbour_share=at)
        costs = fit_thread_costs(results, on)
        held = on.with_(**{k: f.used(k, preset) for k, f in costs.items()})
        share = fit_neighbour_share(results, held)
        fitted = share.used("gil_neighbour_share", preset)
        if math.isclose(fitted, at):
            return costs, share, rounds
        at = fitted
    return costs, share, GIL_ROUNDS + 1


def _own_neighbours(s: dict[str, Any], platform: Platform) -> dict[str, float]:
    """A run's own load generator's CPU a request and backend's a call, as it
    measured them, where it did (else ``platform``'s, the lab's fits). A
    load generator's own measure holds its second's share already."""
    kept = s.get("kept", {})
    own = {"client_cpu_us": kept.get("client_us"), "backend_cpu_us": kept.get("backend_us")}
    out = {k: float(v) if v is not None else getattr(platform, k) for k, v in own.items()}
    if own["client_cpu_us"] is not None:
        out["client_cpu_us_per_s"] = 0.0
    return out


NEIGHBOUR_METHOD = (
    "simulated GIL time a request (1/served) matched to threads at their GIL's capacity in "
    "an open loop over it, the lab's neighbours at each run's measured CPU, on a grid of shares, "
    "the GIL's other costs held at their fitted values; 95% bootstrap interval over each "
    "configuration's runs"
)
SIBLING_METHOD = (
    "simulated served rate of two copies of a threaded server saturated in an open loop at a "
    f"{SLOW_SWITCH_MS:g} ms switch interval, matched to the measured on a grid of shares, the "
    "lab's neighbours at each run's measured CPU, the GIL's other costs held at their fitted "
    "values; 95% bootstrap interval over each configuration's runs"
)
# Where the GIL's hand-off order comes from: CPython's source, not these runs.
GIL_HANDOFF = (
    "not fitted: CPython's take_gil and drop_gil (Python/ceval_gil.h) signal a "
    "condition variable, so the GIL goes to whichever waiting thread the OS wakes "
    "first, or to a thread back from its I/O before any wakes: no waiter is "
    "served in order (0); the switch interval forces a turn only against a "
    "thread that holds the GIL that long"
)
# How asyncio runs its callbacks: its source, not these runs.
LOOP_PASSES = (
    "not fitted: asyncio's BaseEventLoop._run_once (asyncio/base_events.py) runs "
    "every callback ready when a pass starts and leaves what they schedule to the "
    "next; in simlab's async server a backend reply reaches its task 3 passes "
    "after its bytes are read (the protocol feeds the backend's reader, the "
    "reader's task sets the call's future, the request's task resumes), a "
    "gather of parallel calls one more, and the answer is written by the task's "
    "done callback a pass later"
)
BATCHING_METHOD = (
    "soft-L1 least squares over the loop servers' light runs and closed loops "
    "(the other costs held at their fitted values), 95% bootstrap interval"
)


def loop_share(run: Run, busy: float) -> float:
    """The share of a loop's wake-ups one request pays: in a closed loop of k
    clients with no think time all k are ready at each wake-up (1/k); under
    open arrivals a request finds the loop asleep with probability about
    1 - busy (Poisson arrivals see time averages)."""
    if run.role == "batch":
        return 1.0 / run.workload.connections
    return 1.0 - min(max(busy, 0.0), MAX_BUSY_SEEN)


def fit_batching(results: list[tuple[Run, dict[str, Any]]], platform: Platform) -> Fit | None:
    """An event loop's own costs (``loop_event_us``, ``loop_wake_us``), from the
    loop servers' runs: what is left of each run's CPU per request once the
    costs ``platform`` already holds (all but the loop's parse and its
    wake-up) are taken off, fitted as ``loop_event_us + loop_wake_us * share``
    (``loop_share``). The main fit cannot separate them: it prices a loop's
    request at a thread's ``parse_us`` and its wake-ups at a thread's 1 - busy,
    whatever the batch. None when there are too few loop runs."""
    rows, ys = [], []
    for run, s in results:
        if run.target not in LOOP_SERVERS or run.role not in ("cpu", "batch"):
            continue
        y = _per_request_cpu(s, run)
        if y is None:
            continue
        busy = float(s["cpu_busy_cores"] or 0.0)
        w = run.workload
        row = cpu_row(run.target, w.calls, busy, w.requests_per_connection)
        share = loop_share(run, busy)
        idle = 1.0 - min(max(busy, 0.0), MAX_BUSY_SEEN)
        held = sum(row[k] * float(getattr(platform, k)) for k in CPU_COSTS)
        # Take off the loop's parse and its phase's wake-up as the main fit
        # priced them, and put back the wake-up at the loop's own share.
        held += -platform.parse_us + platform.wake_us * (share - idle)
        rows.append([1.0, share])
        ys.append(y - held)
    if len(rows) < 4:
        return None
    return fit_robust(np.array(rows), np.array(ys), ("loop_event_us", "loop_wake_us"))


PEER_LOOP_METHOD = (
    "soft-L1 least squares over the peer's own closed loops of 1 to 64 clients "
    "(the machine's costs held at the shared fitted values), 95% bootstrap interval"
)


def fit_peer_loops(
    results: list[tuple[Run, dict[str, Any]]], platform: Platform
) -> dict[str, dict[str, Any]]:
    """Each loop peer's own loop costs (``PEER_LOOPS``: ``loop_event_us``,
    ``loop_wake_us``), from its closed loops of 1 to 64 clients, as
    ``fit_batching`` fits simlab's loops, with the costs the machine sets
    (task, call, wake-up: ``platform``'s, shared) held.

    A peer's loop pays per request whatever its protocol code costs
    (uvicorn parses with httptools in C and runs its own protocol class;
    simlab's async server parses with h11 in Python), so these two are the
    peer's and no one else's. A cost its runs do not identify keeps the
    shared value, labelled an assumption. Returns {peer: {cost: record}},
    with the fit's rows and residuals under ``"fit"``; a peer with too few
    runs is left out."""
    out: dict[str, dict[str, Any]] = {}
    for peer in PEER_LOOPS:
        model = RESEMBLES[peer]
        runs = [
            (replace(run, target=model), s)
            for run, s in results
            if run.target == peer and run.role == "batch"
        ]
        fit = fit_batching(runs, platform)
        if fit is None:
            continue
        entry: dict[str, Any] = {}
        for key in fit.names:
            shared = float(getattr(platform, key))
            record = fit.parameter(key, preset=shared, method=PEER_LOOP_METHOD)
            if not record["identified"]:
                why = record["assumption"].removeprefix("not identified by these runs ")
                why = why.removesuffix("; the preset's value")
                record["assumption"] = (
                    f"not identified by {peer}'s closed loops {why}; the shared value "
                    "(simlab's loops')"
                )
            entry[key] = record
        entry["fit"] = {"rows": fit.rows, "residuals_us": list(fit.residuals)}
        out[peer] = entry
    return out


def _peer_request_method(keys: tuple[str, ...]) -> str:
    """How ``fit_peer_requests`` fits a peer's own cost carried on ``keys``."""
    on = " and ".join(keys)
    each = "each of them" if len(keys) > 1 else on
    return (
        "the peer's light runs' CPU a served request (busy cores over served rate) less "
        "the model's on the same runs (simulated as they ran, the shared costs held), over "
        f"what a us of {on} adds to the model's (simulated), mean over the runs with its "
        f"95% t interval, added to the shared value of {each}"
    )


def fit_peer_requests(
    results: list[tuple[Run, dict[str, Any]]], platform: Platform
) -> dict[str, dict[str, dict[str, Any]]]:
    """What a request costs each peer's own code beyond the model it
    resembles (``PEER_REQUESTS``: gunicorn's parser, WSGI environ and worker
    loop), from its light runs (role ``peer_request``): for each peer, a
    record for each cost it is carried on (``PEER_REQUEST_SETS``).

    Each run is simulated as it ran (the peer's model and design, ``platform``
    with the shared costs and what the peer's design sets, as validation
    does: ``with_own_costs``), and again with ``PARSE_PROBE_US`` more of
    each cost of a set: the difference between the measured and the
    simulated CPU a served request, over what a µs of the set adds to the
    simulated one (its share of requests paying it), is the peer's own,
    and its mean over the runs is added to the shared value of each cost
    of the set. The set is the one whose share is nearest one a request on
    every run (the largest distance from one the least): a peer's own code
    runs once a request, whichever path the model takes it by.
    ``parse_us`` where a thread parses each request; a reactor whose loop
    parses at its own ``loop_event_us`` pays ``parse_us`` only on a
    connection's first read (on a worker) and ``dispatch_us`` on the others,
    so the two together: either alone left the share to the rate (on 6
    December ``dispatch_us`` alone 0.70 a request at 30/s with 60
    connections, 0.97 at 120/s), and one value could not cost every run
    what it measured. A set whose share is under ``MIN_PARSE_SHARE`` on the
    median run cannot carry it: not identified, with that reason.
    Identified where the mean's t interval excludes zero; otherwise the
    shared values, labelled an assumption. A peer with fewer than three
    runs is left out. The runs' excess is taken as a cost a request: a cost
    a second (a master's heartbeats) would fall with the rate instead."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for peer in PEER_REQUESTS:
        runs = [(k, run, s) for k, (run, s) in enumerate(results)
                if run.target == peer and run.role == "peer_request"]  # fmt: skip
        found = _peer_request_slopes(runs, peer, platform)
        if found is None:
            continue
        keys, slopes, deltas = found
        share = float(np.median(slopes))
        if share >= MIN_PARSE_SHARE:
            out[peer] = _peer_request_records(peer, keys, deltas, platform)
            continue
        out[peer] = {
            key: {
                "value": float(getattr(platform, key)),
                "identified": False,
                "assumption": f"not identified: {peer}'s model ({RESEMBLES[peer]}) pays "
                f"{' and '.join(keys)} on {share:.0%} of its requests (the median run), so its own "
                "request cost cannot be carried there; the shared value (simlab's servers')",
                "method": _peer_request_method(keys),
            }
            for key in keys
        }
    return out


def _peer_request_slopes(
    runs: list[tuple[int, Run, dict[str, Any]]], peer: str, platform: Platform
) -> tuple[tuple[str, ...], list[float], list[float]] | None:
    """``fit_peer_requests``'s per-run numbers for the set of costs it carries
    a peer's cost on: the set, what a µs of each of its costs adds to the
    model's CPU a served request (its share of requests paying it), and the
    measured less the simulated CPU a request in µs of them (where the
    share is positive). None with fewer than three runs that kept numbers."""
    from simlab.simulation import simulate  # noqa: PLC0415 - heavy, and only here
    from simlab.validate import cpu_ms  # noqa: PLC0415 - validate imports the simulation

    def cpu(run: Run, p: Platform, seed: int) -> float | None:
        sim = simulate(
            RESEMBLES[peer], run.workload, p, as_designed(peer, run.arch),
            duration=run.duration, warmup=run.warmup, replications=2, seed=seed,
        ).summary  # fmt: skip
        return cpu_ms(sim.cpu_busy_cores, sim.throughput_rps)

    rows = []  # per run: measured, base, and the probed CPU for each set
    for k, run, s in runs:
        # A run that kept no number has none to read (``cpu_ms`` None).
        measured = cpu_ms(*(float(s.get(name) or math.nan) for name in CPU_KEYS))
        p = with_own_costs(peer, run.platform(platform), {})
        base = cpu(run, p, k + 1)
        probed = []
        for keys in PEER_REQUEST_SETS:
            more = {key: float(getattr(p, key)) + PARSE_PROBE_US for key in keys}
            probed.append(cpu(run, p.with_(**more), k + 1))
        if measured is None or base is None or None in probed:
            continue
        # cpu_ms is in ms: the share is per µs of the costs, the excess in µs.
        shares = [(x - base) * 1e3 / PARSE_PROBE_US for x in probed if x is not None]
        rows.append((measured, base, shares))
    if len(rows) < 3:
        return None
    # The set whose share stays nearest one a request on every run.
    best = min(
        range(len(PEER_REQUEST_SETS)),
        key=lambda j: max(abs(shares[j] - 1.0) for _, _, shares in rows),
    )
    slopes = [shares[best] for _, _, shares in rows]
    deltas = [
        (measured - base) * 1e3 / shares[best]
        for measured, base, shares in rows
        if shares[best] > 0
    ]
    return PEER_REQUEST_SETS[best], slopes, deltas


def _peer_request_records(
    peer: str, keys: tuple[str, ...], deltas: list[float], platform: Platform
) -> dict[str, dict[str, Any]]:
    """The profile's records of a peer's own cost carried on ``keys``: the
    same µs added to each one's shared value."""
    method = _peer_request_method(keys)
    # A t interval on the mean: with a few runs a bootstrap of their median
    # excludes zero whenever their noise happens to fall on one side.
    delta, ci = float(np.mean(deltas)), ci95(deltas)
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        shared = float(getattr(platform, key))
        if ci is not None and (ci[0] > 0 or ci[1] < 0):
            out[key] = {
                "value": max(0.0, shared + delta),
                "ci95": [max(0.0, shared + ci[0]), max(0.0, shared + ci[1])],
                "identified": True,
                "method": method,
                "over_model_us": deltas,
            }
            continue
        span = "none" if ci is None else f"[{ci[0]:.0f}, {ci[1]:.0f}]"
        out[key] = {
            "value": shared,
            "identified": False,
            "assumption": f"not identified by {peer}'s light runs (its CPU a request "
            f"over the model's, {delta:.0f} us, interval {span}, does not exclude zero); "
            f"the shared value (simlab's servers')",
            "estimate": shared + delta,
            "method": method,
            "over_model_us": deltas,
        }
    return out


# The sets of costs a peer's own request path may be carried on: the one
# whose share stays nearest one a request (``fit_peer_requests``).
PEER_REQUEST_SETS: tuple[tuple[str, ...], ...] = (
    ("parse_us",),
    ("dispatch_us",),
    ("parse_us", "dispatch_us"),
)
# The cost added to see what it costs a model's request, and the least
# share of requests on which a model must pay it for a peer's cost to go there.
PARSE_PROBE_US = 200.0
MIN_PARSE_SHARE = 0.5
# A run's numbers that make its CPU a served request, as ``cpu_ms`` takes them.
CPU_KEYS = ("cpu_busy_cores", "throughput_rps")


# Wall-clock overheads are read from lightly loaded runs only: under load the
# server's service time also holds GIL and core waits, which are queueing.
# Light means light on every count: the cores little busy, the model's busiest
# resource little loaded at the offered rate (an iterative server's single
# thread at 30/s of 24 ms is 0.7 busy with its cores idle), the run stable, and
# served what it was sent (a stalled run serves a fraction of it while its
# cores idle, and its seconds of backlog are not a path's overhead).
LIGHT_LOAD = 0.3
LIGHT_SERVED = 0.1


def offered_rho(run: Run, platform: Platform) -> float:
    """The offered load of the busiest resource ``run``'s model has (client
    connections included) at ``platform``'s costs; 0 for closed arrivals."""
    model = RESEMBLES.get(run.target, run.target)
    loads = get_model(model).offered_load(
        run.workload, platform, as_designed(run.target, run.arch), Deal.of_run()
    )
    return max(loads.values(), default=0.0)


def _light(run: Run, s: dict[str, Any], platform: Platform | None = None) -> bool:
    """A run whose latency is its path, not its queue: an open-loop ``cpu``
    run, stable, served no less than ``LIGHT_SERVED`` under its offered rate, its
    cores under ``LIGHT_LOAD`` busy and (given ``platform``) its model's
    busiest resource offered under ``LIGHT_LOAD``."""
    w = run.workload
    served = s.get("throughput_rps")
    if run.role != "cpu" or w.rate is None or not served or s["service_ms"]["mean"] is None:
        return False
    # Only serving less than was sent marks a stall: serving more is the
    # arrivals' own Poisson noise over a short run (+11% in 4 s at 100/s).
    if s.get("stable") is False or served < (1.0 - LIGHT_SERVED) * w.rate:
        return False
    if (s.get("cpu_busy_cores") or 0.0) >= LIGHT_LOAD:
        return False
    return platform is None or offered_rho(run, platform) < LIGHT_LOAD


# The CPU costs a wall-clock fit takes off: a fit, or every cost by name
# (a runtime's profile, part fitted and part measured or assumed).
Costs = Fit | dict[str, float]


def _overhead_us(cpu: Costs, run: Run, s: dict[str, Any], gil: bool) -> float:
    row = cpu_row(run.target, run.workload.calls, float(s["cpu_busy_cores"] or 0.0), gil=gil)
    value = cpu.value if isinstance(cpu, Fit) else cpu.__getitem__
    return sum(row[k] * value(k) for k in CPU_COSTS)


def fit_wall(
    results: list[tuple[Run, dict[str, Any]]], cpu: Costs, *, gil: bool = True
) -> tuple[Fit, float, list[float]]:
    """call_latency_us from the server's own service times (a fit over calls);
    rtt_us from what is left of latency, a median with its interval. The CPU
    overheads taken off are priced on a platform with or without a ``gil``
    (``RequestCost.terms``)."""
    rows, ys, rtts = [], [], []
    for run, s in results:
        if not _light(run, s):
            continue
        w = run.workload
        extra = (s["service_ms"]["mean"] - (w.cpu.mean + w.calls * w.io.mean) * 1e3) * 1e3
        rows.append([1.0, float(w.calls)])
        ys.append(extra)
        gap_us = (s["latency_ms"]["mean"] - s["service_ms"]["mean"]) * 1e3
        # At these loads queueing is small but not nil; the p50 of the queueing
        # delay is the better estimate of the fixed part.
        gap_us = min(gap_us, (s["queue_delay_ms"]["p50"] or gap_us / 1e3) * 1e3)
        rtts.append(gap_us - _overhead_us(cpu, run, s, gil))
    service = fit_robust(np.array(rows), np.array(ys), ("burn_overshoot_us", "call_latency_us"))
    rtt, rtt_ci = median_with_ci(rtts)
    return service, max(0.0, rtt), rtt_ci or []


PATH_METHOD = (
    "soft-L1 least squares over the light runs of what is left of each run's mean "
    "latency once the model, simulated as the run ran (the lab's neighbours on the "
    "cores) with no client path and no call latency, has predicted it: rtt_us + "
    "calls * call_latency_us; 95% bootstrap interval"
)


def path_rows(
    results: list[tuple[Run, dict[str, Any]]], platform: Platform
) -> list[tuple[Run, float, float]]:
    """Each light run (``_light`` at ``platform``'s costs) with its calls and
    its measured mean latency less the simulated one (microseconds), the
    simulation at ``platform`` with ``rtt_us`` and ``call_latency_us`` zero.

    The measured latency runs from the client's intended send to its read of
    the answer; the simulation holds every CPU cost, GIL and core wait and
    backend delay the model knows of at that load, so what is left is the
    path outside the server (the client's send and receive, loopback) plus,
    per call, what a backend call adds to its requested delay."""
    from simlab.simulation import simulate  # noqa: PLC0415 - heavy, and only here

    bare = platform.with_(rtt_us=0.0, rtt_cv=0.0, call_latency_us=0.0, call_latency_cv=0.0)
    out = []
    for k, (run, s) in enumerate(results):
        if not _light(run, s, platform):
            continue
        model = RESEMBLES.get(run.target, run.target)
        sim = simulate(
            model, run.workload, bare, as_designed(run.target, run.arch),
            duration=run.duration, warmup=run.warmup, replications=4, seed=k + 1,
        ).summary  # fmt: skip
        if sim.latency_ms.mean is None:
            continue
        left = (s["latency_ms"]["mean"] - sim.latency_ms.mean) * 1e3
        out.append((run, float(run.workload.calls), float(left)))
    return out


def fit_path(results: list[tuple[Run, dict[str, Any]]], platform: Platform) -> Fit:
    """``rtt_us`` and ``call_latency_us`` from the light runs (``path_rows``)."""
    rows = path_rows(results, platform)
    if len(rows) < 3:
        raise UserError(f"calibrate: {len(rows)} light runs cannot fit the client path")
    x = np.array([[1.0, calls] for _, calls, _ in rows])
    y = np.array([left for _, _, left in rows])
    return fit_robust(x, y, ("rtt_us", "call_latency_us"))


def _lognormal_cv(p50: float, p99: float) -> float | None:
    """The cv of a lognormal with this median and 99th percentile:
    sigma = ln(p99 / p50) / z(0.99), cv = sqrt(exp(sigma^2) - 1)."""
    if p50 <= 0 or p99 <= p50:
        return None
    z99 = 2.3263478740408408  # the standard normal's 99th percentile
    sigma = math.log(p99 / p50) / z99
    return math.sqrt(math.expm1(sigma**2))


def fit_spread(
    results: list[tuple[Run, dict[str, Any]]], cpu: Costs, *, gil: bool = True
) -> dict[str, float]:
    """The cvs of the per-call latency (from the service times of one-call
    runs) and of the client path (from latency minus service of no-call runs),
    each the median over the runs of a lognormal fitted to p50 and p99.

    The runtimes' profiles (``simlab.calibrate_runtime``) use it; cpython's
    fits its spreads through the model (``fit_spread_through_model``)."""
    call_cvs, rtt_cvs = [], []
    for run, s in results:
        if not _light(run, s) or s["service_ms"]["p50"] is None:
            continue
        w = run.workload
        own_ms = (w.cpu.mean + w.calls * w.io.mean) * 1e3
        if w.calls == 1:
            cv = _lognormal_cv(s["service_ms"]["p50"] - own_ms, s["service_ms"]["p99"] - own_ms)
            if cv is not None:
                call_cvs.append(cv)
        elif w.calls == 0 and s["queue_delay_ms"]["p50"] is not None:
            overhead_ms = _overhead_us(cpu, run, s, gil) / 1e3
            cv = _lognormal_cv(
                s["queue_delay_ms"]["p50"] - overhead_ms, s["queue_delay_ms"]["p99"] - overhead_ms
            )
            if cv is not None:
                rtt_cvs.append(cv)
    return {
        "call_latency_cv": float(np.median(call_cvs)) if call_cvs else 0.0,
        "rtt_cv": float(np.median(rtt_cvs)) if rtt_cvs else 0.0,
    }


# Fewer light runs than this with their latency quantiles kept cannot fit a
# shape (profiles measured before calibration kept them have none).
SPREAD_MIN_RUNS = 4


def spread_runs(
    results: list[tuple[Run, dict[str, Any]]], platform: Platform
) -> list[tuple[int, Run, dict[str, Any]]]:
    """The light runs (``_light`` at ``platform``'s costs) that kept their
    latency p50 and p99, each with its place in ``results`` (its seed)."""
    out = []
    for k, (run, s) in enumerate(results):
        lat = s["latency_ms"]
        if lat.get("p50") and lat.get("p99") and _light(run, s, platform):
            out.append((k, run, s))
    return out


def fit_spread_through_model(
    results: list[tuple[Run, dict[str, Any]]], platform: Platform
) -> SpreadFit | None:
    """``rtt_cv``, ``call_latency_cv`` and their fixed shares, fitted through
    the model to the light runs' latency p50 and p99 (``simlab.spread``) at
    ``platform`` (every fitted cost, the overheads' means, the lab's
    neighbours). None when too few runs kept their quantiles."""
    light = spread_runs(results, platform)
    if len(light) < SPREAD_MIN_RUNS:
        return None
    return fit_spread_table(spread_table(light, platform))


def _spread_unseen(preset: Platform) -> dict[str, dict[str, Any]]:
    why = (
        f"not identified: fewer than {SPREAD_MIN_RUNS} light runs kept their latency p50 and "
        "p99 (a profile measured before calibration kept them); the preset's value"
    )
    return {
        name: {"value": getattr(preset, name), "identified": False, "assumption": why}
        for name in SPREAD_PARAMETERS
    }


def served_connections(run: Run) -> float:
    """Expected distinct connections that sent at least one request during the run:
    with R requests spread uniformly over N connections, N (1 - exp(-R / N))."""
    w = run.workload
    if w.rate is None:
        return float(w.connections)
    sent = w.rate * (run.warmup + run.duration)
    return w.connections * (1 - math.exp(-sent / w.connections))


def memory_units(run: Run, s: dict[str, Any]) -> list[float]:
    """What one run's server held at its peak, unit by unit (``MEMORY_UNITS``).

    Threads, connections and processes are the probe's and the load
    generator's counts. Backend connections are one per thread that made a
    call: one per served connection where a thread or child owns a
    connection, one per loop otherwise (a reactor's workers reuse theirs).
    """
    cls = get_model(run.target)
    served = served_connections(run) if cls.holds_connection else 1.0
    backend = served if run.workload.calls > 0 else 0.0
    forks = max(0.0, (s["processes"]["peak"] or 1) - 1)
    touched = served if cls.own_process else 0.0
    return [1.0, s["threads"]["peak"], s["connections"]["opened"], forks, backend, touched]


def fit_memory(results: list[tuple[Run, dict[str, Any]]], kind: str) -> Fit | None:
    """User (``pss``) or kernel memory against the units held, weighted by
    1 / measured so that the fit minimises relative error: a forking server's
    hundreds of MiB must not drown a 20 MiB loop's few."""
    rows, ys = [], []
    key = "pss_peak_mib" if kind == "user" else "kernel_peak_mib"
    for run, s in results:
        if run.role not in ("cpu", "memory") or run.target in PEERS:
            continue
        mem = s["kept"].get(key)
        if mem is None or s["threads"]["peak"] is None:
            continue
        rows.append(memory_units(run, s))
        ys.append(mem * 1024)
    if len(rows) < len(MEMORY_UNITS) + 2:
        return None
    y = np.array(ys)
    return fit_robust(np.array(rows) / y[:, None], np.ones_like(y), MEMORY_UNITS)


def _structure(results: list[tuple[Run, dict[str, Any]]]) -> dict[str, dict[str, list[float]]]:
    """For each peer: idle threads, processes, PSS and kernel memory at 1 and 2
    processes, and with 1,000 connections (its own cost per connection)."""
    out: dict[str, dict[str, list[float]]] = {}
    for run, s in results:
        if run.role != "structure":
            continue
        entry = out.setdefault(
            run.target,
            {
                "processes": [],
                "threads": [],
                "memory_mib": [],
                "kernel_mib": [],
                "server_processes": [],
                "connections": [],
            },
        )
        entry["server_processes"].append(run.arch.processes)
        entry["connections"].append(run.workload.connections)
        entry["threads"].append(s["threads"]["peak"])
        entry["processes"].append(s["processes"]["peak"])
        entry["memory_mib"].append(s["kept"]["pss_peak_mib"])
        entry["kernel_mib"].append(s["kept"]["kernel_peak_mib"])
    return out


# What calibration keeps of each run: enough to fit again without measuring.
KEPT = {
    "throughput_rps": ("throughput_rps",),
    "cpu_busy_cores": ("cpu_busy_cores",),
    "latency_mean_ms": ("latency_ms", "mean"),
    # The latency's quantiles, for a fit of the spreads through the model
    # (profiles measured before they were kept lack them).
    "latency_p50_ms": ("latency_ms", "p50"),
    "latency_p99_ms": ("latency_ms", "p99"),
    "service_mean_ms": ("service_ms", "mean"),
    "service_p50_ms": ("service_ms", "p50"),
    "service_p99_ms": ("service_ms", "p99"),
    "queue_p50_ms": ("queue_delay_ms", "p50"),
    "queue_p99_ms": ("queue_delay_ms", "p99"),
    "pss_peak_mib": ("memory_mib", "user_peak"),
    "kernel_peak_mib": ("memory_mib", "kernel_peak"),
    "threads_peak": ("threads", "peak"),
    "threads_mean": ("threads", "mean"),
    "processes_peak": ("processes", "peak"),
    "connections_opened": ("connections", "opened"),
    "client_us": ("lab_cpu", "client_us_per_request"),
    "backend_us": ("lab_cpu", "backend_us_per_call"),
    "stable": ("stable",),
    "front_cpu_cores": ("front_cpu_cores",),
    # Every thread's switches a second (null where the threads came and
    # went): what the GIL's waiters' wake-ups cost in the server itself can
    # be read from runs at two switch intervals (runs before 2 December
    # 17:30 UTC lack them).
    "thread_switches_voluntary": ("thread_switches_per_s", "voluntary"),
    "thread_switches_involuntary": ("thread_switches_per_s", "involuntary"),
    # The machine's speed beside the run (simlab.real.speed), whole.
    "speed_reference": ("speed_reference",),
}


def _keep(s: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, path in KEPT.items():
        value: Any = s
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        out[key] = value
    return out


def _as_summary(kept: dict[str, Any]) -> dict[str, Any]:
    """The kept numbers back in the shape the fits read (and the kept ones whole)."""
    return {
        "throughput_rps": kept["throughput_rps"],
        "cpu_busy_cores": kept["cpu_busy_cores"],
        "latency_ms": {
            "mean": kept["latency_mean_ms"],
            "p50": kept.get("latency_p50_ms"),
            "p99": kept.get("latency_p99_ms"),
        },
        "service_ms": {
            "mean": kept["service_mean_ms"],
            "p50": kept["service_p50_ms"],
            "p99": kept["service_p99_ms"],
        },
        "queue_delay_ms": {"p50": kept["queue_p50_ms"], "p99": kept["queue_p99_ms"]},
        "threads": {"peak": kept["threads_peak"], "mean": kept.get("threads_mean")},
        "processes": {"peak": kept["processes_peak"]},
        "connections": {"opened": kept["connections_opened"]},
        "stable": kept["stable"],
        "kept": kept,
    }


def _run_record(run: Run, s: dict[str, Any]) -> dict[str, Any]:
    w, a = run.workload, run.arch
    return {
        "label": run.label(),
        "target": run.target,
        "role": run.role,
        "duration": run.duration,
        "warmup": run.warmup,
        "workload": {
            "connections": w.connections,
            "rate": w.rate,
            "think_s": w.think.mean if w.think is not None else None,
            "cpu_s": w.cpu.mean,
            "io_s": w.io.mean,
            "calls": w.calls,
            "requests_per_connection": w.requests_per_connection,
        },
        "architecture": a.describe(),
        "switch_interval_ms": run.switch_interval_ms,
        "measured": s["kept"],
    }


def _from_record(r: dict[str, Any]) -> tuple[Run, dict[str, Any]]:
    w, a = r["workload"], r["architecture"]
    think = w.get("think_s")
    workload = Workload(
        connections=w["connections"],
        rate=w["rate"],
        # The load generator's clients think Exp(mean) (``loadgen.closed_loop``):
        # a record keeps only the mean, and every run was measured so.
        think=Exponential(think) if think is not None else None,
        cpu=Fixed(w["cpu_s"]),
        io=Fixed(w["io_s"]),
        calls=w["calls"],
        requests_per_connection=w.get("requests_per_connection"),
    )
    run = Run(r["target"], workload, Architecture(**a), r["role"], r["duration"], r["warmup"],
              r.get("switch_interval_ms"))  # fmt: skip
    kept = {key: r["measured"].get(key) for key in KEPT}
    if "gate" in r["measured"]:
        kept["gate"] = r["measured"]["gate"]  # how the gate let the run in, kept as measured
    return run, _as_summary(kept)


def measure_runs(  # noqa: PLR0917 - the grid's runs, then how to measure them
    runs: list[Run],
    journal: Journal,
    tick: Callable[[str, int, int], None],
    total: int,
    places: list[int] | None = None,
    gate: Gate | None = None,
) -> list[tuple[Run, dict[str, Any]]]:
    """Measure each run not yet in ``journal`` (seed: its place in the grid,
    counted from 1: ``places``, or its place in ``runs``), each through
    ``gate`` (the machine's speed; None: off), and return every run with what
    calibration keeps of it."""
    gate = gate or Gate.off("not asked for")
    budget = Budget(gate.budget_s, spent_s=spent(journal))
    results = []
    for k, run in zip(places or range(1, len(runs) + 1), runs, strict=True):
        tick(run.label(), k, total)
        key = f"{k}: {run.label()}"
        if key not in journal:
            opts = measure_options(run, k)
            journal.put(key, journalled(gate, _real(opts), key, journal, budget))
        results.append((run, _as_summary(journal.get(key))))
    return results


def _real(opts: MeasureOptions) -> Callable[[], dict[str, Any]]:
    """One real run, as calibration keeps it and the gate runs it (``simlab.gate``)."""

    def run() -> dict[str, Any]:
        m = measure(opts)
        return _keep({**m.summary.to_dict(), "front_cpu_cores": m.front_cpu_cores})

    return run


# What calibration measures besides its runs, each in seconds: the probe's CPU
# per sample and what a GIL waiter's wake-up costs (no server, no port), and how
# long a blocking server's thread waits for a short connection's close (a few
# short runs of the real iterative server on loopback).
BENCHMARKS: dict[str, Callable[[], dict[str, Any]]] = {
    "probe": measure_probe_cost,
    "gil_wake": measure_gil_wake,
    "close_wait": measure_close_wait,
}


def _measured_now(
    key: str,
    measure: Callable[[], dict[str, Any]],
    tick: Callable[[str, int, int], None],
    total: int = 1,
) -> dict[str, Any]:
    tick(f"measure the {key} benchmark", 0, total)
    return measure()


def calibrate(
    name: str,
    *,
    quick: bool = False,
    refit: bool = False,
    measure_missing: bool = False,
    out_dir: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    gate: Gate | None = None,
) -> dict[str, Any]:
    """Run the grid (or, with ``refit``, reuse the runs kept in the existing
    profile, and with ``measure_missing`` also measure the grid's runs it
    lacks: runs added to the grid since), fit, and write ``out_dir/name.json``
    (default: the data root's profiles); returns the profile. Each real run
    goes through ``gate`` (``simlab.gate``: the machine's speed; None: off)."""
    gate = gate or Gate.off("not asked for")
    if measure_missing and not refit:
        raise UserError("--measure-missing: only with --refit (a full calibration measures all)")
    tick = progress or (lambda _label, _k, _n: None)
    path = out_dir / f"{name}.json" if out_dir is not None else profile_path(name)
    journal: Journal | None = None
    previous: dict[str, Any] = {}
    added: list[tuple[Run, dict[str, Any]]] = []
    if refit:
        try:
            previous = json.loads(path.read_text())
            results = [_from_record(r) for r in previous["runs"]]
            memory = previous["memory_benchmark"]
            quick = bool(previous.get("quick", False))
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise UserError(f"--refit: cannot reuse the runs in {str(path)!r}: {exc}") from None
        # A profile from before a benchmark was kept: that benchmark (seconds;
        # the close wait's runs a real server on loopback, outside the speed
        # gate) is measured now; the others are reused.
        benchmarks = {
            key: previous.get(f"{key}_benchmark") or _measured_now(key, measure, tick)
            for key, measure in BENCHMARKS.items()
        }
        if measure_missing:
            added = _measure_missing(name, quick, results, tick, gate)
            results = results + added
        tick("fitting", 1, 1)
    else:
        runs = grid(quick)
        total = len(runs) + 1
        # An interrupted calibration resumes at its first unmeasured run.
        journal = Journal(
            f"calibrate-{name}",
            {"quick": quick, "runs": [r.label() for r in runs], "gate": gate.to_dict()},
        )
        tick("measure memory", 0, total)
        if "memory" not in journal:
            journal.put("memory", measure_memory((100, 500) if quick else (300, 1500)))
        memory = journal.get("memory")
        for key, measure in BENCHMARKS.items():
            if key not in journal:
                journal.put(key, _measured_now(key, measure, tick, total))
        benchmarks = {key: journal.get(key) for key in BENCHMARKS}
        results = measure_runs(runs, journal, tick, total, gate=gate)
        tick("fitting", total, total)
    profile = _profile(name, quick, results, memory, benchmarks)
    measured = added if refit else results
    if measured:
        # How the machine's speed gated the runs measured now (a refit's
        # saved runs keep the record they were measured with).
        profile["gate"] = gate_record(gate, [(run.label(), 0, s["kept"]) for run, s in measured])
    elif previous.get("gate"):
        profile["gate"] = previous["gate"]
    if refit:
        _sessions_apart(profile, previous, added)
        _refitted(profile, previous)
    atomic_write_json(path, profile)
    if journal is not None:
        journal.done()
    return profile


def _sessions_apart(
    profile: dict[str, Any], previous: dict[str, Any], added: list[tuple[Run, dict[str, Any]]]
) -> None:
    """A refit's profile keeps the saved runs' session's speed reference;
    runs measured since (``measure_missing``) are a session of their own,
    recorded apart (``added_runs``: which, when added, the machine's speed)."""
    profile["speed_reference"] = previous.get("speed_reference")
    if added:
        speeds = [s["kept"].get("speed_reference") for _, s in added]
        profile["added_runs"] = json_safe({
            "labels": [run.label() for run, _ in added],
            "added": utc_stamp(),
            "speed_reference": session_speed(speeds),
        })  # fmt: skip
    elif previous.get("added_runs"):
        profile["added_runs"] = previous["added_runs"]


def _refitted(profile: dict[str, Any], previous: dict[str, Any]) -> None:
    """A refit's profile says where its runs were measured (the saved
    profile's machine, revision and time) and, apart, where and when they
    were fitted again (``refitted``): a refit on another host must not pass
    that host off as the one the runs measured."""
    keys = ("created", "git_revision", "machine")
    fitted = {k: profile[k] for k in keys if k in profile}
    profile.update({k: previous[k] for k in keys if k in previous})
    profile["refitted"] = fitted


def _lacking(runs: list[Run], saved: list[Run]) -> list[tuple[int, Run]]:
    """The runs of ``runs`` (with their places, from 1) that ``saved`` lacks,
    counted by label: a run the grid repeats needs as many saved."""
    have = Counter(run.label() for run in saved)
    missing = []
    for k, run in enumerate(runs, 1):
        if have[run.label()] > 0:
            have[run.label()] -= 1
        else:
            missing.append((k, run))
    return missing


def _measure_missing(
    name: str,
    quick: bool,
    results: list[tuple[Run, dict[str, Any]]],
    tick: Callable[[str, int, int], None],
    gate: Gate,
) -> list[tuple[Run, dict[str, Any]]]:
    """The grid's runs that ``results`` lacks, measured now, each with the seed
    a full calibration gives it (its place in the grid). Their session is not
    the saved runs' (the machine's speed drifts between sessions: each run
    keeps its own speed reference beside it)."""
    runs = grid(quick)
    missing = _lacking(runs, [run for run, _ in results])
    if not missing:
        return []
    labels = [run.label() for _, run in missing]
    journal = Journal(
        f"calibrate-{name}-missing", {"quick": quick, "runs": labels, "gate": gate.to_dict()}
    )
    added = measure_runs(
        [run for _, run in missing],
        journal,
        tick,
        len(runs),
        places=[k for k, _ in missing],
        gate=gate,
    )
    journal.done()
    return added


def _measured(value: float, note: str) -> dict[str, Any]:
    return {"value": value, "identified": True, "method": f"measured: {note}"}


def gil_wake_parameter(benchmark: dict[str, Any], preset: Platform) -> dict[str, Any]:
    """``gil_wake_us`` from its benchmark (``measure_gil_wake``): measured, with
    the range of its pairs (not a confidence interval: three pairs), or the
    preset's value, labelled, when the benchmark did not identify it."""
    why = (
        "in its benchmark more waiting threads did not both wake more and cost more CPU "
        "in every pair"
    )
    return _from_benchmark(benchmark, "wake_us", preset.gil_wake_us, why)


def close_wait_parameter(benchmark: dict[str, Any], preset: Platform) -> dict[str, Any]:
    """``close_wait_us`` from its benchmark (``measure_close_wait``): measured,
    with the range of its runs' means, or the preset's value, labelled, when
    a run recorded too few closes."""
    why = "a run of its benchmark recorded too few closes"
    return _from_benchmark(benchmark, "wait_us", preset.close_wait_us, why)


def _from_benchmark(
    benchmark: dict[str, Any], key: str, preset_value: float, why: str
) -> dict[str, Any]:
    if not benchmark.get("identified"):
        return {
            "value": preset_value,
            "identified": False,
            "assumption": f"not identified: {why}; the preset's value",
        }
    return _measured(benchmark[key], benchmark["method"]) | {"range": benchmark["range_us"]}


def _profile(
    name: str,
    quick: bool,
    results: list[tuple[Run, dict[str, Any]]],
    memory: dict[str, Any],
    benchmarks: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The profile fitted to ``results``, with ``memory`` and the
    ``BENCHMARKS`` (the probe's cost, the GIL's wake-ups, the close wait)
    measured beside them."""
    probe, gil_wake, close = benchmarks["probe"], benchmarks["gil_wake"], benchmarks["close_wait"]
    preset = PRESETS["cpython"]()
    cpu = fit_cpu(results)
    robust = "soft-L1 least squares over the runs, 95% bootstrap interval"
    params: dict[str, Any] = {}
    for key in cpu.names:
        params[key] = cpu.parameter(key, preset=getattr(preset, key), method=robust)
    _memory_parameters(params, results, memory, preset)
    params["gil_interval_us"] = _measured(
        sys.getswitchinterval() * 1e6, "sys.getswitchinterval() of this Python"
    )
    params["gil_fifo_share"] = {
        "value": 0.0,
        "identified": False,
        "assumption": GIL_HANDOFF,
    }
    params["loop_passes"] = {"value": 3.0, "identified": False, "assumption": LOOP_PASSES}
    params["gil_wake_us"] = gil_wake_parameter(gil_wake, preset)
    params["close_wait_us"] = close_wait_parameter(close, preset)
    params["cores"] = os.cpu_count() or 1
    params["gil"] = True

    def fitted() -> Platform:
        return preset.with_(**{k: v["value"] for k, v in params.items() if isinstance(v, dict)})

    # The lab's neighbours were on the cores in every run: the load generator's
    # CPU (a closed loop's, in the saturated runs) takes from what the GIL's
    # holder gets, so the contention is fitted with them there, as validation
    # simulates them.
    lab = _lab(results, probe)
    neighbours = {k: lab[k]["value"] for k in LAB_KEYS
                  if lab.get(k, {}).get("value") is not None}  # fmt: skip
    thread_costs, share, rounds = fit_gil_rounds(results, fitted().with_(**neighbours), preset)
    gil_runs = (
        "simulated cost per request matched to 8..300 threads saturated at the default "
        f"switch interval and 300 at {SLOW_SWITCH_MS:g} ms, and to an open loop at the "
        "GIL's capacity at both"
    )
    methods = {
        "switch_contention": "simulated cost per request matched to the same load on "
        "8..2,048 threads (CPU) and to 8..300 threads saturated (the GIL's time), "
        "gil_handoff_us and gil_poll_us held at their fitted values; 95% bootstrap "
        "interval over the runs",
        "gil_poll_us": "the saturated pair's contrast: the mean log GIL time a request "
        "beyond the burn at the default switch interval less at "
        f"{SLOW_SWITCH_MS:g} ms (300 connections, each run simulated with the threads its "
        "server held), simulated against measured; 95% bootstrap interval over each "
        "interval's runs",
        "gil_handoff_us": f"{gil_runs}, gil_poll_us held at its value (switch_contention "
        "held); 95% bootstrap interval over the runs",
    }
    settled = (
        f"; fitted in turn with gil_neighbour_share until it stayed put "
        f"({rounds} round{'s' if rounds > 1 else ''})"
        if rounds <= GIL_ROUNDS
        else f"; fitted in turn with gil_neighbour_share, still moving after {GIL_ROUNDS} rounds"
    )
    for key, fit in thread_costs.items():
        params[key] = fit.parameter(key, preset, methods[key] + settled)
    params["gil_neighbour_share"] = share.parameter(
        "gil_neighbour_share", preset, NEIGHBOUR_METHOD + settled
    )
    # Two copies' race for the cores last of the GIL's costs: every run the
    # others are fitted on has one process, where it does nothing.
    siblings = fit_sibling_share(results, fitted().with_(**neighbours))
    params["gil_sibling_share"] = siblings.parameter("gil_sibling_share", preset, SIBLING_METHOD)
    batching = fit_batching(results, fitted())
    if batching is not None:
        for key in batching.names:
            params[key] = batching.parameter(
                key, preset=getattr(preset, key), method=BATCHING_METHOD
            )
    peers: dict[str, dict[str, Any]] = dict(_structure(results))
    peer_fits = {}
    for peer, entry in fit_peer_loops(results, fitted()).items():
        peer_fits[peer] = entry.pop("fit")
        peers[peer] = {**peers.get(peer, {}), "costs": entry}
    for peer, records in fit_peer_requests(results, fitted().with_(**neighbours)).items():
        peers.setdefault(peer, {}).setdefault("costs", {}).update(records)
    # The client path last: it is what the model, every other cost in place
    # and the lab's neighbours on the cores, leaves of the light runs' latency.
    path = fit_path(results, fitted().with_(**neighbours))
    for key in path.names:
        params[key] = path.parameter(key, preset=getattr(preset, key), method=PATH_METHOD)
    params.update(fit_fork_split(results, memory, fitted().with_(**neighbours)))
    copies = fit_copies(results, fitted())
    if copies is not None:
        for key in copies.names:
            params[key] = copies.parameter(key, preset=getattr(preset, key), method=COPIES_METHOD)
    # Their spread last, from the same runs' p50 and p99, through the model
    # with every other cost in place.
    spread = fit_spread_through_model(results, fitted().with_(**neighbours))
    params.update(spread_parameters(spread, preset) if spread else _spread_unseen(preset))
    profile = {
        "name": name,
        "base": "cpython",
        "created": utc_stamp(),
        "git_revision": git_revision(),
        "machine": machine(),
        "quick": quick,
        "parameters": params,
        "lab": lab,
        "fits": {
            "cpu": {"rows": cpu.rows, "residuals_us": cpu.residuals},
            "path": {"rows": path.rows, "residuals_us": path.residuals},
            "spread": spread_summary(spread) if spread else None,
            "peer_loops": peer_fits,
        },
        "peers": peers,
        "memory_benchmark": memory,
        "probe_benchmark": probe,
        "gil_wake_benchmark": gil_wake,
        "close_wait_benchmark": close,
        # The median of the runs' machine speeds: what a later session compares with.
        "speed_reference": session_speed([s["kept"].get("speed_reference") for _, s in results]),
        "runs": [_run_record(run, s) for run, s in results],
    }
    cleaned: dict[str, Any] = json_safe(profile)
    return cleaned


def _exit_method(runs: str) -> str:
    return (
        f"Little's law on the {runs}: (measured - simulated mean threads) / served, "
        "simulated with every other cost in place and no exit; the mean over runs, "
        "95% bootstrap interval"
    )


# Who outlives a short connection, and the runs that show it: a forked child
# (its exit) in the loaded fork runs, a thread (the client's close read, its
# end) in the spawn runs.
OUTLIVES = {
    "fork_exit_us": ("fork", "loaded fork runs", "a child is gone when its connection closes"),
    "thread_exit_us": ("spawn", "spawn runs", "a thread is gone with its connection's answer"),
}


def fit_fork_split(
    results: list[tuple[Run, dict[str, Any]]], memory: dict[str, Any], platform: Platform
) -> dict[str, dict[str, Any]]:
    """Where a fork's cost falls (``fork_child_us``), and how long a child and
    a thread outlive their short connection (``fork_exit_us``,
    ``thread_exit_us``).

    The child's part is the fork's whole CPU (``fork_us``, fitted) less the
    parent's os.fork() call, which ``simlab measure memory`` times. An exit
    holds a child or a thread without a core, so it adds served x exit to the
    mean thread count and nothing else (Little's law): each loaded fork (or
    spawn) run whose mean thread count was kept gives one value,
    (measured mean - simulated mean without it) / served. Identified when
    three or more runs give it and their bootstrap interval lies above zero.
    """
    out: dict[str, dict[str, Any]] = {}
    parent = (memory.get("timings") or {}).get("fork_parent_us")
    if parent is None or platform.fork_us <= parent:
        out["fork_child_us"] = {
            "value": 0.0,
            "identified": False,
            "assumption": "not identified: no timing of the parent's os.fork() that is below "
            "fork_us; the whole fork on the accept loop, as in the preset",
        }
    else:
        out["fork_child_us"] = {
            "value": platform.fork_us - parent,
            "identified": True,
            "method": f"fork_us (fitted) less the parent's os.fork() call ({parent:.0f} us, "
            "timed by simlab measure memory: timings.fork_parent_us)",
        }
    split = platform.with_(
        fork_child_us=out["fork_child_us"]["value"], fork_exit_us=0.0, thread_exit_us=0.0
    )
    for key, (role, runs, otherwise) in OUTLIVES.items():
        out[key] = _outlives(results, split, role, runs, otherwise)
    return out


def _outlives(
    results: list[tuple[Run, dict[str, Any]]],
    platform: Platform,
    role: str,
    runs: str,
    otherwise: str,
) -> dict[str, Any]:
    """How long an owner outlives its connection, from the ``role`` runs' mean
    thread counts (``fit_fork_split``)."""
    from simlab.simulation import simulate  # noqa: PLC0415 - heavy, and only here

    exits = []
    for k, (run, s) in enumerate(results):
        mean, served = s["threads"].get("mean"), s.get("throughput_rps")
        if run.role != role or mean is None or not served:
            continue
        sim = simulate(run.target, run.workload, platform, run.arch, duration=run.duration,
                       warmup=run.warmup, seed=k, replications=4).summary  # fmt: skip
        exits.append((mean - sim.threads.mean) / served * 1e6)
    ci = bootstrap_ci(exits) if len(exits) >= 3 else None
    if ci is None or ci[0] <= 0:
        why = (
            f"its bootstrap interval [{ci[0]:.0f}, {ci[1]:.0f}] us reaches zero"
            if ci is not None
            else f"{len(exits)} {runs} with a mean thread count (3 needed)"
        )
        out: dict[str, Any] = {
            "value": 0.0,
            "identified": False,
            "assumption": f"not identified: {why}; {otherwise}",
        }
        if exits:
            out["estimate"] = float(np.mean(exits))
        return out
    return {
        "value": float(np.mean(exits)),
        "ci95": ci,
        "identified": True,
        "method": _exit_method(runs),
        "runs_us": exits,
    }


def _memory_parameters(
    params: dict[str, Any],
    results: list[tuple[Run, dict[str, Any]]],
    memory: dict[str, Any],
    preset: Platform,
) -> None:
    """User and kernel memory per unit, fitted where the runs identify them, and
    the micro-benchmark's measured values for what the runs cannot separate."""
    relative = "soft-L1 least squares on relative error over the runs, 95% bootstrap interval"
    units = memory["per_unit_kib"]
    method = memory.get("kernel_method", "cgroup")
    user = fit_memory(results, "user")
    kernel = fit_memory(results, "kernel")
    if user is not None:
        for unit, key in (
            ("process", "process_kib"),
            ("thread", "thread_kib"),
            ("connection", "connection_kib"),
            ("backend_conn", "backend_conn_kib"),
            ("touched", "fork_touched_kib"),
        ):
            params[key] = user.parameter(unit, preset=getattr(preset, key), method=relative)
        fork = user.parameter("fork", preset=preset.fork_kib - preset.thread_kib, method=relative)
        thread = params["thread_kib"]["value"]
        params["fork_kib"] = {**fork, "value": fork["value"] + thread,
                              "note": "a fork beyond its thread, plus thread_kib"}  # fmt: skip
        if "ci95" in fork:
            params["fork_kib"]["ci95"] = [x + thread for x in fork["ci95"]]
    if kernel is not None:
        params["process_kernel_kib"] = kernel.parameter(
            "process", preset=preset.process_kernel_kib, method=relative
        )
    bench = f"simlab measure memory (slope between two sizes; kernel: {method})"
    params["thread_kernel_kib"] = _measured(max(0.0, units["thread"]["kernel"]), bench)
    # Records from before the cgroup method took the machine's growth, client
    # ends included: half of it is the server's end.
    ends = 2.0 if "kernel_method" not in memory else 1.0
    params["connection_kernel_kib"] = _measured(
        max(0.0, units["connection"]["kernel"] / ends), bench
    )
    params["fork_kernel_kib"] = _measured(
        max(units["fork"]["kernel"], units["thread"]["kernel"]), bench
    )
    held_kernel = preset.with_(
        **{k: params[k]["value"] for k in KERNEL_KEYS if k in params and "value" in params[k]}
    )
    child = fit_child_kernel(results, held_kernel)
    law = fork_law_parameters(memory.get("fork_law"), child, params, preset)
    if law:
        params.update(law)
    elif child is not None:
        params["child_kernel_kib"] = child.parameter(
            "child_kernel_kib", preset=preset.child_kernel_kib, method=CHILD_METHOD
        )
    params["stack_kib"] = _measured(units["thread"]["vms"], bench)
    params["task_kib"] = _measured(max(0.0, units["coroutine"]["uss"]), bench)
    held = preset.with_(**{k: v["value"] for k, v in params.items() if k in MEMORY_KEYS})
    forks = fit_forks(results, held)
    if forks is not None:
        for key in forks.names:
            params[key] = forks.parameter(key, preset=getattr(preset, key), method=FORKS_METHOD)


# The user-memory parameters ``fit_forks`` holds at their fitted values.
MEMORY_KEYS = ("process_kib", "thread_kib", "connection_kib", "backend_conn_kib", "fork_kib")
FORKS_METHOD = (
    "soft-L1 least squares on relative error over the process-per-connection runs "
    "(the other units held at their fitted values), 95% bootstrap interval"
)


def _forking_runs(
    results: list[tuple[Run, dict[str, Any]]], key: str
) -> Iterator[tuple[Run, float, list[float]]]:
    """simlab's own forking servers' runs (a process per connection) that
    measured memory ``key`` (MiB): each with that memory in KiB and its units
    (``memory_units``)."""
    for run, s in results:
        if run.target in PEERS or run.role not in ("cpu", "memory"):
            continue
        if not get_model(run.target).own_process:
            continue
        mem = s["kept"].get(key)
        if mem is None or s["threads"]["peak"] is None:
            continue
        yield run, mem * 1024, memory_units(run, s)


# The kernel-memory parameters ``fit_child_kernel`` holds at their values.
KERNEL_KEYS = (
    "process_kernel_kib",
    "thread_kernel_kib",
    "connection_kernel_kib",
    "fork_kernel_kib",
)
CHILD_METHOD = (
    "soft-L1 least squares on relative error over the process-per-connection runs' "
    "kernel memory (the server, its other threads and the connections held at their "
    "values), 95% bootstrap interval"
)


def fit_child_kernel(results: list[tuple[Run, dict[str, Any]]], platform: Platform) -> Fit | None:
    """The kernel memory of a child forked per connection (``child_kernel_kib``),
    from the process-per-connection runs: what is left of each run's kernel
    memory once the server process, its threads other than the children's,
    the client connections and the backend connections are priced, per child.

    The memory micro-benchmark's forks (``fork_kernel_kib``) are copies of its
    own, larger parent, whose page tables the kernel copies; a small server's
    children can hold less. None when there are too few runs."""
    rows, ys = [], []
    for _, y, units in _forking_runs(results, "kernel_peak_mib"):
        process, threads, conns, forks, backend, _ = units
        if forks <= 0:
            continue
        known = (
            process * platform.process_kernel_kib
            + max(0.0, threads - forks) * platform.thread_kernel_kib
            + (conns + backend) * platform.connection_kernel_kib
        )
        rows.append([forks / y])
        ys.append((y - known) / y)
    if len(rows) < 3:
        return None
    return fit_robust(np.array(rows), np.array(ys), ("child_kernel_kib",))


LAW_METHOD = (
    "measured: forks from parents of several sizes (simlab.real.forklaw) with "
    "soft-L1 least squares of kernel KiB per fork on the parent's PSS, 95% bootstrap interval"
)
INTERCEPT_METHOD = (
    "the server's own children per connection (fit_child_kernel) less the fork law's "
    "page tables at process_kib; interval from both intervals' ends"
)


def fork_law_parameters(
    record: dict[str, Any] | None,
    child: Fit | None,
    params: dict[str, Any],
    preset: Platform,
) -> dict[str, Any]:
    """``fork_kernel_per_mib`` and the law's intercept ``fork_kernel_kib``, or
    nothing when the memory record has no fork law or its slope is not identified.

    The slope comes from the benchmark's forks (parents of several sizes).
    The intercept is what the server's own children measured
    (``fit_child_kernel``) less the slope times the server's size
    (``process_kib``): a server maps more regions than the benchmark's bare
    parent of the same size, so its forks cost more at any size; the
    benchmark's own intercept is kept beside it. Pre-forked copies and
    children per connection are both forks of the server process, so one
    law prices both (``child_kernel_kib`` stays 0). Without server children
    the benchmark's intercept is used, and labelled."""
    if not record:
        return {}
    from simlab.real.forklaw import fit_fork_law  # noqa: PLC0415

    law = fit_fork_law(record["points"])
    if not law.is_identified("fork_kernel_per_mib"):
        return {}
    out: dict[str, Any] = {
        "fork_kernel_per_mib": law.parameter(
            "fork_kernel_per_mib", preset=preset.fork_kernel_per_mib, method=LAW_METHOD
        )
    }
    bench = law.parameter("fork_kernel_kib", preset=preset.fork_kernel_kib, method=LAW_METHOD)
    slope, (s_lo, s_hi) = law.value("fork_kernel_per_mib"), out["fork_kernel_per_mib"]["ci95"]
    proc_mib = params.get("process_kib", {}).get("value", preset.process_kib) / 1024.0
    if child is None or not child.is_identified("child_kernel_kib"):
        out["fork_kernel_kib"] = {**bench, "note": "the benchmark's intercept (no server children)"}
        return out
    c = child.value("child_kernel_kib")
    c_lo, c_hi = child.ci95[0]
    out["fork_kernel_kib"] = {
        "value": c - slope * proc_mib,
        "ci95": [c_lo - s_hi * proc_mib, c_hi - s_lo * proc_mib],
        "identified": True,
        "method": INTERCEPT_METHOD,
        "benchmark_intercept": bench,
        "child_kernel_kib": c,
    }
    return out


def fit_forks(results: list[tuple[Run, dict[str, Any]]], platform: Platform) -> Fit | None:
    """Copy-on-write of a child per connection, from the process-per-connection
    runs: what is left of each run's user memory once the units ``platform``
    already prices (the server, its threads, connections, forks and backend
    connections) are taken off, fitted as ``fork_touched_kib`` per child that
    has served plus ``fork_call_kib`` per child that has made a backend call.

    The joint fit over every server cannot separate a served child's growth
    from its fork (every served child is both); these runs can, because some
    hold children that never served (400 connections at 20/s) and some make
    no calls. Only children alive at the peak count. None when there are too
    few runs."""
    rows, ys = [], []
    costs = (
        platform.process_kib,
        platform.thread_kib,
        platform.connection_kib,
        platform.fork_kib - platform.thread_kib,
        platform.backend_conn_kib,
    )
    for run, y, units in _forking_runs(results, "pss_peak_mib"):
        known = sum(n * kib for n, kib in zip(units[:5], costs, strict=True))
        served = min(units[5], units[3])  # a child that has exited holds nothing
        called = served if run.workload.calls > 0 else 0.0
        rows.append([served / y, called / y])
        ys.append((y - known) / y)
    if len(rows) < 4:
        return None
    return fit_robust(np.array(rows), np.array(ys), ("fork_touched_kib", "fork_call_kib"))


COPIES_METHOD = (
    "soft-L1 least squares over the copies runs' pairs (the same load at 1 and 2 "
    "processes, with and without a backend call): the measured user memory's difference "
    "less the model's (copy_kib and copy_call_kib 0), per copy; 95% bootstrap interval "
    "over the pairs"
)


def fit_copies(results: list[tuple[Run, dict[str, Any]]], platform: Platform) -> Fit | None:
    """A pre-forked copy's own growth (``copy_kib``) and its further growth from
    its first backend call (``copy_call_kib``), from the copies runs: each load
    measured at 1 process and at 2 (a master and two copies), with and
    without a call.

    The model's other units are held at ``platform`` (both 0): each run is
    simulated as it ran and its user memory peak set against the measured
    one. A pair's two runs share the server and the load, so what the model
    misses of both (its one process's size for that server, its first call's
    cost in one process) drops out of their difference; what is left is the
    copies' own, over the copies the second run held, and with a call that
    call's too. None when fewer than two pairs were measured."""
    from simlab.simulation import simulate  # noqa: PLC0415 - heavy, and only here

    held = platform.with_(copy_kib=0.0, copy_call_kib=0.0)
    gaps: dict[tuple[str, str, int, int], dict[int, list[float]]] = {}
    for k, (run, s) in enumerate(results):
        mem = s["kept"].get("pss_peak_mib")
        if run.role != "copies" or mem is None:
            continue
        predicted = simulate(
            run.target, run.workload, run.platform(held), run.arch,
            duration=run.duration, warmup=run.warmup, replications=1, seed=k + 1,
        ).summary.memory_mib.user_peak  # fmt: skip
        key = (run.target, repr(run.workload), run.arch.workers, run.workload.calls)
        gaps.setdefault(key, {}).setdefault(run.arch.processes, []).append((mem - predicted) * 1024)
    rows, ys = [], []
    for (*_, calls), pair in gaps.items():
        if 1 not in pair or len(pair) < 2:
            continue
        one = float(np.mean(pair[1]))
        for processes, gap in pair.items():
            if processes == 1:
                continue
            # The model's copies are the P processes a master forks.
            measured = float(np.mean(gap)) - one
            rows.append([float(processes), float(processes) if calls else 0.0])
            ys.append(measured)
    if len(rows) < 2:
        return None
    return fit_robust(np.array(rows), np.array(ys), ("copy_kib", "copy_call_kib"))


CLIENT_MEDIAN = "median over the open runs of the load generator's CPU a request (95% bootstrap)"
CLIENT_LINE = (
    "soft-L1 least squares of the open runs' load generator CPU a second against their "
    "offered rate: a second's part (the intercept) and a request's (the slope), 95% bootstrap"
)


def client_line(runs: list[tuple[Run, dict[str, Any]]]) -> Fit | None:
    """The open loop's CPU a second (µs) as a second's part plus a request's
    times its offered rate, fitted over ``runs`` (those that measured it);
    None with fewer than four such runs or two rates among them. Paced by the timer its CPU a
    request fell with the rate: a part of it is the second's (its timers,
    its loop's turns), which a median a request overstates for a busy run."""
    rates, per_s = [], []
    for run, s in runs:
        us = s["kept"].get("client_us")
        rate = run.workload.rate
        if us is None or not rate or not math.isfinite(us):
            continue
        rates.append(float(rate))
        per_s.append(float(us) * float(rate))
    if len(set(rates)) < 2 or len(rates) < 4:
        return None
    x = np.column_stack([np.ones(len(rates)), rates])
    return fit_robust(x, np.array(per_s), ("client_cpu_us_per_s", "client_cpu_us"))


def _lab(
    results: list[tuple[Run, dict[str, Any]]], probe: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The load generator's CPU per request and the backend's per call, as they
    ran beside the server in the open-loop runs, and the load generator's in
    the closed-loop runs (a closed loop sends as it reads, a third of the
    open loop's CPU a request on 2 December): medians with intervals; and
    the probe's CPU per sample, from its benchmark (``measure_probe_cost``).

    The open loop's is a line where its runs identify one
    (``client_line``): a second's CPU and a request's; else their median
    a request, the second's part labelled not identified."""
    open_runs = [(run, s) for run, s in results if run.role == "cpu"]
    client, ci_c = median_with_ci([s["kept"]["client_us"] for _, s in open_runs])
    line = client_line(open_runs)
    closed, ci_k = median_with_ci(
        [
            s["kept"]["client_us"]
            for run, s in results
            if run.workload.rate is None and s["kept"].get("client_us") is not None
        ]
    )
    backend, ci_b = median_with_ci([s["kept"]["backend_us"] for _, s in open_runs])
    per_request: dict[str, Any] = {"value": client, "ci95": ci_c, "method": CLIENT_MEDIAN}
    per_second: dict[str, Any] = {
        "value": 0.0,
        "identified": False,
        "assumption": "not identified: the open runs' CPU a second against their rate "
        "does not bound a second's part away from zero (or too few rates); none charged",
    }
    if line is not None and line.is_identified("client_cpu_us_per_s"):
        per_second = line.parameter("client_cpu_us_per_s", preset=0.0, method=CLIENT_LINE)
        per_request = line.parameter("client_cpu_us", preset=client, method=CLIENT_LINE)
    lab: dict[str, Any] = {
        "client_cpu_us": per_request,
        "client_cpu_us_per_s": per_second,
        # None where no closed loop measured it: the model then charges the open loop's.
        "client_closed_cpu_us": {"value": closed if math.isfinite(closed) else None, "ci95": ci_k},
        "backend_cpu_us": {"value": backend, "ci95": ci_b},
        "note": "the lab's own processes on the server's cores; validation adds them",
    }
    if probe is not None:
        lab["probe_us"] = {"value": probe["sample_us"], "method": probe["method"]}
        lab["probe_process_us"] = {"value": probe["process_us"], "method": probe["method"]}
    return lab
