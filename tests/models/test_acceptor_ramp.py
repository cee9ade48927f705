"""Threads per connection made as the run starts, by an acceptor that waits
for the GIL (``Dedicated.forks_at_start``), both ways on the committed runs.

Past saturation a CPython thread-per-connection server does not accept
every connection: on 5 December its 1,000 connections at 1.09 (held-out
case ``N=1000 400/s``) held 781 to 809 threads at peak, because its
accepting thread makes a thread per connection and takes the GIL to do
it, behind the handlers. A model that makes every thread at once holds
1,001, and each of its hundreds more waiters slows the GIL's holder: it
served 234/s where the server served 308/s, with a p50 eight times the
measured. With the acceptor on the GIL the model holds about 860, and
its served rate, latency, threads and memory all come closer (the report,
replayed on the runs' arrivals: 316/s, p50 444 ms against 423, threads
856 against 793).

What it does not do: the case of 2,000 connections over two processes,
whose runs served 130, 304 and 65/s (a collapse in two of three), is no
closer in its served rate or latency (the model serves more, 498/s, where
without the acceptor it served 317); its threads and memory come closer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from simlab import simulate, validate
from simlab.models.dedicated import Dedicated
from simlab.models.thread_per_connection import ThreadPerConnection
from simlab.params import Platform
from simlab.platforms import platform_from_profile
from simlab.real.grids import Case, held_out

REPO = Path(__file__).resolve().parents[2]
# The runs these checks were made on, pinned (the rows of the two cases as
# data/validation/cpython held them on the morning of 6 December, measured
# 00:26 UTC) with the profile they were predicted on: a later session's
# runs do not silently change what is asserted. The afternoon's runs, on
# another build of the machine, accepted every connection of the two-copy
# case and served the 1,000-connection one 20% faster (docs/calibration.md,
# "Two copies racing for the cores").
SAVED = REPO / "tests" / "data" / "acceptor_validation_2026-12-06.json"
PROFILE = REPO / "tests" / "data" / "acceptor_profile_2026-12-06.json"
SATURATED = "N=1000 400/s cpu=2.5ms 1x10ms seq W=32 P=1"
TWO = "N=2000 800/s cpu=2.5ms 1x10ms seq W=32 P=2"


def _case(config: str) -> tuple[int, Case]:
    (found,) = [(k, c) for k, c in enumerate(held_out(quick=False))
                if c.target == "thread-per-connection" and c.config() == config]  # fmt: skip
    return found


def _measured(config: str) -> dict[str, float]:
    rows = json.loads(SAVED.read_text())["rows"]
    return {r["metric"]: float(r["measured"]) for r in rows
            if r["model"] == "thread-per-connection" and r["config"] == config}  # fmt: skip


@contextmanager
def _acceptor(on: bool) -> Iterator[None]:
    if on:
        yield
    else:
        with mock.patch.object(Dedicated, "forks_at_start", classmethod(lambda *_: False)):
            yield


def _profile() -> tuple[Platform, dict[str, Any]]:
    profile = json.loads(PROFILE.read_text())
    return platform_from_profile(profile, source=str(PROFILE)), profile


def _predicted(config: str, on: bool) -> dict[str, float]:
    k, case = _case(config)
    base, extras = _profile()
    platform = validate.case_platform(case, validate.lab_platform(base, extras), extras)
    with _acceptor(on):
        s: Any = simulate(
            "thread-per-connection", case.workload, platform, case.arch,
            duration=case.duration, warmup=case.warmup, seed=k + 1, replications=3, tables=False,
        ).summary  # fmt: skip
    return {
        "throughput_rps": float(s.throughput_rps),
        "latency_p50": float(s.latency_ms.p50),
        "threads_peak": float(s.threads.peak),
        "memory_user": float(s.memory_mib.user_peak),
        "memory_kernel": float(s.memory_mib.kernel_peak),
    }


def _errors(config: str, on: bool) -> dict[str, float]:
    real = _measured(config)
    return {m: abs(v - real[m]) / real[m] for m, v in _predicted(config, on).items()}


def test_the_committed_runs_held_fewer_threads_than_connections() -> None:
    # The premise, from the runs themselves: every run of the case held fewer.
    rows = json.loads(SAVED.read_text())["rows"]
    (threads,) = [r for r in rows if r["config"] == SATURATED and r["metric"] == "threads_peak"]
    assert max(threads["measured_runs"]) < 1000


@pytest.mark.parametrize("metric", ["throughput_rps", "latency_p50", "threads_peak",
                                    "memory_user", "memory_kernel"])  # fmt: skip
def test_the_acceptor_on_the_gil_brings_a_thousand_threads_towards_the_server(
    metric: str,
) -> None:
    with_it, without = _errors(SATURATED, True)[metric], _errors(SATURATED, False)[metric]
    assert with_it < without, (with_it, without)


def test_with_the_acceptor_the_served_rate_is_within_twice_its_goal() -> None:
    # Seeded, not replayed on the runs' own arrivals as the report is (2.5%
    # there): a served rate's goal is 5%.
    assert _errors(SATURATED, True)["throughput_rps"] <= 2 * 0.05


def test_over_two_processes_the_threads_and_memory_come_closer_and_the_rate_does_not() -> None:
    with_it, without = _errors(TWO, True), _errors(TWO, False)
    for metric in ("threads_peak", "memory_user", "memory_kernel"):
        assert with_it[metric] < without[metric], metric
    # Said in the module's docstring: the collapse is not this mechanism's.
    assert with_it["throughput_rps"] > without["throughput_rps"]


def test_without_a_gil_every_thread_is_there_from_the_start() -> None:
    _, case = _case(SATURATED)
    cpython, _ = _profile()
    assert ThreadPerConnection.forks_at_start(case.workload, cpython)
    no_gil = cpython.with_(gil=False)
    assert no_gil.spawn_us > 0 and not ThreadPerConnection.forks_at_start(case.workload, no_gil)
