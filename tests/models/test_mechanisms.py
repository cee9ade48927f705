"""The mechanisms behind the validation's worst misses, each tested both ways on
committed held-out cases (issue 12, part 5).

The full validation whose runs were measured on 2 December 2026 (33 cases,
every one run 3 times for real; its rows as committed in
``data/validation/cpython`` until 4 December, kept in
``tests/data/mechanisms_validation_2026-12-02.json`` with the keys read
here), read as sets of its cases. The runs are pinned: a mechanism is shown
on the runs it was designed and checked on, and a later session's runs,
committed to ``data/validation``, do not silently change what these tests
assert. On the 4 December session's runs 12 of these checks come out
otherwise (docs/calibration.md, "The 4 December session"). The sets:

- ``quick``: the quick grid's 8 cases (every model);
- ``threads``: 6 cases where threads meet CPU load (the threaded servers at
  GIL loads of 0.4 to 1.0, gunicorn's gthread);
- ``loops``: uvicorn's 3 cases, one saturated (one loop at about 1.1),
  and simlab async's saturated one loop;
- ``cores``: 4 cases whose servers can use both cores (many processes: a
  child per connection, two loops, uvicorn's workers), where what else
  runs on the cores sets the capacity;
- ``accept``: the 2 cases of pre-forked copies that accept a short
  connection only while free (iterative P=2, gunicorn's sync workers);
- ``short``: thread-per-connection's short connections (one request a
  connection, a thread for each; process-per-connection's are in ``forks``);
- ``holders``: short connections on simlab's own fixed sets of threads
  (thread-pool, iterative);
- ``passes``: simlab async's and uvicorn's loops with backend calls, below
  saturation and at it (async N=500 380/s).

For each mechanism both are simulated again, as ``simlab validate`` does
(8 replications of each case, the same seeds), on the profile pinned with
the runs (``PROFILE``):
once as it is, once with the mechanism off. Both ways:

- on the cases it targets, the error against the measured mean is lower
  with it, by more than the measured runs' noise (their bootstrap
  interval), or, where that noise is too wide to show anything, in every
  one of the paired replications (a sign test);
- on every other metric that counts as evidence, it is not higher by more
  than the noise: the measured interval and both simulations' intervals.

A test takes seconds: the cases' runs are short.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from simlab import validate
from simlab.models.iterative import Iterative
from simlab.params import Architecture, Platform
from simlab.platforms import platform_from_profile
from simlab.real.grids import Case, held_out

REPO = Path(__file__).resolve().parents[2]
# The profile they were checked with (data/profiles/cpython.json as refitted
# on 3 December from the 2 December calibration runs): pinned with the runs,
# so that a new calibration does not change what these tests assert either;
# ``SIMLAB_MECHANISMS_PROFILE`` names another (data/profiles/cpython.json:
# the latest).
PROFILE = Path(
    os.environ.get("SIMLAB_MECHANISMS_PROFILE")
    or REPO / "tests" / "data" / "mechanisms_profile_2026-12-03.json"
)
# The runs the mechanisms are shown on (see the module's docstring);
# ``SIMLAB_MECHANISMS_RUNS`` names another full validation's validation.json
# to check them on (data/validation/cpython/validation.json: the latest).
PINNED = Path(
    os.environ.get("SIMLAB_MECHANISMS_RUNS")
    or REPO / "tests" / "data" / "mechanisms_validation_2026-12-02.json"
)
Key = tuple[str, str, str]  # (target, config, metric)
METRICS = (
    "throughput_rps",
    "latency_p50",
    "latency_p99",
    "memory_user",
    "memory_kernel",
    "threads_peak",
)


def _configs(quick: bool) -> frozenset[tuple[str, str]]:
    return frozenset((c.target, c.config()) for c in held_out(quick=quick))


DATASETS = {
    "quick": _configs(quick=True),
    "threads": frozenset(
        {
            ("gunicorn-gthread", "N=200 150/s cpu=1ms 1x15ms seq W=8 P=1"),
            ("gunicorn-gthread", "N=60 100/s cpu=1ms 1x20ms seq W=6 P=2"),
            ("reactor-pool", "N=400 450/s cpu=1.5ms 1x5ms seq W=16 P=1"),
            ("thread-per-connection", "N=300 420/s cpu=1.8ms 1x5ms seq W=32 P=1"),
            ("thread-per-connection", "N=400 250/s cpu=2ms 2x10ms seq W=32 P=1"),
            ("thread-pool", "N=24 300/s cpu=1ms 2x10ms seq W=20 P=2"),
        }
    ),
    # process-per-connection: a child per short connection, and every
    # persistent case (the saturated one included).
    "forks": frozenset(
        (c.target, c.config())
        for c in held_out(quick=False)
        if c.target == "process-per-connection"
    ),
    # Every uvicorn case (its saturated one: one loop at about 1.1, where the
    # served rate is the loop's own cost per request; its light ones), and
    # its twin's, simlab async's, saturated one loop.
    "loops": frozenset(
        (c.target, c.config())
        for c in held_out(quick=False)
        if c.target == "uvicorn"
        or (c.target, c.workload.rate, c.workload.calls) == ("async", 500.0, 0)
    ),
    # simlab async's and uvicorn's loops below saturation with backend calls:
    # where a reply waits for passes of other requests' CPU.
    "passes": frozenset(
        {
            ("async", "N=3000 300/s cpu=1.5ms 2x30ms par W=32 P=1"),
            ("async", "N=8000 500/s cpu=1ms 1x40ms seq W=32 P=1"),
            ("async", "N=1000 350/s cpu=2ms 3x10ms seq W=32 P=2"),
            ("async", "N=500 380/s cpu=2.4ms 1x5ms seq W=32 P=1"),
            ("uvicorn", "N=300 120/s cpu=1ms 1x20ms seq W=32 P=2"),
            ("uvicorn", "N=1000 300/s cpu=1ms 2x10ms par W=32 P=1"),
        }
    ),
    "cores": frozenset(
        {
            ("process-per-connection", "N=200 700/s cpu=2ms no calls W=32 P=1"),
            ("process-per-connection", "N=300 150/s cpu=2ms 1x10ms seq W=32 P=1"),
            ("async", "N=1000 900/s cpu=2ms no calls W=32 P=2"),
            ("uvicorn", "N=300 120/s cpu=1ms 1x20ms seq W=32 P=2"),
            ("iterative", "N=2 30/s cpu=1ms 1x5ms seq W=32 P=2 k=1"),
        }
    ),
    "accept": frozenset(
        {
            ("iterative", "N=2 30/s cpu=1ms 1x5ms seq W=32 P=2 k=1"),
            ("gunicorn-sync", "N=4 60/s cpu=1ms 1x15ms seq W=1 P=4 k=1"),
        }
    ),
    "short": frozenset(
        (c.target, c.config())
        for c in held_out(quick=False)
        if c.target == "thread-per-connection" and c.workload.requests_per_connection is not None
    ),
    # Short connections on simlab's own fixed sets of threads (a pool, an
    # iterative server; gunicorn's sync workers, which close their connections
    # themselves, are in ``accept``).
    "holders": frozenset(
        (c.target, c.config())
        for c in held_out(quick=False)
        if c.target in ("thread-pool", "iterative")
        and c.workload.requests_per_connection is not None
    ),
}


@dataclass(frozen=True)
class Row:
    """One committed evidence row: the measured mean and its interval's half-width."""

    target: str
    config: str
    metric: str
    measured: float
    half: float


