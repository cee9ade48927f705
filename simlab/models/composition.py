"""A request's latency composed from its queues by Monte Carlo: the planner's estimates.

Each model's ``latency_draws`` strings together the waits its requests meet,
with these parts:

- a *pool* wait (M/G/W: Erlang C for the probability of waiting and
  Allen-Cunneen for the mean wait, the wait given that it happens taken as
  exponential: exact for M/M/c, Kingman's heavy-traffic shape otherwise);
- a *loop* wait (M/G/1 per process, Pollaczek-Khinchine);
- the *CPU* waits of a threaded request's phases (``cpu_waits``);
- the wait at the client, which sends one request at a time (``client_wait``).

The draws share common random numbers (``Sampler``, a fixed seed), so an
estimate is deterministic and never gets worse when workers are added.
"""

from __future__ import annotations

import math

import numpy as np

from simlab import theory
from simlab.params import Platform, Workload

__all__ = [
    "DRAWS",
    "Sampler",
    "client_wait",
    "cpu_waits",
    "held_on_thread",
    "mgc_wait",
    "mixture",
    "scv",
]

DRAWS = 20_000
# The composition's own seed: estimates must not depend on the run's seed.
_SEED = 20_011_127


class Sampler:
    """Common random numbers for every estimate of one workload and platform.

    The per-request parts that do not depend on the configuration (CPU
    demand, backend time, client path) are drawn once; the waits are built
    from fixed uniforms and unit exponentials scaled per configuration.
    """

    def __init__(self, workload: Workload, platform: Platform, draws: int = DRAWS) -> None:
        rng = np.random.default_rng(_SEED)
        w, p = workload, platform
        self.cpu = w.cpu.sample(rng, draws)
        if w.calls:
            calls = w.io.sample(rng, (draws, w.calls)) + p.call_latency().sample(
                rng, (draws, w.calls)
            )
            self.io = calls.sum(axis=1) if w.fanout == "sequential" else calls.max(axis=1)
        else:
            self.io = np.zeros(draws)
        self.rtt = p.rtt().sample(rng, draws)
        # Waiting parts: a uniform decides whether a request waits, a unit
        # exponential how long (scaled by the conditional mean wait).
        self.u_pool, self.e_pool = rng.random(draws), rng.exponential(1.0, draws)
        self.u_loop, self.e_loop = rng.random(draws), rng.exponential(1.0, draws)
        self.u_client, self.e_client = rng.random(draws), rng.exponential(1.0, draws)
        phases = self.cpu_phases(workload)
        self.u_cpu = rng.random((draws, phases))
        self.e_cpu = rng.exponential(1.0, (draws, phases))
        # Drawn last, so that a workload without slow clients draws as before.
        slow = w.slow_clients
        self.send = w.client_send.sample(rng, draws) if slow else np.zeros(draws)
        self.recv = w.client_recv.sample(rng, draws) if slow else np.zeros(draws)

    @staticmethod
    def cpu_phases(workload: Workload) -> int:
        """CPU phases of a threaded request: its own work, then one after each
        backend answer it reads (under a GIL each is a separate hand-off)."""
        return 1 + (workload.calls if workload.fanout == "sequential" else min(workload.calls, 1))


def mixture(u: np.ndarray, e: np.ndarray, p_wait: float, mean_wait: float) -> np.ndarray:
    """Waits that are 0 with probability 1 - p_wait and exponential with mean
    ``mean_wait / p_wait`` otherwise (so their mean is ``mean_wait``)."""
    if p_wait <= 0 or mean_wait <= 0:
        return np.zeros(u.shape)
    if not math.isfinite(mean_wait):
        return np.where(u < p_wait, math.inf, 0.0)
    return np.where(u < p_wait, e * (mean_wait / p_wait), 0.0)


def mgc_wait(lam: float, mean: float, scv_: float, servers: int) -> tuple[float, float]:
    """(P(wait), mean wait) of M/G/c: Erlang C and Allen-Cunneen (exact for M/M/c)."""
    if lam <= 0 or mean <= 0:
        return 0.0, 0.0
    a = lam * mean
    if a >= servers:
        return 1.0, math.inf
    if servers == 1:
        return a, theory.mg1_mean_wait(lam, mean, math.sqrt(scv_))
    return theory.erlang_c(servers, a), theory.allen_cunneen_mean_wait(lam, mean, servers, cs2=scv_)


