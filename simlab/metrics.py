"""Turning one replication's record into levels and numbers, and replications into a summary.

Levels (threads alive, threads busy, memory, queue lengths, in-flight
requests) are piecewise-constant functions of time. They are not sampled
during the run: they are rebuilt afterwards from the per-request times and
the interval records, exactly, so the simulation's hot path only writes
timestamps. Peaks and time-weighted means are exact over the window.

Across replications, each mean carries a 95% confidence interval from the
t distribution over independent replications (``simlab.stats.ci95``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from simlab.footprint import KIB_PER_MIB, Units, unit_costs
from simlab.models.base import COMPLETED, DROPPED, Record
from simlab.params import Platform

__all__ = ["Step", "replication_levels", "replication_summary", "series"]


@dataclass(frozen=True)
class Step:
    """A level equal to ``base`` before ``times[0]`` and to ``levels[k]`` from ``times[k]`` on."""

    times: np.ndarray
    levels: np.ndarray
    base: float

    @classmethod
    def build(cls, parts: list[tuple[np.ndarray, np.ndarray, float]], base: float = 0.0) -> Step:
        """Sum of ``weight`` over intervals [start, end); an end of nan or inf never comes."""
        times: list[np.ndarray] = []
        deltas: list[np.ndarray] = []
        for starts, ends, weight in parts:
            if weight == 0 or len(starts) == 0:
                continue
            began = ~np.isnan(starts)
            s, e = starts[began], ends[began]
            times.append(s)
            deltas.append(np.full(len(s), weight))
            ended = np.isfinite(e)
            times.append(e[ended])
            deltas.append(np.full(int(ended.sum()), -weight))
        t = np.concatenate(times) if times else np.empty(0)
        if len(t) == 0:
            return cls(np.empty(0), np.empty(0), float(base))
        d = np.concatenate(deltas)
        order = np.argsort(t, kind="stable")
        t, d = t[order], d[order]
        # Events at the same instant are netted first, so an interval ending as
        # another starts does not show as a momentary peak.
        first = np.flatnonzero(np.concatenate(([True], t[1:] != t[:-1])))
        return cls(t[first], base + np.cumsum(np.add.reduceat(d, first)), float(base))

    def window(self, t0: float, t1: float) -> tuple[float, float]:
        """(peak, time-weighted mean) over [t0, t1)."""
        k0 = int(np.searchsorted(self.times, t0, side="right"))
        k1 = int(np.searchsorted(self.times, t1, side="left"))
        first = self.base if k0 == 0 else float(self.levels[k0 - 1])
        values = np.concatenate(([first], self.levels[k0:k1]))
        edges = np.concatenate(([t0], self.times[k0:k1], [t1]))
        mean = float(np.dot(values, np.diff(edges)) / (t1 - t0))
        return float(values.max()), mean

    def at(self, grid: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.times, grid, side="right")
        padded = np.concatenate(([self.base], self.levels))
        return padded[idx]


def _ends(end: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(end), math.inf, end)


def replication_levels(rec: Record, platform: Platform) -> dict[str, Step]:
    """Every level of one replication, memory in MiB."""
    c = rec.columns
    arrival, admit, start, end = c["arrival"], c["admit"], c["start"], c["end"]
    kept = c["outcome"] != DROPPED
    # The client sees each answer rtt after the server sends it.
    end_kept = _ends(end[kept]) + client_path(rec, platform)[kept]
    busy_end = start + c["cpu_time"] if rec.busy_on_cpu else _ends(end)
    if not rec.busy_on_cpu and "let_go" in c:
        # A worker let go before the end: a loop or a front writes the rest out.
        busy_end = np.where(np.isnan(c["let_go"]), busy_end, c["let_go"])
    iv = rec.intervals
    base = rec.base
    threads = (iv["threads"][0], iv["threads"][1], 1.0)
    forks = (iv["forks"][0], iv["forks"][1], 1.0)
    conns = (iv["connections"][0], iv["connections"][1], 1.0)
    server = (admit[kept], end_kept, 1.0)
    levels = {
        "threads_alive": Step.build([threads], base["threads"]),
        "threads_busy": Step.build([(start, busy_end, 1.0)]),
        "connections": Step.build([conns], base["connections"]),
        "in_flight": Step.build([(arrival[kept], end_kept, 1.0)]),
        "queued": Step.build(
            [(arrival[kept], np.where(np.isnan(start[kept]), math.inf, start[kept]), 1.0)]
        ),
        "cpu_busy": Step.build([(iv["cpu"][0], iv["cpu"][1], 1.0)]),
    }
    # Memory: each unit's life weighted by its cost (``simlab.footprint``).
    # Pre-forked copies serve from the start, so their copy-on-write growth
    # is counted from time 0.
    costs = unit_costs(platform)
    # A buffering front (two-tier) holds its client connections at its own cost.
    front_conns = base.get("front_conns", 0)
    base_units = Units(
        touched=base.get("copies", 0),
        fork=base["forks"],
        thread=base["threads"],
        connection=base["connections"] - front_conns,
        front=base.get("fronts", 0),
        front_conn=front_conns,
    ).footprint(platform)
    fork, thread, conn = costs["fork"], costs["thread"], costs["connection"]
    user_parts = [
        (forks[0], forks[1], fork[0] / KIB_PER_MIB),
        (threads[0], threads[1], thread[0] / KIB_PER_MIB),
        (conns[0], conns[1], conn[0] / KIB_PER_MIB),
        (server[0], server[1], costs["task"][0] / KIB_PER_MIB),
    ]
    kernel_parts = [
        (forks[0], forks[1], fork[1] / KIB_PER_MIB),
        (threads[0], threads[1], thread[1] / KIB_PER_MIB),
        (conns[0], conns[1], conn[1] / KIB_PER_MIB),
    ]
    first_use, last = _first_use(rec)
    if rec.calls > 0:
        backend = costs["backend_conn"]
        user_parts.append((first_use, last, backend[0] / KIB_PER_MIB))
        kernel_parts.append((first_use, last, backend[1] / KIB_PER_MIB))
    if rec.own_process:
        user_parts.append((first_use, last, costs["touched"][0] / KIB_PER_MIB))
    # A slow client's bytes wait in socket buffers while they trickle.
    for kind, kib in zip(("send_buffers", "recv_buffers"), rec.buffers_kib, strict=True):
        if kind in iv and len(iv[kind][0]):
            kernel_parts.append((iv[kind][0], iv[kind][1], kib / KIB_PER_MIB))
    user_base, kernel_base = base_units.user_kib, base_units.kernel_kib
    levels["user_mib"] = Step.build(user_parts, user_base / KIB_PER_MIB)
    levels["kernel_mib"] = Step.build(kernel_parts, kernel_base / KIB_PER_MIB)
    levels["memory_mib"] = Step.build(
        user_parts + kernel_parts, (user_base + kernel_base) / KIB_PER_MIB
    )
    levels["virtual_mib"] = Step.build(
        [(threads[0], threads[1], thread[2] / KIB_PER_MIB)],
        base_units.reserved_kib / KIB_PER_MIB,
    )
    return levels


# The client path's draws have a generator of their own, keyed by the seed,
# the replication and this tag, so that they do not disturb the model's
# streams and are the same for a replication whatever the model or engine.
CLIENT_PATH_STREAM = 0x977


def client_path(rec: Record, platform: Platform) -> np.ndarray:
    """Each request's client and loopback time (seconds), drawn from the
    platform's rtt distribution with a generator seeded by the replication."""
    n = len(rec.columns["arrival"])
    dist = platform.rtt()
    if dist.mean == 0:
        return np.zeros(n)
    rng = np.random.default_rng([rec.seed, rec.replication, CLIENT_PATH_STREAM])
    return dist.sample(rng, n)