@cache
def _profile() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(PROFILE.read_text())
    return data


@cache
def _saved() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(PINNED.read_text())
    return data


def _runs(
    case: Case, k: int
) -> tuple[list[int], list[list[int] | None] | None, list[list[int] | None] | None]:
    """The seeds of the committed validation's real runs of ``case`` (the
    ``k``-th of the grid), and gthread's measured accept splits and deals if
    it kept them: what ``simlab validate`` predicts each run from."""
    saved = _saved()
    row = next(
        r for r in saved["rows"] if (r["model"], r["config"]) == (case.target, case.config())
    )
    seeds = row.get("run_seeds") or [
        validate.run_seed(int(saved["seed"]), k, r) for r in range(int(saved["repeats"]))
    ]
    return [int(s) for s in seeds], row.get("accept_split_runs"), row.get("accept_map_runs")


@cache
def _committed(dataset: str) -> tuple[dict[Key, Row], int, tuple[tuple[int, Case], ...]]:
    """The dataset's evidence rows, the validation's seed, and its cases, each
    with its place in the full grid (which seeds its simulation)."""
    wanted = DATASETS[dataset]
    saved = _saved()
    assert not saved["quick"]
    rows = {}
    for r in saved["rows"]:
        if not r["evidence"] or not r["measured"] or (r["model"], r["config"]) not in wanted:
            continue
        ci = r["measured_ci95"] or [r["measured"], r["measured"]]
        key = (r["model"], r["config"], r["metric"])
        rows[key] = Row(*key, r["measured"], (ci[1] - ci[0]) / 2)
    cases = tuple(
        (k, c) for k, c in enumerate(held_out(quick=False)) if (c.target, c.config()) in wanted
    )
    assert len(cases) == len(wanted)
    return rows, int(saved["seed"]), cases


# Parameters the pinned profile predates whose preset is no longer off: held
# off, as the model was when the profile was fitted (``Mechanism.on`` turns
# one on).
PREDATED = {"gil_neighbour_share": 0.0}


def _platform() -> Platform:
    profile = _profile()
    platform = platform_from_profile(profile, source=str(PROFILE))
    predated = {k: v for k, v in PREDATED.items() if k not in profile["parameters"]}
    return validate.lab_platform(platform.with_(**predated), profile)


@contextmanager
def _as_built(designed: bool) -> Iterator[None]:
    """Simulate peers with their own design's knobs (``as_designed``), or without."""
    if designed:
        yield
    else:
        with mock.patch.object(validate, "as_designed", lambda _name, arch: arch):
            yield


@contextmanager
def _dealt_accepts() -> Iterator[None]:
    """Pre-forked copies as the model had them before they shared a listen
    queue: every new connection dealt to a copy, free or not, and gunicorn's
    sync workers simulated as ``thread-pool`` with one worker per copy."""
    with (
        mock.patch.object(Iterative, "accepts_when_free", False),
        mock.patch.dict(validate.RESEMBLES, {"gunicorn-sync": "thread-pool"}),
    ):
        yield


@contextmanager
def _dealt_gthread() -> Iterator[None]:
    """gthread's copies dealt their connections at random, each about N/P,
    instead of racing for them."""
    designed = validate.as_designed

    def dealt(name: str, arch: Architecture) -> Architecture:
        return replace(designed(name, arch), accept="dealt")

    with mock.patch.object(validate, "as_designed", dealt):
        yield


# Mechanisms that are the model's own code, not a platform parameter: how to
# switch each off.
UNPATCHED = {
    "a shared listen queue for copies that accept only while free": _dealt_accepts,
    "gthread's copies racing for the connections that open together": _dealt_gthread,
}


def _with_peer_costs(
    profile: dict[str, Any], costs: tuple[tuple[str, str, float], ...]
) -> dict[str, Any]:
    """``profile`` with each (peer, cost, value) among that peer's own costs."""
    if not costs:
        return profile
    peers = {name: dict(entry) for name, entry in profile.get("peers", {}).items()}
    for peer, key, value in costs:
        entry = peers.setdefault(peer, {})
        entry["costs"] = {**entry.get("costs", {}), key: {"value": value}}
    return {**profile, "peers": peers}


def _predict(
    dataset: str,
    changes: tuple[tuple[str, float], ...],
    designed: bool = True,
    own_costs: bool = True,
    without: str | None = None,
    peer_costs: tuple[tuple[str, str, float], ...] = (),
) -> dict[Key, tuple[float, float]]:
    """``_predicted``, its arguments always passed the same way: a cache keys
    a call by how its arguments were passed, so that a keyword here and a
    default there would simulate a whole dataset twice."""
    return _predicted(dataset, changes, designed, own_costs, without, peer_costs)


