"""Shared helpers for the test tiers, and the tests' own data root.

Every test runs against a copy of ``tests/data/root`` as ``$SIMLAB_DATA``:
a frozen calibrated ``cpython`` profile (so that no result moves when this
machine's ``data/`` is recalibrated) and a validation summary. What tests
write (measurements, experiments, sweeps) goes there too, never into the
repository's ``data/``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

import simlab
from simlab import Architecture, Platform, Trace, Workload
from simlab.distributions import Fixed
from simlab.paths import DATA_ENV
from tests import interrupts

TEST_ROOT = Path(__file__).resolve().parent / "data" / "root"


_ROOT = pytest.StashKey[Path]()
_PREVIOUS = pytest.StashKey["str | None"]()


def pytest_configure(config: pytest.Config) -> None:
    # Before collection: a test module that loads a profile when it is imported
    # (test_planner's CPYTHON) must get the frozen one too, not this machine's data/.
    root = Path(tempfile.mkdtemp(prefix="simlab-data-"))
    shutil.copytree(TEST_ROOT, root, dirs_exist_ok=True)
    config.stash[_ROOT] = root
    config.stash[_PREVIOUS] = os.environ.get(DATA_ENV)
    os.environ[DATA_ENV] = str(root)
    # SIGTERM or SIGINT ends the run, servers and load stopped (tests/interrupts.py).
    interrupts.pytest_configure(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    previous = config.stash.get(_PREVIOUS, None)
    if previous is None:
        os.environ.pop(DATA_ENV, None)
    else:
        os.environ[DATA_ENV] = previous
    if _ROOT in config.stash:
        shutil.rmtree(config.stash[_ROOT], ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def data_root(pytestconfig: pytest.Config) -> Path:
    """A fresh copy of the tests' data root, $SIMLAB_DATA for the whole session
    (from before the test modules are imported)."""
    return pytestconfig.stash[_ROOT]


def run_trace(
    model: str,
    times: list[float],
    conns: list[int],
    *,
    platform: Platform | None = None,
    arch: Architecture | None = None,
    connections: int | None = None,
    cpu: float = 0.0,
    io: float = 1.0,
    calls: int = 1,
    requests_per_connection: int | None = None,
    duration: float = 100.0,
) -> pd.DataFrame:
    """One replication of a replayed trace with fixed service, every request measured."""
    workload = Workload(
        connections=connections or max(conns) + 1,
        trace=Trace(tuple(times), tuple(conns)),
        cpu=Fixed(cpu),
        io=Fixed(io),
        calls=calls,
        requests_per_connection=requests_per_connection,
    )
    result = simlab.simulate(
        model,
        workload,
        platform or simlab.load_platform("ideal"),
        arch or Architecture(),
        duration=duration,
        warmup=0.0,
        replications=1,
    )
    return result.requests.set_index("request")
