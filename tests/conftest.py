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
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import simlab
from simlab import Architecture, Platform, Trace, Workload
from simlab.distributions import Fixed
from simlab.paths import DATA_ENV

TEST_ROOT = Path(__file__).resolve().parent / "data" / "root"


@pytest.fixture(scope="session", autouse=True)
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh copy of the tests' data root, as $SIMLAB_DATA for the whole session."""
    root = tmp_path_factory.mktemp("simlab-data")
    shutil.copytree(TEST_ROOT, root, dirs_exist_ok=True)
    previous = os.environ.get(DATA_ENV)
    os.environ[DATA_ENV] = str(root)
    yield root
    if previous is None:
        os.environ.pop(DATA_ENV, None)
    else:
        os.environ[DATA_ENV] = previous


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