@cache
def _predicted(
    dataset: str,
    changes: tuple[tuple[str, float], ...],
    designed: bool,
    own_costs: bool,
    without: str | None,
    peer_costs: tuple[tuple[str, str, float], ...],
) -> dict[Key, tuple[float, float]]:
    """Every case of ``dataset`` predicted as ``simlab validate`` does, on the
    pinned profile with ``changes`` (a peer's own costs as calibrated, under
    the changes, unless ``own_costs`` is False; the model's mechanism
    ``without`` switched off; ``peer_costs``, (peer, cost, value), among its
    own costs): (value, CI half-width) per row."""
    profile = _with_peer_costs(_profile(), peer_costs)
    _, seed, cases = _committed(dataset)
    out = {}
    with _as_built(designed), UNPATCHED[without]() if without else nullcontext():
        for k, case in cases:
            own = validate.case_platform(case, _platform(), profile if own_costs else {})
            platform = own.with_(**dict(changes))
            # As simlab validate predicts: each real run from its own arrivals.
            seeds, splits, maps = _runs(case, k)
            pred = validate.predict_case(case, platform, profile, seed + k, seeds, splits, maps)
            predicted = pred.predicted
            for metric in METRICS:
                p = predicted[metric]
                if p.value is not None:
                    half = (p.ci[1] - p.ci[0]) / 2 if p.ci else 0.0
                    out[(case.target, case.config(), metric)] = (p.value, half)
    return out


@dataclass(frozen=True)
class Mechanism:
    name: str
    off: dict[str, float]  # the platform parameters that switch it off
    # (dataset, target, config prefix, metric): the gain must beat the measured noise
    targets: tuple[tuple[str, str, str, str], ...]
    # (dataset, target, config prefix): the measured noise is too wide; the
    # gain must hold in every paired replication (latency and throughput)
    paired: tuple[tuple[str, str, str], ...] = ()
    designed: bool = True  # False: off means the peers lose their design's knobs
    own_costs: bool = True  # False: off means the peers lose their own fitted costs
    metrics: tuple[str, ...] = field(default=("latency_p50", "latency_p99"))
    # The platform parameters that switch it on where the pinned profile
    # predates it (it holds them off: at their presets' 0, or at ``PREDATED``'s
    # where the preset is on now): fitted later, from the committed profile
    # (``_since_pinned``), or an assumption of the preset.
    on: dict[str, float] = field(default_factory=dict)
    # A peer's own costs that switch it on, likewise: (peer, cost, value).
    on_peers: tuple[tuple[str, str, float], ...] = ()

    @property
    def on_changes(self) -> tuple[tuple[str, float], ...]:
        """``on`` as ``_predict`` takes its changes."""
        return tuple(sorted(self.on.items()))

    @property
    def unpatched(self) -> str | None:
        """The name to switch a mechanism of the model's code off by (``UNPATCHED``)."""
        return self.name if self.name in UNPATCHED else None


# The profile a parameter fitted after the pinned one is read from.
COMMITTED_PROFILE = REPO / "data" / "profiles" / "cpython.json"
# Those parameters (``Mechanism.on``), checked identified there by a test of their own.
SINCE_PINNED = ("copy_kib", "copy_call_kib")


@cache
def _latest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(COMMITTED_PROFILE.read_text())
    return data


def _since_pinned(*keys: str) -> dict[str, float]:
    """Parameters fitted after the pinned profile, as the committed profile
    fits them (0, the mechanism off, for one it lacks: its tests then fail)."""
    params = _latest()["parameters"]
    return {key: float(params.get(key, {}).get("value", 0.0)) for key in keys}


def _peer_since_pinned(peer: str, key: str) -> tuple[tuple[str, str, float], ...]:
    """A peer's own cost fitted after the pinned profile, as the committed
    profile fits it (none where it lacks one: the mechanism's tests then fail)."""
    record = _latest()["peers"].get(peer, {}).get("costs", {}).get(key)
    return ((peer, key, float(record["value"])),) if record else ()


# Peers' own costs fitted after the pinned profile (``Mechanism.on_peers``).
PEER_SINCE_PINNED = (("gunicorn-sync", "parse_us"),)


def test_the_parameters_since_the_pinned_profile_are_identified() -> None:
    # A mechanism switched on by a later fit is shown only if that fit found it.
    profile = _latest()
    params = profile["parameters"]
    for key in SINCE_PINNED:
        assert params[key]["identified"] and params[key]["ci95"][0] > 0, key
    for peer, key in PEER_SINCE_PINNED:
        record = profile["peers"][peer]["costs"][key]
        assert record["identified"] and record["ci95"][0] > params[key]["value"], (peer, key)


def _flat_forks() -> dict[str, float]:
    """The fixed fork costs before the fork law, from the pinned profile."""
    profile = _profile()
    intercept = profile["parameters"]["fork_kernel_kib"]
    return {
        "fork_kernel_per_mib": 0.0,
        "fork_kernel_kib": profile["memory_benchmark"]["per_unit_kib"]["fork"]["kernel"],
        "child_kernel_kib": intercept["child_kernel_kib"],
    }


def _by_quantiles() -> dict[str, float]:
    """The overheads' spread as calibration fitted it before the fit through
    the model (``calibrate.fit_spread``: a lognormal to each light run's
    service or queue-delay p50 and p99 less a mean overhead, the median over
    runs), from the pinned profile's own runs and costs."""
    from simlab import calibrate  # noqa: PLC0415 - only this mechanism needs it

    profile = _profile()
    results = [calibrate._from_record(r) for r in profile["runs"]]
    # The fit's own estimates, as calibration passed them (a cost the runs do
    # not identify keeps its estimate beside the preset's value).
    params = profile["parameters"]
    costs = {k: float(params[k].get("estimate", params[k]["value"])) for k in calibrate.CPU_COSTS}
    return calibrate.fit_spread(results, costs)


