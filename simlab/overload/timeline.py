"""Timelines and the overload block, from simulated records (and the recovery rule
that measured runs share).

A simulated timeline is built after the run from the per-request columns and
the levels ``simlab.metrics`` rebuilt, exactly as the summary is: counts per
1-second window, latency percentiles of the answers in each window (pooled
over replications), and each level's time-weighted mean over the window
(averaged over replications).

**Recovery.** After a spike (a schedule whose last step goes down), a run
has recovered at the first window from which the timeline stays healthy:
that window is healthy, at least ``STAY_HEALTHY`` of the windows after it
are, and so are the run's last ``TAIL`` windows. A window is healthy when,
over it and its two neighbours (3 s: a 1-second count at 100 requests/s
varies by 10%), the goodput is at least ``GOODPUT_SHARE`` of the offered
first attempts, and the median of the three windows' p99 is within
``P99_FACTOR`` times (or ``P99_SLACK_MS`` over) the p99 before the spike.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from simlab.metrics import Step, client_path
from simlab.models.base import COMPLETED, DROPPED, Record
from simlab.overload.policy import ABANDONED, REASONS
from simlab.overload.schedule import Schedule
from simlab.overload.summary import OverloadSummary, Recovery, Window
from simlab.params import Platform, Workload
from simlab.stats import ci95

__all__ = ["healthy_windows", "overload_summary", "recovery", "sim_timeline"]

GOODPUT_SHARE = 0.85
P99_FACTOR = 3.0
P99_SLACK_MS = 50.0
STAY_HEALTHY = 0.9
TAIL = 3
WINDOW_S = 1.0


def _edges(stop: float) -> np.ndarray:
    n = max(1, math.ceil(stop / WINDOW_S - 1e-9))
    edges: np.ndarray = np.minimum(np.arange(n + 1) * WINDOW_S, stop)
    return edges


def _column(c: dict[str, np.ndarray], name: str, fill: float, n: int) -> np.ndarray:
    out: np.ndarray = c[name] if name in c else np.full(n, fill)
    return out


def _per_window(times: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts, _ = np.histogram(times[np.isfinite(times)], bins=edges)
    return counts.astype(float)


def _level_means(step: Step, edges: np.ndarray) -> np.ndarray:
    return np.array([step.window(a, b)[1] for a, b in itertools.pairwise(edges)])


def sim_timeline(
    records: Sequence[Record], levels: Sequence[dict[str, Step]], platform: Platform, stop: float
) -> list[Window]:
    """Per-second windows over [0, stop), averaged over the replications."""
    edges = _edges(stop)
    widths = np.diff(edges)
    k = len(widths)
    keys = ("offered", "sent", "retries", "throughput", "goodput", "dropped", "timeouts")
    sums = {key: np.zeros(k) for key in keys}
    level_keys = {
        "in_flight": "in_flight",
        "queued": "queued",
        "threads": "threads_alive",
        "busy": "threads_busy",
        "memory_mib": "memory_mib",
        "cpu_cores": "cpu_busy",
    }
    level_sums = {key: np.zeros(k) for key in (*level_keys, "at_server")}
    latencies: list[list[np.ndarray]] = [[] for _ in range(k)]
    for rec, lv in zip(records, levels, strict=True):
        c = rec.columns
        n = len(c["arrival"])
        arrival, end, outcome = c["arrival"], c["end"], c["outcome"]
        attempt = _column(c, "attempt", 0, n)
        gave_up = _column(c, "gave_up", math.nan, n)
        reason = _column(c, "reason", 0, n)
        waited = np.isnan(gave_up)
        done = outcome == COMPLETED
        good = done & waited
        refused = (outcome == DROPPED) & waited & (reason != ABANDONED)
        sums["offered"] += _per_window(arrival[attempt == 0], edges)
        sums["sent"] += _per_window(arrival, edges)
        sums["retries"] += _per_window(arrival[attempt > 0], edges)
        sums["throughput"] += _per_window(end[done], edges)
        sums["goodput"] += _per_window(end[good], edges)
        sums["dropped"] += _per_window(end[refused], edges)
        sums["timeouts"] += _per_window(gave_up[~waited], edges)
        answer = end[good] + client_path(rec, platform)[good]
        latency = answer - arrival[good]
        slot = np.searchsorted(edges, answer, side="right") - 1
        for w in np.unique(slot[(slot >= 0) & (slot < k)]).tolist():
            latencies[w].append(latency[slot == w])
        for key, name in level_keys.items():
            level_sums[key] += _level_means(lv[name], edges)
        sent = c.get("sent", arrival)
        ends = np.where(np.isnan(end), math.inf, end)
        level_sums["at_server"] += _level_means(Step.build([(sent, ends, 1.0)]), edges)
    reps = max(1, len(records))
    out = []
    for w in range(k):
        lat = np.concatenate(latencies[w]) * 1e3 if latencies[w] else np.empty(0)
        rate = reps * widths[w]
        out.append(
            Window(
                t_s=float(edges[w]),
                offered_rps=float(sums["offered"][w] / rate),
                sent_rps=float(sums["sent"][w] / rate),
                retries_rps=float(sums["retries"][w] / rate),
                throughput_rps=float(sums["throughput"][w] / rate),
                goodput_rps=float(sums["goodput"][w] / rate),
                dropped_rps=float(sums["dropped"][w] / rate),
                timeouts_rps=float(sums["timeouts"][w] / rate),
                p50_ms=float(np.percentile(lat, 50)) if len(lat) else None,
                p99_ms=float(np.percentile(lat, 99)) if len(lat) else None,
                **{key: float(level_sums[key][w] / reps) for key in level_sums},
            )
        )
    return out


def overload_summary(
    records: Sequence[Record],
    workload: Workload,
    timeline: Sequence[Window] | None,
    warmup: float,
) -> OverloadSummary:
    """The overload block over the measurement window of each replication."""
    users = attempts = retries = timeouts = 0
    goodputs: list[float] = []
    wasted = answered = 0
    served: list[float] = []
    dropped: dict[str, int] = {}
    bids: list[np.ndarray] = []
    hedged = throttled = 0.0
    for rec in records:
        c = rec.columns
        n = len(c["arrival"])
        t0, t1 = rec.window
        arrival, end, outcome = c["arrival"], c["end"], c["outcome"]
        attempt = _column(c, "attempt", 0, n)
        gave_up = _column(c, "gave_up", math.nan, n)
        reason = _column(c, "reason", 0, n)
        origin = c["origin"] if "origin" in c else np.arange(n)
        measured = (arrival >= t0) & (arrival < t1)
        waited = np.isnan(gave_up)
        done = outcome == COMPLETED
        good = done & waited
        in_window = (end >= t0) & (end < t1)
        first = measured & (attempt == 0)
        users += int(first.sum())
        attempts += int(measured.sum())
        retries += int((measured & (attempt > 0)).sum())
        timeouts += int((measured & ~waited).sum())
        goodputs.append(float((good & in_window).sum()) / (t1 - t0))
        wasted += int((done & ~waited & in_window).sum())
        answered += int((done & in_window).sum())
        if first.any():
            ok = np.zeros(n, dtype=bool)
            ok[origin[good]] = True
            served.append(float(ok[first].mean()))
        for code, name in REASONS.items():
            count = int((measured & (outcome == DROPPED) & (reason == code)).sum())
            if count:
                dropped[name] = dropped.get(name, 0) + count
        if "bids" in c:
            b = c["bids"][measured & good]
            bids.append(b[~np.isnan(b)])
        if rec.overload is not None:
            hedged += rec.overload.get("hedged_calls", 0.0)
            throttled += rec.overload.get("throttled_retries", 0.0)
    all_bids = np.concatenate(bids) if bids else np.empty(0)
    total = sum(len(rec.columns["arrival"]) for rec in records)
    hedging = workload.backend is not None and workload.backend.hedge is not None
    budget = workload.clients is not None and workload.clients.budget is not None
    rec_block = None
    if timeline is not None and workload.schedule is not None:
        rec_block = recovery(timeline, workload.schedule, warmup)
    return OverloadSummary(
        users=users,
        attempts=attempts,
        retries=retries,
        timeouts=timeouts,
        goodput_rps=float(np.mean(goodputs)) if goodputs else 0.0,
        goodput_ci95=ci95(goodputs),
        wasted_share=wasted / answered if answered else None,
        users_served=float(np.mean(served)) if served else None,
        dropped_by=dict(sorted(dropped.items())),
        bids_share=float(all_bids.mean()) if len(all_bids) else None,
        hedged_calls_per_request=hedged / total if hedging and total else None,
        throttled_retries=int(throttled) if budget else None,
        recovery=rec_block,
    )


def _rolling(values: np.ndarray) -> np.ndarray:
    """Sums over each window and its two neighbours (fewer at the edges)."""
    padded = np.concatenate(([0.0], values, [0.0]))
    return padded[:-2] + padded[1:-1] + padded[2:]


def healthy_windows(
    timeline: Sequence[Window] | Sequence[dict[str, Any]], baseline_p99_ms: float | None
) -> np.ndarray:
    """Which windows are healthy (see the module's docstring)."""
    rows = [w.to_dict() if isinstance(w, Window) else w for w in timeline]
    offered = np.array([r["offered_rps"] for r in rows], dtype=float)
    goodput = np.array([r["goodput_rps"] for r in rows], dtype=float)
    p99 = np.array([np.nan if r["p99_ms"] is None else r["p99_ms"] for r in rows], dtype=float)
    ok = _rolling(goodput) >= GOODPUT_SHARE * _rolling(offered)
    ok &= _rolling(offered) > 0
    if baseline_p99_ms is not None:
        bound = max(P99_FACTOR * baseline_p99_ms, baseline_p99_ms + P99_SLACK_MS)
        padded = np.concatenate(([np.nan], p99, [np.nan]))
        three = np.stack([padded[:-2], padded[1:-1], padded[2:]])
        with np.errstate(all="ignore"):
            med = np.nanmedian(np.where(np.isnan(three), np.inf, three), axis=0)
        ok &= med <= bound
    return ok


def recovery(
    timeline: Sequence[Window] | Sequence[dict[str, Any]], schedule: Schedule, warmup: float
) -> Recovery | None:
    """When the run recovered after its spike (None: the schedule has no step down)."""
    spike_end = schedule.settles_at()
    if spike_end is None:
        return None
    rows = [w.to_dict() if isinstance(w, Window) else w for w in timeline]
    first_change = schedule.times[1]
    before = [
        r["p99_ms"]
        for r in rows
        if r["t_s"] >= warmup and r["t_s"] + WINDOW_S <= first_change and r["p99_ms"] is not None
    ]
    baseline = float(np.median(before)) if before else None
    ok = healthy_windows(rows, baseline)
    after = [k for k, r in enumerate(rows) if r["t_s"] >= spike_end]
    found: float | None = None
    share = float(ok[after].mean()) if after else 0.0
    tail_ok = bool(ok[-TAIL:].all()) if len(ok) >= TAIL else bool(ok.all())
    for k in after:
        rest = ok[k:]
        if ok[k] and rest.mean() >= STAY_HEALTHY and tail_ok:
            found = float(rows[k]["t_s"]) - spike_end
            break
    return Recovery(
        spike_end_s=spike_end,
        recovered_s=found,
        baseline_p99_ms=baseline,
        healthy_share_after=share,
    )
