"""The mechanisms behind the validation's worst misses, each tested both ways on
the committed held-out cases (issue 12, part 5).

For each mechanism the committed quick validation (``data/validation/cpython``:
every case run 3 times for real) is simulated again with the committed
profile, once with the mechanism's parameters as calibrated and once with
them at 0. Both ways:

- on the cases it targets, the error against the measured mean is lower
  with it, by more than the noise (the measured runs' bootstrap interval
  and both simulations' intervals);
- on every other metric that counts as evidence, it is not higher by more
  than that noise.

The simulations are the validation's own (``simlab.validate``: 8
replications of each case's short run, the same seeds), so that a test
takes seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from simlab import validate
from simlab.params import Platform
from simlab.platforms import platform_from_profile
from simlab.real.grids import Case, held_out

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "data" / "profiles" / "cpython.json"
VALIDATION = REPO / "data" / "validation" / "cpython" / "validation.json"
Key = tuple[str, str, str]  # (target, config, metric)
METRICS = ("throughput_rps", "latency_p50", "latency_p99", "memory_user", "memory_kernel")


@dataclass(frozen=True)
class Row:
    """One committed evidence row: the measured mean and its interval's half-width."""

    target: str
    config: str
    metric: str
    measured: float
    half: float


@cache
def _committed() -> tuple[dict[str, Any], dict[tuple[str, str, str], Row], int]:
    profile = json.loads(PROFILE.read_text())
    saved = json.loads(VALIDATION.read_text())
    rows = {}
    for r in saved["rows"]:
        if not r["evidence"] or r["metric"] not in METRICS or not r["measured"]:
            continue
        ci = r["measured_ci95"] or [r["measured"], r["measured"]]
        key = (r["model"], r["config"], r["metric"])
        rows[key] = Row(*key, r["measured"], (ci[1] - ci[0]) / 2)
    return profile, rows, int(saved["seed"])


def _platform() -> Platform:
    profile, _, _ = _committed()
    return validate.lab_platform(platform_from_profile(profile, source=str(PROFILE)), profile)


@cache
def _predict(
    changes: tuple[tuple[str, float], ...],
) -> dict[tuple[str, str, str], tuple[float, float]]:
    """Every committed case simulated as ``simlab validate --quick`` does, on the
    committed profile with ``changes``: (value, CI half-width) per row."""
    profile, rows, seed = _committed()
    platform = _platform().with_(**dict(changes))
    out = {}
    for k, case in enumerate(held_out(quick=True)):
        if not any(key[:2] == (case.target, case.config()) for key in rows):
            continue
        sim = validate._simulate(case, platform, seed + k)
        predicted = validate._peer_adjusted(case, sim, platform, profile, seed + k)
        for metric in METRICS:
            p = predicted[metric]
            if p.value is None:
                continue
            half = (p.ci[1] - p.ci[0]) / 2 if p.ci else 0.0
            out[(case.target, case.config(), metric)] = (p.value, half)
    return out


def _compare(
    off: dict[str, float],
) -> list[tuple[Row, float, float, float]]:
    """(row, error with, error without, noise) for every evidence row, relative."""
    _, rows, _ = _committed()
    with_ = _predict(())
    without = _predict(tuple(sorted(off.items())))
    out = []
    for key, row in rows.items():
        if key not in with_ or key not in without:
            continue
        (a, ha), (b, hb) = with_[key], without[key]
        m = row.measured
        noise = (row.half + ha + hb) / abs(m)
        out.append((row, abs(a - m) / abs(m), abs(b - m) / abs(m), noise))
    return out


def _case(target: str, config_start: str) -> Case:
    return next(
        c
        for c in held_out(quick=True)
        if c.target == target and c.config().startswith(config_start)
    )


@dataclass(frozen=True)
class Mechanism:
    name: str
    off: dict[str, float]  # the parameters that switch it off
    targets: tuple[tuple[str, str, str], ...]  # (target, config prefix, metric)