# The saturated async case measures what a core of a shared machine gives one
# loop: the committed session (07:25) served 374 req/s; a session at 10:05,
# with other real experiments on the machine, served 334 (not committed). The
# gain below is against the committed session's runs.
QUICK_ASYNC = ("quick", "async", "N=500 500/s")
MECHANISMS = [
    Mechanism(
        # A pool's thread (an iterative server's only one) reads the client's
        # close after a short connection's answer before it takes the next
        # (``close_wait_us``, measured in the server); off, it is free at the
        # answer. Its gain is under the measured runs' noise (iterative at
        # rho 0.96): paired.
        "a thread waits for its short connection's close",
        {"close_wait_us": 0.0},
        (),
        paired=(
            ("holders", "iterative", "N=100 90/s"),
            ("holders", "thread-pool", "N=10000 80/s"),
        ),
        metrics=("latency_p50", "latency_p99"),
    ),
    Mechanism(
        # A thread made for a short connection lives on after its answer until
        # the client's close is read (``thread_exit_us``, fitted from the spawn
        # runs' mean thread counts); off, it is gone with its answer.
        "a thread outlives its short connection",
        {"thread_exit_us": 0.0},
        (("short", "thread-per-connection", "N=9000 100/s", "threads_peak"),),
    ),
    Mechanism(
        "event-loop batching",
        {"loop_event_us": 0.0, "loop_wake_us": 0.0},
        tuple((*QUICK_ASYNC, m) for m in ("throughput_rps", "latency_p50", "latency_p99")),
        paired=(QUICK_ASYNC,),
        metrics=("throughput_rps", "latency_p50", "latency_p99"),
    ),
    Mechanism(
        "copy-on-write of a child per connection",
        {"fork_touched_kib": 0.0, "fork_call_kib": 0.0},
        (("quick", "process-per-connection", "N=120 80/s", "memory_user"),),
    ),
    Mechanism(
        # The fork's CPU split: only the parent's os.fork() on the accept loop,
        # the rest on the child's own core (``fork_child_us``), and persistent
        # connections' children forked as the run starts; off, the whole fork
        # is the accept loop's and persistent children are there at once.
        "a fork's cost split between parent and child",
        {"fork_child_us": 0.0},
        (
            ("forks", "process-per-connection", "N=10000 60/s", "threads_peak"),
            ("forks", "process-per-connection", "N=10000 60/s", "latency_p50"),
            # Persistent children forked as the run starts, under load. Its
            # p50 was not a target: on the previous session's runs it moved
            # towards (74.6% -> 60.0%) by less than their noise (21%).
            ("forks", "process-per-connection", "N=200 700/s", "latency_p99"),
        ),
        metrics=("latency_p50", "latency_p99", "threads_peak"),
    ),
    Mechanism(
        "the GIL's hand-off out of order",
        {"gil_fifo_share": 1.0},
        (),
        paired=(
            ("threads", "thread-per-connection", "N=400 250/s"),
            ("threads", "thread-per-connection", "N=300 420/s"),
        ),
    ),
    Mechanism(
        # CPython's forced switch, timed from the waiter's wait (``Cpu._drop_at``):
        # only a phase longer than 5 ms is cut, which none of these cases'
        # fixed CPU is; the exponential ones have a few. Nothing may get worse.
        "the GIL's switch interval",
        {"gil_interval_us": 0.0},
        (),
    ),
    Mechanism(
        # A GIL hand-off made while a lab neighbour (the load generator, the
        # backend, the probe) holds a core waits, the GIL idle, until that
        # neighbour blocks, and then runs on its core
        # (``gil_neighbour_share``, 1 in cpython's preset: an assumption, the
        # calibration's runs beside the load generator asking for all of it).
        # The pinned profile predates it (``PREDATED``). Its targets: the
        # threaded servers at and near their GIL's capacity.
        "a GIL hand-off beside the lab's neighbours waits until it blocks",
        {"gil_neighbour_share": 0.0},
        (
            ("threads", "thread-per-connection", "N=300 420/s", "throughput_rps"),
            ("threads", "thread-per-connection", "N=300 420/s", "latency_p50"),
            ("threads", "thread-per-connection", "N=300 420/s", "latency_p99"),
            ("threads", "thread-per-connection", "N=400 250/s", "latency_p50"),
            ("threads", "reactor-pool", "N=400 450/s", "latency_p50"),
        ),
        on={"gil_neighbour_share": 1.0},
    ),
    # The GIL's waiters' wake-ups taking their holder's time (``gil_poll_us``)
    # are not here: the committed calibration does not identify them (0, its
    # interval [0, 0]) once the waiters' own CPU below is measured, so they are
    # off, and turning them off would test nothing (16:33, 2 December; at
    # 14:39, fitted at 1.5 us, they moved their target by under 0.1%).
    Mechanism(
        # The same wake-ups' own CPU (``gil_wake_us``, measured by
        # ``simlab.real.gil_wake``): on a free core beside the holder, but
        # with the cores full (the load generator, the backend and the probe
        # beside the server) on the holder's. Its target: the collapse of 300
        # threads near saturation at a 5 ms switch interval and not at 50,
        # which at its measured cost it does not reproduce (NOT_SHOWN).
        "the GIL's waiters' CPU on the cores",
        {"gil_wake_us": 0.0},
        (("threads", "thread-per-connection", "N=300 420/s", "throughput_rps"),),
        metrics=("throughput_rps", "latency_p50", "latency_p99"),
    ),
    Mechanism(
        # The probe in ``simlab measure`` reads /proc for every process of the
        # server's tree ten times a second, on the same cores: about 2 ms a
        # sample plus 0.15 ms a process (``simlab.real.probe_cost``), taken in
        # the kernel's slices, so beside saturated children it gets its share.
        # The gains are smaller than the measured runs' spread: paired.
        "the lab's probe on the cores",
        {"probe_us": 0.0, "probe_process_us": 0.0},
        (),
        # With the fork split on, process-per-connection 700/s did not show it
        # on the previous session's runs: p50 252.8 ms with the probe, 251.3
        # without (632 measured), p99 7,403 with, 7,202 without (6,751
        # measured), seeds 0; the case stays in "nothing else worse".
        paired=(("cores", "async", "N=1000 900/s"),),
    ),
    Mechanism(
        # rtt_cv and call_latency_cv fitted through the model to the light
        # calibration runs' p50 and p99 (``simlab.spread``);
        # off, the spreads by the quantile rule it replaced (``_by_quantiles``:
        # rtt_cv 1.02 and call_latency_cv 0.72 on the committed runs, against
        # 1.25 and a fixed call latency through the model). Its gains beyond
        # the measured noise are in the p50 of pools with several calls and
        # the p99 of a loop at light load; the light per-connection cases'
        # p99 move by less than their noise (thread-per-connection N=9000
        # k=1: 6.7% with it, 5.1% without, noise 3.5%; process-per-connection
        # N=120: 13.0% and 13.7%, noise 35.8%), and stay in "nothing else worse".
        "the overheads' spread fitted through the model",
        _by_quantiles(),
        (
            ("quick", "uvicorn", "N=300 120/s", "latency_p99"),
            ("quick", "thread-pool", "N=16 160/s", "latency_p50"),
            ("threads", "thread-pool", "N=24 300/s", "latency_p50"),
        ),
    ),
    Mechanism(
        # Every fork (a pre-forked copy, a child per connection) pays its
        # parent's page tables: fork_kernel_kib + fork_kernel_per_mib *
        # process_kib (``simlab.real.forklaw``); off, the two fixed costs it
        # replaced: the memory benchmark's fork for a copy, and the child's own
        # (fitted from the process-per-connection runs, which the law's
        # intercept reproduces, so the children do not move).
        "a fork's kernel memory grows with its parent's size",
        _flat_forks(),
        (("cores", "iterative", "N=2 30/s", "memory_kernel"),),
    ),
    Mechanism(
        # A pre-forked copy's own start and first service (copy_kib) and its
        # first backend call (copy_call_kib): the pages of its master each
        # copy writes, private by copy-on-write, beyond its fork and its first
        # request. Fitted on 5 December from the calibration's copies runs
        # (the same load at 1 and 2 processes), which the pinned profile
        # predates: on, the committed profile's values; off, none (as pinned).
        # The pinned runs' copies also imported their server after the fork
        # (1.4 MiB of PSS a copy more than now), so even on they stay under.
        "a pre-forked copy's own growth",
        {},
        (
            ("threads", "thread-pool", "N=24 300/s", "memory_user"),
            ("passes", "async", "N=1000 350/s", "memory_user"),
            ("cores", "iterative", "N=2 30/s", "memory_user"),
            ("cores", "async", "N=1000 900/s", "memory_user"),  # no calls: copy_kib alone
        ),
        metrics=("memory_user",),
        on=_since_pinned(*SINCE_PINNED),
    ),
    Mechanism(
        # gunicorn's sync worker's own request path (its Python parser, its
        # WSGI environ, a connection a request): what its light runs spend a
        # request beyond the model it resembles (simlab's iterative server),
        # fitted on 5 December as its parse_us; on, the committed profile's
        # value, which the pinned one predates; off, the shared parse_us.
        "a gunicorn worker's own request path",
        {},
        (("accept", "gunicorn-sync", "N=4 60/s", "latency_p50"),),
        on_peers=_peer_since_pinned(*PEER_SINCE_PINNED[0]),
    ),
    Mechanism(
        "gthread's first read on a worker thread",
        {},
        (
            ("threads", "gunicorn-gthread", "N=200 150/s", "latency_p50"),
            ("threads", "gunicorn-gthread", "N=200 150/s", "latency_p99"),
            ("threads", "gunicorn-gthread", "N=200 150/s", "threads_peak"),
            ("threads", "gunicorn-gthread", "N=60 100/s", "latency_p99"),
        ),
        designed=False,
    ),
    Mechanism(
        # uvicorn's own loop costs (``peers.uvicorn.costs``: its closed loops of
        # 1 to 64 clients, fitted as simlab's loops are); off, uvicorn pays
        # simlab's async server's (h11 in Python, where uvicorn parses with
        # httptools in C). Saturated, its served rate is its loop's cost per
        # request, and its latency the backlog that rate leaves.
        "a loop peer's own loop costs",
        {},
        tuple(
            ("loops", "uvicorn", "N=300 500/s", m)
            for m in ("throughput_rps", "latency_p50", "latency_p99")
        ),
        own_costs=False,
        metrics=("throughput_rps", "latency_p50", "latency_p99"),
    ),
    Mechanism(
        # gunicorn's sync worker and simlab's iterative server call accept only
        # while their one thread is free, so P copies share one listen queue
        # (M/G/P); dealt to copies in turn, free or not, a connection waited
        # behind a busy copy while another sat idle: gunicorn-sync's p99 was
        # 61.6 ms against 48.3 measured. As iterative its copies also hold one
        # thread each, not thread-pool's worker and accepting thread.
        "a shared listen queue for copies that accept only while free",
        {},
        (
            ("accept", "gunicorn-sync", "N=4 60/s", "latency_p99"),
            ("accept", "gunicorn-sync", "N=4 60/s", "memory_kernel"),
        ),
    ),
    Mechanism(
        # simlab async's and uvicorn's loops run in passes, as asyncio's
        # run_once does (``Passes``, ``loop_passes`` 3, an assumption read
        # from asyncio's source); off, a queue of phases answering each at its
        # own end. Its gains: the tails of the loops with backend calls, whose
        # replies wait for whole passes of other requests' CPU.
        "an event loop run in passes",
        {"loop_passes": 0.0},
        (
            ("passes", "async", "N=3000 300/s", "latency_p50"),
            ("passes", "async", "N=3000 300/s", "latency_p99"),
            ("passes", "async", "N=8000 500/s", "latency_p50"),
            ("passes", "async", "N=1000 350/s", "latency_p50"),
            ("passes", "async", "N=1000 350/s", "latency_p99"),
            ("passes", "uvicorn", "N=1000 300/s", "latency_p99"),
            ("loops", "uvicorn", "N=300 500/s", "latency_p99"),
        ),
    ),
    Mechanism(
        # gthread's P workers each accept in their own loop: the 60 connections
        # that open together split 54/6, 48/12, 22/38, ... (measured from the
        # workers' sockets), and the copy with most of them holds its W
        # threads in first reads longer, past the 2 s warm-up in some runs.
        "gthread's copies racing for the connections that open together",
        {},
        (("threads", "gunicorn-gthread", "N=60 100/s", "latency_p99"),),
    ),
]


