"""Shared helpers for the test tiers."""

from __future__ import annotations

import pandas as pd

import simlab
from simlab import Architecture, Platform, Trace, Workload
from simlab.distributions import Fixed


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