def scv(x: np.ndarray) -> float:
    """Squared coefficient of variation of draws."""
    m = float(x.mean())
    return float(x.var() / m**2) if m > 0 else 0.0


def cpu_waits(
    loads: dict[str, float],
    workload: Workload,
    platform: Platform,
    busiest: float,
    s: Sampler,
    *,
    first: np.ndarray,
    later: float,
) -> np.ndarray:
    """Each request's total wait for the CPU over its phases.

    A threaded request runs ``first`` (its own CPU, parsing, a wake-up), then
    one short phase of ``later`` seconds after each backend answer. Under a
    GIL a process runs one phase at a time: M/G/1 per process at the GIL's
    offered load (``loads``), with the phases' own second moment
    (Pollaczek-Khinchine: Wq = lam_phases E[S^2] / (2 (1 - rho))); ``busiest``
    is the busiest process's share of the load. The cores are M/G/c at their
    offered load (Allen-Cunneen). The worse of the two is charged to every
    phase, the wait given that it happens taken as exponential.
    """
    assert workload.rate is not None
    phases = s.u_cpu.shape[1]
    lam = workload.rate * busiest * phases
    mean = (float(first.mean()) + (phases - 1) * later) / phases
    second = (float(np.mean(first**2)) + (phases - 1) * later**2) / phases
    if mean <= 0:
        return np.zeros(len(s.cpu))
    scv_ = max(second / mean**2 - 1, 0.0)
    rho_gil, rho_cores = loads.get("gil", 0.0), loads.get("cores", 0.0)
    p_wait, mean_wait = 0.0, 0.0
    if rho_gil > 0:
        p_wait, mean_wait = rho_gil, lam * second / (2 * (1 - rho_gil))
    if rho_cores > 0 and platform.cores is not None:
        lam_all = rho_cores * platform.cores / mean
        pc, wc = mgc_wait(lam_all, mean, scv_, platform.cores)
        if wc > mean_wait:
            p_wait, mean_wait = pc, wc
    if mean_wait <= 0:
        return np.zeros(len(s.cpu))
    waits: np.ndarray = mixture(s.u_cpu, s.e_cpu, min(p_wait, 1.0), mean_wait).sum(axis=1)
    return waits


def client_wait(workload: Workload, served: np.ndarray, s: Sampler) -> np.ndarray:
    """The wait at the client: a client sends one request at a time, so a
    request that finds its client's previous one unanswered waits for it.
    Each client is M/G/1 with rate lam/N and service the server's latency
    (Pollaczek-Khinchine), which is what ``per_client_reference`` uses too."""
    assert workload.rate is not None
    lam = workload.rate / workload.connections
    mean = float(served.mean())
    rho = lam * mean
    if rho >= 1:
        return np.full(len(served), math.inf)
    wait = lam * float(np.mean(served**2)) / (2 * (1 - rho))
    return mixture(s.u_client, s.e_client, rho, wait)


def held_on_thread(
    workload: Workload,
    platform: Platform,
    offered: dict[str, float],
    busiest: float,
    s: Sampler,
    *,
    parse: float,
) -> tuple[np.ndarray, str]:
    """How long a threaded request holds its thread: its CPU (its own demand,
    ``parse`` seconds of parsing if the thread parses, issuing and reading its
    calls, its wake-ups), its backend calls and its CPU waits; and the name of
    the CPU's queue."""
    w, p = workload, platform
    us = 1e-6
    calls_cpu = w.calls * p.call_us * us
    switches = (1 + w.calls) * p.context_switch_us * us
    thread_cpu = s.cpu + parse + calls_cpu + switches
    phases = s.u_cpu.shape[1]
    later = (calls_cpu + switches) / phases if phases > 1 else 0.0
    first = thread_cpu - (phases - 1) * later
    cpu_wait = cpu_waits(offered, w, p, busiest, s, first=first, later=later)
    method = "M/G/1 CPU per process" if p.gil else "M/G/c CPU"
    return thread_cpu + s.io + cpu_wait, method