ASYNC_SATURATED = ("async", "N=500 500/s")
PROCESS = ("process-per-connection", "N=120 80/s")
MECHANISMS = [
    Mechanism(
        "event-loop batching",
        {"loop_event_us": 0.0, "loop_wake_us": 0.0},
        tuple((*ASYNC_SATURATED, m) for m in ("throughput_rps", "latency_p50", "latency_p99")),
    ),
    Mechanism(
        "copy-on-write of a child per connection",
        {"fork_touched_kib": 0.0, "fork_call_kib": 0.0},
        ((*PROCESS, "memory_user"),),
    ),
]


def _targeted(mech: Mechanism, row: Row) -> bool:
    return any(
        row.target == t and row.config.startswith(c) and row.metric == m for t, c, m in mech.targets
    )


def test_the_committed_profile_holds_every_mechanism() -> None:
    # Each mechanism is on in the profile the validation ran with, fitted and identified.
    profile, _, _ = _committed()
    for mech in MECHANISMS:
        for key in mech.off:
            entry = profile["parameters"][key]
            assert entry["identified"], (key, entry)
            assert entry["value"] > 0
            assert entry["ci95"][0] > 0


@pytest.mark.parametrize("mech", MECHANISMS, ids=lambda m: m.name)
def test_a_mechanism_moves_its_targets_towards_the_measurement(mech: Mechanism) -> None:
    # The gain must exceed the measured runs' noise. The two simulations share
    # their seeds (common random numbers), so their difference is much surer
    # than either's interval; the paired test below checks it run by run.
    hits = [(row, w, wo) for row, w, wo, _ in _compare(mech.off) if _targeted(mech, row)]
    assert len(hits) == len(mech.targets)
    for row, err_with, err_without in hits:
        assert err_without - err_with > row.half / abs(row.measured), (row, err_with, err_without)


def _per_replication(platform: Platform, case: Case) -> dict[str, list[float]]:
    import numpy as np  # noqa: PLC0415

    from simlab.simulation import simulate  # noqa: PLC0415

    _, _, seed = _committed()
    k = held_out(quick=True).index(case)
    result = simulate(
        validate.RESEMBLES.get(case.target, case.target),
        case.workload,
        platform,
        case.arch,
        duration=case.duration,
        warmup=case.warmup,
        seed=seed + k,
        replications=validate.SIM_REPLICATIONS,
    )
    out: dict[str, list[float]] = {"throughput_rps": [], "latency_p50": [], "latency_p99": []}
    for numbers in result.numbers:
        ms = np.asarray(numbers["latency"]) * 1e3
        out["throughput_rps"].append(float(numbers["throughput_rps"]))
        out["latency_p50"].append(float(np.percentile(ms, 50)))
        out["latency_p99"].append(float(np.percentile(ms, 99)))
    return out


def test_batching_moves_the_saturated_loop_towards_the_measurement_in_every_replication() -> None:
    # A sign test over the paired replications: if batching did not move the
    # prediction towards the measured mean, each of the 8 would be a coin toss
    # (all 8 by chance: 1 in 256).
    mech = MECHANISMS[0]
    case = _case(*ASYNC_SATURATED)
    _, rows, _ = _committed()
    platform = _platform()
    on = _per_replication(platform, case)
    off = _per_replication(platform.with_(**mech.off), case)
    for metric in on:
        m = rows[(case.target, case.config(), metric)].measured
        pairs = list(zip(on[metric], off[metric], strict=True))
        assert all(abs(a - m) < abs(b - m) for a, b in pairs), (metric, m, pairs)


@pytest.mark.parametrize("mech", MECHANISMS, ids=lambda m: m.name)
def test_a_mechanism_makes_nothing_else_worse(mech: Mechanism) -> None:
    others = [(row, w, wo, n) for row, w, wo, n in _compare(mech.off) if not _targeted(mech, row)]
    assert len(others) >= 20  # every case's latency and memory at least
    worse = [
        (row.target, row.config, row.metric, round(w, 4), round(wo, 4), round(n, 4))
        for row, w, wo, n in others
        if w > wo + n
    ]
    assert not worse, worse
