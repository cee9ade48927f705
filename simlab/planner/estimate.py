"""Analytic estimates of one configuration: loads, latency tail, threads and memory.

The planner searches with these (they cost microseconds to milliseconds) and
then confirms its answer with the DES. Each model composes its latency from
the queues it reduces to (its ``latency_draws``, by Monte Carlo with common
random numbers, ``simlab.models.composition``), so an estimate is
deterministic and never gets worse when workers are added. When the model
reduces exactly to M/M/c (its ``analytic`` says so), the closed-form mean
and p99 replace the composition. Memory is the model's ``units`` at the
expected peak, priced by ``simlab.footprint``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from simlab.errors import UserError
from simlab.models import get_model
from simlab.models.base import Analytic
from simlab.models.composition import Sampler, client_wait
from simlab.params import Architecture, Platform, Workload
from simlab.streams import Deal

__all__ = ["Estimate", "Sampler", "estimate", "memory"]

# The peak number of requests in flight is taken at this many standard
# deviations above Little's L (a Poisson count): its 99.9th percentile.
PEAK_Z = 3.1


@dataclass(frozen=True)
class Estimate:
    """What the formulas say about one configuration (times in seconds)."""

    loads: dict[str, float]
    mean: float
    p50: float
    p99: float
    exact: bool
    method: str
    threads: int
    memory_mib: float
    virtual_mib: float
    cpu_utilization: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def saturated(self) -> dict[str, float]:
        return {k: v for k, v in self.loads.items() if v >= 1}


def estimate(
    model: str,
    workload: Workload,
    platform: Platform,
    arch: Architecture,
    deal: Deal,
    *,
    sampler: Sampler | None = None,
) -> Estimate:
    """Loads, latency (mean, p50, p99), threads and memory of one configuration,
    for the replications ``deal`` describes.

    Only open arrivals (a rate) have a steady state to estimate.
    """
    if workload.rate is None:
        raise UserError("estimates need open arrivals (a rate)")
    cls = get_model(model)
    loads = {k: float(v) for k, v in cls.offered_load(workload, platform, arch, deal).items()}
    threads, resident, virtual = memory(model, workload, platform, arch)
    cpu_util = loads.get("cores")
    s = sampler if sampler is not None else Sampler(workload, platform)

    def saturated() -> Estimate:
        inf = math.inf
        return Estimate(
            loads, inf, inf, inf, False, "saturated", threads, resident, virtual, cpu_util
        )

    if any(v >= 1 for v in loads.values()):
        return saturated()
    analytic = cls.analytic(workload, platform, arch, deal)
    served, method = cls.latency_draws(workload, platform, arch, deal, s)
    if not np.isfinite(served).all():
        # A queue the offered loads call stable saturates once the CPU waits
        # that its requests hold a thread through are counted.
        loads["pool with CPU waits"] = math.inf
        return saturated()
    latency = served + client_wait(workload, served, s)
    if not np.isfinite(latency).all():
        # Each client sends one request at a time: one whose answers take
        # longer than its sends are apart queues without bound at the client.
        loads["client connection"] = math.inf
        return saturated()
    p50, p99 = (float(q) for q in np.percentile(latency, [50, 99]))
    mean = float(latency.mean())
    exact = False
    if isinstance(analytic, Analytic) and analytic.exact:
        values = analytic.values
        if "latency_p99_ms" in values:
            mean, p99 = values["latency_mean_ms"] / 1e3, values["latency_p99_ms"] / 1e3
            exact, method = True, f"{analytic.queue}, exact ({analytic.note})"
    return Estimate(loads, mean, p50, p99, exact, method, threads, resident, virtual, cpu_util)


def memory(
    model: str, workload: Workload, platform: Platform, arch: Architecture
) -> tuple[int, float, float]:
    """(threads, resident MiB, reserved virtual MiB) at the expected peak.

    The model's units (its processes, threads, open connections, the
    backend connections of threads that have made a call, each forked
    child's copy-on-write growth) with the requests in flight (their tasks,
    and for short connections their threads, forks and sockets) at the
    99.9th percentile of a Poisson number around Little's L.
    """
    w = workload
    assert w.rate is not None
    in_flight = _poisson_peak(w.rate * _rough_latency(w, platform))
    units = get_model(model).units(w, arch, in_flight)
    fp = units.footprint(platform)
    return units.thread, fp.resident_mib, fp.reserved_mib


def _rough_latency(workload: Workload, platform: Platform) -> float:
    w, p = workload, platform
    io = w.calls * w.io.mean if w.fanout == "sequential" else (w.io.mean if w.calls else 0.0)
    return w.cpu.mean + io + p.rtt_us * 1e-6


def _poisson_peak(mean: float) -> int:
    if mean <= 0:
        return 0
    # The 99.9th percentile of Poisson(L) by the normal approximation, which
    # is close enough for a memory term and needs no scipy call per estimate.
    return math.ceil(mean + PEAK_Z * math.sqrt(mean))