# What the committed full validation does not show, each a strict xfail that fails
# the day the runs show it, so that the list is kept true. The numbers are the
# errors against the measured mean, with the mechanism on and off: entries marked
# "23:11" are from the committed session (2026-12-01, calibration 22:37-22:51 and
# validation 22:51-23:11 UTC, nothing else running, the machine's speed reference
# swinging 4,030-11,330 ops/s within the runs); the others were written from the
# 18:33-18:56 UTC session and still hold on these runs (their numbers are that
# session's). Event-loop batching made the peers' rows worse on the 18:33 runs
# and no longer does on these; its own target moved the other way (below).
NOT_SHOWN = {
    # 18:20 (3 December): the 14:07 (2 December) calibration's runs refitted with
    # async's loops run in passes (loop_passes 3; the client path's fit then
    # gave call_latency_us 1,015 us, 1,125 before), and the validation's runs
    # resimulated. Passes give the saturated async loop without calls fewer
    # wake-ups (a pass shares one among all it runs), so more capacity.
    ("worse", "loops", "an event loop run in passes"): "18:20: async N=500 500/s "
    "served rate: error 3.4% with passes, 1.7% without, noise 1.4% (382 and 376 req/s, "
    "370 measured); its p50 9.6% and 5.5% (noise 4.6%)",
    ("worse", "quick", "an event loop run in passes"): "18:20: async N=500 500/s "
    "served rate: error 3.4% with passes, 1.7% without, noise 1.4%",
    ("worse", "loops", "the lab's probe on the cores"): "18:20: async N=500 500/s served "
    "rate: error 3.4% with the probe, 1.1% without, noise 1.4%: with passes the loop "
    "serves more than the server did, and the probe's CPU no longer makes up for it",
    ("worse", "quick", "the lab's probe on the cores"): "18:20: async N=500 500/s served "
    "rate: error 3.4% with the probe, 1.1% without, noise 1.4%",
    ("seeds", "the lab's probe on the cores"): "18:20: async N=1000 900/s P=2 p50 with "
    "the validation's seeds: 1,978 ms with the probe, 1,804 without, 1,752 measured: away, "
    "the passes' longer saturated queue and the probe's CPU adding up",
    ("worse", "passes", "event-loop batching"): "18:20: uvicorn N=1000 300/s p50: error "
    "2.2% with batching, 0.5% without, noise 1.3%",
    ("worse", "passes", "a fork's kernel memory grows with its parent's size"): "18:20: "
    "async N=1000 350/s P=2 memory_kernel: error 3.0% with the law, 1.3% without, noise "
    "0.5%",
    ("towards", "a shared listen queue for copies that accept only while free"): "18:20: "
    "gunicorn-sync N=4 60/s k=1 p99: error 13.7% with the shared queue, 16.9% without, "
    "noise 5.1%: towards, by less than the noise (the refit's shorter call latency)",
    # 22:26 (2 December): the 14:07 calibration's runs refitted with thread_exit_us
    # (2,578 us [1,372, 3,473], from the spawn runs), and the validation's runs
    # resimulated (its threads cases measured again at 22:00-22:03).
    ("towards", "a thread outlives its short connection"): "22:26: thread-per-connection "
    "N=9000 100/s k=1 threads: error 15.0% with it, 20.0% without, noise 7.5% (runs of 7, "
    "7 and 6 threads against 5, 6 and 6 predicted with it, 5.33 on average without): "
    "towards, by less than the noise of a peak of a few threads",
    # 14:39 (2 December, the AMD EPYC host: the 14:07 calibration, the first with
    # the GIL's waiters' wake-ups fitted, and its validation, 14:07-14:39 UTC).
    # 16:33 (2 December): the 14:07 calibration's runs refitted with the GIL's
    # waiters' CPU measured (gil_wake_us 4.0 us [3.2, 5.6]), and the 14:07-14:39
    # validation's runs resimulated with it.
    ("towards", "the GIL's waiters' CPU on the cores"): "16:33: thread-per-connection "
    "N=300 420/s throughput: error 44.4% with the waiters' CPU (4.0 us a wake-up, "
    "measured), 44.3% without (predicted 420.7 and 420.5, 291 measured); its p50 moves "
    "towards, by little (about 29 -> 33.7 ms, 2,078 measured). The model collapses as the "
    "server did only at about 16 us a wake-up (288/s and p50 1.2 s at 5 ms, 423/s at "
    "50 ms): four times what the benchmark's waiters cost, which leaves out what a "
    "preempted holder loses",
    ("towards", "event-loop batching"): "14:39: async N=500 500/s served rate: error "
    "1.7% with batching, 2.0% without, noise 1.4%: towards, by less than the noise",
    ("seeds", "event-loop batching"): "14:39: async N=500 500/s p50 with seeds 1000: "
    "1,603 ms with batching, 1,888 without, 1,771 measured: away, by 168 against 117 ms",
    ("towards", "a loop peer's own loop costs"): "14:39: uvicorn N=300 500/s served "
    "rate: error 3.10% with its own loop costs, 3.07% without, noise 2.1%",
    # 07:42 (2 December, the 07:06 calibration and a quiet validation, 07:21-07:42
    # UTC): batching's p50 towards and the probe's served rate now show (their
    # 05:16 entries are gone); these are what the new runs show against them.
    ("worse", "forks", "a fork's cost split between parent and child"): "07:42: "
    "process-per-connection N=10000 60/s k=1 memory_user: error 12.0% with the split, "
    "0.1% without, noise 9.8%",
    ("worse", "loops", "event-loop batching"): "07:42: uvicorn N=1000 300/s P=1 p99: error "
    "18.2% with batching, 6.6% without, noise 5.7%; uvicorn N=300 500/s memory_user 4.17% "
    "and 3.91%, noise 0.13%",
    # 05:16 (2 December, the 04:30 calibration with switch contention fitted from
    # saturated thread runs, and a noisy validation session: 28 runs repeated by
    # the gate, single runs stalled for seconds): the 02:16 entries that no longer
    # hold are gone; these are what the new runs show.
    # The fork's split towards its targets shows since 22:04 (2 December: the
    # cases whose threads count came from two slow reads measured again, with
    # the levels read from the cgroup on the grid); its entry is gone.
    ("towards", "the overheads' spread fitted through the model"): "23:11: uvicorn "
    "N=300 120/s P=2 p99: error 42.8% with the fitted spread, 40.8% without, inside "
    "the measured noise (64.8%)",
    ("seeds", "the GIL's hand-off out of order"): "thread-per-connection N=300 420/s p50: "
    "45.3 ms with the random hand-off, 58.4 in order (seeds 0; 54.8 and 71.1 with seeds "
    "1000), 357.4 measured near saturation: it moves away; N=400 250/s p50 moves away too "
    "(29.5 and 30.0, 30.2 measured); both cases' p99 move towards",
    ("towards", "gthread's first read on a worker thread"): "gunicorn-gthread N=200 150/s "
    "p50: error 118.3% with it (140.6% before the worker's 5 s wait for a first read), "
    "93.6% without (noise 61.3%): the case's p50 is the start-up transient, whose size "
    "the arrival sequence sets (on the arrivals of the validation's 3 seeds the model "
    "gives 410, 96 and 460 ms; those seeds measured 376, 72 and 431 in the committed "
    "session, 482, 136 and 521 at 21:30 UTC); its p99 (21.2% and 99.3%) and threads "
    "(0.0% and 9.1%) move towards; N=60 100/s p99 77.7% and 78.0%",
    ("towards", "gthread's copies racing for the connections that open together"): (
        "11:36 remeasure: gunicorn-gthread N=60 100/s P=2 p99: error 3.1% racing, each run "
        "given its measured deal of connections to copies, 42.5% dealt, but inside the "
        "measured noise (68.8%: runs of 40, 43 and 145 ms, predicted 40, 40 and 141)"
    ),
    ("worse", "accept", "a shared listen queue for copies that accept only while free"): (
        "gunicorn-sync N=4 60/s k=1 p50: error 3.5% with the shared queue, 1.0% without, "
        "noise 1.9% (18.05 and 18.52 ms, 18.7 measured): the queue dealt to busy copies "
        "made up, in the median, for a request path 0.6 ms shorter than gunicorn's; its p99 "
        "(61.6 -> 48.2 ms, 48.3 measured) and kernel memory move towards"
    ),
    # The fork law prices every pre-forked copy as the server's children measured
    # (182 KiB at the server's 16 MiB). Idle (simlab measure at P=1 and P=2, 2
    # connections at 5/s, 2026-12-01 22:10 UTC, the pools' 4 added worker
    # threads priced at thread_kernel_kib), a copy of iterative, async,
    # reactor-pool and thread-pool held 180, 190, 201 and 195 KiB: near the
    # law's price, far from the benchmark's 236. Under these
    # cases' load the loop and pool servers' copies hold more, which is no
    # fork's cost; the benchmark's 236 KiB fork made up for it by chance.
    ("worse", "threads", "a fork's kernel memory grows with its parent's size"): "thread-pool "
    "N=24 300/s P=2 memory_kernel: error 7.0% with the law, 1.4% without, noise 0.7%",
}