def _first_use(rec: Record) -> tuple[np.ndarray, np.ndarray]:
    """For each worker that served a request: when it first did, and when it ends."""
    c = rec.columns
    served = ~np.isnan(c["start"]) & (c["worker"] >= 0)
    if not served.any():
        return np.empty(0), np.empty(0)
    workers, first = np.unique(
        c["worker"][served][np.argsort(c["start"][served])], return_index=True
    )
    times = np.sort(c["start"][served])[first]
    if rec.worker_is_thread_handle:
        ends = rec.intervals["threads"][1][workers]
    else:
        ends = np.full(len(workers), math.inf)
    return times, ends


def replication_summary(
    rec: Record, platform: Platform, levels: dict[str, Step] | None = None
) -> dict[str, Any]:
    """One replication's numbers over the measurement window."""
    t0, t1 = rec.window
    c = rec.columns
    arrival, end, outcome = c["arrival"], c["end"], c["outcome"]
    measured = (arrival >= t0) & (arrival < t1)
    done = measured & (outcome == COMPLETED)
    rtt = client_path(rec, platform)[done]
    latency = end[done] - arrival[done] + rtt
    wait = np.maximum(latency - rtt - c["service"][done], 0.0)
    finished_in_window = (outcome == COMPLETED) & (end >= t0) & (end < t1)
    out: dict[str, Any] = {
        "requests": int(measured.sum()),
        "completed": int(done.sum()),
        "dropped": int((measured & (outcome == DROPPED)).sum()),
        "throughput_rps": float(finished_in_window.sum()) / (t1 - t0),
        "latency": latency,
        "wait": wait,
    }
    out["incomplete"] = out["requests"] - out["completed"] - out["dropped"]
    if levels is None:
        levels = replication_levels(rec, platform)
    for key, step in levels.items():
        out[f"{key}_peak"], out[f"{key}_mean"] = step.window(t0, t1)
    # In a stable system the number in the system at the end of the window is,
    # on average, what it was at the start; overload makes it grow.
    at_start, at_end = levels["in_flight"].at(np.array([t0, t1]))
    out["growth"] = float(at_end - at_start)
    return out


def series(rec: Record, levels: dict[str, Step], points: int = 241) -> dict[str, np.ndarray]:
    """Every level sampled on a regular grid from 0 to the end of the window."""
    grid = np.linspace(0.0, rec.window[1], points)
    out = {"time": grid}
    for key, step in levels.items():
        out[key] = step.at(grid)
    return out
