"""A real run's timeline and overload block, with the simulated ones' keys.

The load generator counts, per second from the run's start, what it
offered, sent, retried, got back (``goodput``), saw come back late on a
connection it had given up (``throughput`` counts both: the server's
answers) and lost (``simlab.real.retrying``); the probe samples the
server's threads, memory and CPU. Here they become ``Window`` rows and the
``OverloadSummary``, judged for recovery by the same rule as a simulation
(``simlab.overload.timeline.recovery``). What the lab cannot see from
outside the server (its own queue, its busy threads) is None.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from simlab.overload.summary import OverloadSummary, Window
from simlab.overload.timeline import recovery
from simlab.params import Workload
from simlab.stats import ci95

__all__ = ["measured_overload", "measured_timeline"]


def _probe_window(
    samples: Sequence[dict[str, float]], t0: float, k: int
) -> tuple[float | None, float | None, float | None]:
    """(threads, memory MiB, CPU cores) of the server over second ``k``."""
    inside = [s for s in samples if t0 + k <= s["time"] < t0 + k + 1]
    if not inside:
        return None, None, None
    threads = float(np.mean([s["threads"] for s in inside]))
    memory = [s["memory_mib"] for s in inside if math.isfinite(s["memory_mib"])]
    before = [s for s in samples if s["time"] < t0 + k]
    first = before[-1] if before else inside[0]
    last = inside[-1]
    dt = last["time"] - first["time"]
    cpu = (last["cpu_s"] - first["cpu_s"]) / dt if dt > 0 else None
    return threads, float(np.mean(memory)) if memory else None, cpu


def _work_per_window(work: tuple[dict[int, int], int], t0: float, windows: int) -> np.ndarray:
    """Requests the server finished per window, from the backend's answers per
    tenth of a second (a tenth goes to the window its middle falls in)."""
    answers, calls = work
    out = np.zeros(windows)
    for tenth, n in answers.items():
        k = math.floor((tenth + 0.5) / 10 - t0)
        if 0 <= k < windows:
            out[k] += n / calls
    return out


def measured_timeline(
    report: dict[str, Any],
    probe: Sequence[dict[str, float]],
    work: tuple[dict[int, int], int] | None = None,
) -> list[Window]:
    """The per-second windows of a real run (``report``: the load generator's
    overload report; ``probe``: the probe's samples, wall-clock times;
    ``work``: the backend's answers per tenth of a second and the calls per
    request, which count the server's answers, late ones included).

    ``at_server`` is, with ``work``, the requests sent and neither answered
    nor refused yet (running counts); without it, the load generator's own
    count of attempts outstanding plus the connections it gave up on that
    are still open (at most ``Orphan.CAP``)."""
    w = report["windows"]
    t0 = report["t0_wall"]
    n = len(w["sent"])
    served = _work_per_window(work, t0, n) if work is not None else None
    inside = 0.0
    out = []
    for k in range(n):
        threads, memory, cpu = _probe_window(probe, t0, k)
        throughput = float(w["throughput"][k]) if served is None else float(served[k])
        at_server = w["at_server"][k]
        if served is not None:
            late = w["late_dropped"][k] if "late_dropped" in w else 0
            inside = max(0.0, inside + w["sent"][k] - w["dropped"][k] - late - served[k])
            at_server = inside
        out.append(
            Window(
                t_s=float(k),
                offered_rps=float(w["offered"][k]),
                sent_rps=float(w["sent"][k]),
                retries_rps=float(w["retries"][k]),
                throughput_rps=throughput,
                goodput_rps=float(w["goodput"][k]),
                dropped_rps=float(w["dropped"][k]),
                timeouts_rps=float(w["timeouts"][k]),
                p50_ms=w["p50_ms"][k],
                p99_ms=w["p99_ms"][k],
                in_flight=w["in_flight"][k],
                at_server=at_server,
                queued=None,
                threads=threads,
                busy=None,
                memory_mib=memory,
                cpu_cores=cpu,
            )
        )
    return out


def measured_overload(
    report: dict[str, Any],
    windows: Sequence[Window],
    workload: Workload,
    warmup: float,
    duration: float,
) -> OverloadSummary:
    """The overload block of a real run, over its measurement window."""
    good = report["good_in_window"]
    inside = [x for x in windows if warmup <= x.t_s and x.t_s + 1 <= warmup + duration + 1e-9]
    served = sum(x.throughput_rps for x in inside)
    # Goodput per second of the window, for a batch-means interval like the simulation's.
    per_second = [x.goodput_rps for x in inside]
    rec = recovery(windows, workload.schedule, warmup) if workload.schedule is not None else None
    hedging = workload.backend is not None and workload.backend.hedge is not None
    budget = workload.clients is not None and workload.clients.budget is not None
    return OverloadSummary(
        users=int(report["users"]),
        attempts=int(report["attempts"]),
        retries=int(report["retries"]),
        timeouts=int(report["timeouts"]),
        goodput_rps=good / duration,
        goodput_ci95=ci95(per_second) if len(per_second) >= 2 else None,
        wasted_share=max(0.0, 1.0 - good / served) if served else None,
        users_served=report["users_served"],
        dropped_by=report["dropped_by"],
        bids_share=report["bids_share"],
        hedged_calls_per_request=None if not hedging else report.get("hedged_per_request"),
        throttled_retries=int(report["throttled"]) if budget else None,
        recovery=rec,
    )