def _params(test: str, mechs: list[Mechanism], dataset: str | None = None) -> list[Any]:
    out = []
    for m in mechs:
        key = (test, m.name) if dataset is None else (test, dataset, m.name)
        why = NOT_SHOWN.get(key)
        marks = [pytest.mark.xfail(strict=True, reason=f"not shown: {why}")] if why else []
        out.append(pytest.param(m, marks=marks, id=m.name))
    return out


def _compare(mech: Mechanism, dataset: str) -> list[tuple[Row, float, float, float]]:
    """(row, error with, error without, noise) for every evidence row, relative."""
    rows, _, _ = _committed(dataset)
    with_ = _predict(dataset, mech.on_changes, peer_costs=mech.on_peers)
    without = _predict(
        dataset,
        tuple(sorted(mech.off.items())),
        mech.designed,
        mech.own_costs,
        mech.unpatched,
    )
    out = []
    for key, row in rows.items():
        if key not in with_ or key not in without:
            continue
        (a, ha), (b, hb) = with_[key], without[key]
        m = abs(row.measured)
        out.append((row, abs(a - row.measured) / m, abs(b - row.measured) / m,
                    (row.half + ha + hb) / m))  # fmt: skip
    return out


def _targeted(mech: Mechanism, dataset: str, row: Row) -> bool:
    return any(
        (d, t, m) == (dataset, row.target, row.metric) and row.config.startswith(c)
        for d, t, c, m in mech.targets
    ) or any(
        (d, t) == (dataset, row.target) and row.config.startswith(c) and row.metric in mech.metrics
        for d, t, c in mech.paired
    )


def test_the_committed_profile_holds_every_mechanism() -> None:
    # Each platform mechanism is on in the profile; a fitted one is identified
    # with an interval clear of zero, an assumed one says where it comes from.
    params = _profile()["parameters"]
    for key in ("loop_event_us", "loop_wake_us", "fork_touched_kib", "fork_call_kib"):
        assert params[key]["identified"] and params[key]["ci95"][0] > 0, key
    assert params["fork_child_us"]["identified"] and params["fork_child_us"]["value"] > 0
    # The fork law: its slope measured, its intercept from the server's own
    # children, which it prices with the pre-forked copies (no cost of their own).
    slope, base = params["fork_kernel_per_mib"], params["fork_kernel_kib"]
    assert slope["identified"] and 0 < slope["ci95"][0] <= slope["value"] <= slope["ci95"][1]
    assert base["identified"] and 0 < base["ci95"][0] <= base["value"] <= base["ci95"][1]
    assert "child_kernel_kib" not in params
    assert not params["fork_exit_us"]["identified"] and params["fork_exit_us"]["value"] == 0.0
    # The close wait: measured by its benchmark, inside its runs' range.
    close = params["close_wait_us"]
    assert close["identified"] and close["method"].startswith("measured:")
    assert 0 < close["range"][0] <= close["value"] <= close["range"][1]
    lingers = params["thread_exit_us"]
    assert (
        lingers["identified"] and 0 < lingers["ci95"][0] <= lingers["value"] <= lingers["ci95"][1]
    )
    lab = _profile()["lab"]
    assert lab["probe_us"]["value"] > 0 and lab["probe_process_us"]["value"] > 0
    assert "Probe" in lab["probe_us"]["method"]
    # uvicorn's own loop costs, each fitted from its own closed loops or the
    # shared value labelled as an assumption.
    for key, entry in _profile()["peers"]["uvicorn"]["costs"].items():
        if entry["identified"]:
            assert entry["ci95"][0] > 0 and "closed loops" in entry["method"], key
        else:
            assert entry["value"] == params[key]["value"], key
            assert "shared value" in entry["assumption"], key
    assert params["gil_fifo_share"]["value"] == 0.0
    assert "ceval_gil" in params["gil_fifo_share"]["assumption"]
    # The GIL's waiters' CPU: measured by its benchmark, inside its pairs' range.
    wake = params["gil_wake_us"]
    assert wake["identified"] and wake["method"].startswith("measured:")
    assert 0 < wake["range"][0] <= wake["value"] <= wake["range"][1]
    # The overheads' spread, fitted through the model: each cv identified with
    # an interval clear of zero, or the preset's 0, labelled, with no interval.
    for key in ("rtt_cv", "call_latency_cv"):
        entry = params[key]
        assert "through the model" in entry["method"], key
        if entry["identified"]:
            assert entry["ci95"][0] > 0, key
        else:
            assert entry["value"] == 0.0 and "ci95" not in entry, key
            assert "not identified" in entry["assumption"], key


@pytest.mark.parametrize("mech", _params("towards", [m for m in MECHANISMS if m.targets]))
def test_a_mechanism_moves_its_targets_towards_the_measurement(mech: Mechanism) -> None:
    for dataset, target, config, metric in mech.targets:
        hits = [
            (row, w, wo)
            for row, w, wo, _ in _compare(mech, dataset)
            if (row.target, row.metric) == (target, metric) and row.config.startswith(config)
        ]
        assert len(hits) == 1, (dataset, target, config, metric)
        row, err_with, err_without = hits[0]
        assert err_without - err_with > row.half / abs(row.measured), hits


# Independent seed sets for the paired checks: the validation's own, and two more.
SEED_SETS = (0, 1000)


def _pooled(
    case: Case,
    changes: dict[str, float],
    seed: int,
    own: bool,
    peers: tuple[tuple[str, str, float], ...] = (),
) -> dict[str, float]:
    """A case's predictions from one seeded simulation (8 replications pooled,
    as ``simlab validate`` makes them where it cannot replay): arrivals of
    their own, independent of the real runs', on the pinned profile with a
    peer's own costs (unless not ``own``; ``peers`` among them) and
    ``changes`` over them."""
    profile = _with_peer_costs(_profile(), peers)
    platform = validate.case_platform(case, _platform(), profile if own else {})
    platform = platform.with_(**changes)
    sim = validate._simulate(case, platform, seed)
    predicted = validate._peer_adjusted(case, sim, platform, _profile(), seed)
    return {m: p.value for m, p in predicted.items() if p.value is not None}


@pytest.mark.parametrize("mech", _params("seeds", [m for m in MECHANISMS if m.paired]))
def test_a_mechanism_moves_its_targets_whatever_the_seeds(mech: Mechanism) -> None:
    # Where the measured runs' noise is too wide to show a gain, the gain must
    # at least not be the simulation's luck: with the validation's seeds and
    # with an independent set (8 replications each; the two simulations of a
    # set share their seeds), the prediction with the mechanism is closer to
    # the measured mean than without, both times.
    for dataset, target, config in mech.paired:
        rows, seed, cases = _committed(dataset)
        k, case = next(
            (k, c) for k, c in cases if c.target == target and c.config().startswith(config)
        )
        for extra in SEED_SETS:
            if extra == 0:
                # The validation's own seeds: the very runs the other tests
                # make of every case of the dataset (cached), not a second copy.
                changes = tuple(sorted(mech.off.items()))
                on, off = (
                    {m: v for (t, c, m), (v, _) in preds.items()
                     if (t, c) == (case.target, case.config())}
                    for preds in (
                        _predict(dataset, mech.on_changes, peer_costs=mech.on_peers),
                        _predict(dataset, changes),
                    )
                )  # fmt: skip
            else:
                on = _pooled(case, mech.on, seed + k + extra, own=True, peers=mech.on_peers)
                off = _pooled(case, mech.off, seed + k + extra, own=mech.own_costs)
            for metric in mech.metrics:
                m = rows[(case.target, case.config(), metric)].measured
                assert abs(on[metric] - m) < abs(off[metric] - m), (
                    case.config(),
                    metric,
                    extra,
                    on[metric],
                    off[metric],
                    m,
                )


# The report shows errors to 0.1%: a change it would not show is no change.
RESOLUTION = 0.001


@pytest.mark.parametrize(
    ("dataset", "mech"),
    [
        pytest.param(d, *p.values, marks=p.marks, id=f"{d}-{p.id}")
        for d in sorted(DATASETS)
        for p in _params("worse", MECHANISMS, d)
    ],
)
def test_a_mechanism_makes_nothing_else_worse(mech: Mechanism, dataset: str) -> None:
    others = [c for c in _compare(mech, dataset) if not _targeted(mech, dataset, c[0])]
    # Every case's latency at least (but a mechanism's own targets).
    cases = len(_committed(dataset)[2])
    assert len(others) >= min(12, 2 * cases - len(mech.targets))
    worse = [
        (row.target, row.config, row.metric, round(w, 4), round(wo, 4), round(n, 4))
        for row, w, wo, n in others
        if w > wo + n + RESOLUTION
    ]
    assert not worse, worse


def test_gthread_is_simulated_with_its_first_read_on_a_worker() -> None:
    arch = Architecture(workers=8)
    designed = replace(arch, first_read="worker", accept="race")
    assert validate.as_designed("gunicorn-gthread", arch) == designed
    assert validate.as_designed("uvicorn", arch) == arch
    assert validate.as_designed("reactor-pool", arch) == arch
