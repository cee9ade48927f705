"""What a run under overload reports: a timeline of 1-second windows, and the
overload block. Both have the same keys in ``simulate`` and ``measure``.

``Window`` is one second of the run (from its start, warm-up included):
rates per second of what was offered (first attempts), sent (attempts,
retries included), answered (``throughput_rps``: every answer the server
sent, wasted ones included) and answered while the client still waited
(``goodput_rps``); drops and timeouts per second; the p50 and p99 of the
latency of the answers the clients got in that second; and the levels'
means over the second: attempts the clients wait on (``in_flight``),
requests the server holds (``at_server``, abandoned ones included), queued
at the server, threads alive and busy, resident memory, CPU cores busy. A
level the real lab cannot see is None there (the server's queue, its busy
threads).

``OverloadSummary`` is the run's overload block: users (first attempts)
and attempts in the measurement window, retries and timeouts, goodput,
the share of the server's answers that nobody waited for (wasted work),
the share of users who got an answer in time, drops by reason, the fan-out
bids received by the deadline, and recovery after a spike (the schedule's
last step down): when the timeline became healthy again, if it did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from simlab.results import CI, Plain

__all__ = ["OverloadSummary", "Recovery", "Window"]


@dataclass(frozen=True)
class Window(Plain):
    """One second of a run (see the module's docstring for each key)."""

    t_s: float
    offered_rps: float
    sent_rps: float
    retries_rps: float
    throughput_rps: float
    goodput_rps: float
    dropped_rps: float
    timeouts_rps: float
    p50_ms: float | None
    p99_ms: float | None
    in_flight: float | None
    at_server: float | None
    queued: float | None
    threads: float | None
    busy: float | None
    memory_mib: float | None
    cpu_cores: float | None


@dataclass(frozen=True)
class Recovery(Plain):
    """Recovery after the spike: ``spike_end_s`` is when the schedule stepped
    back down, ``recovered_s`` how long after it the timeline turned healthy for
    good (None: not within the run), judged against ``baseline_p99_ms`` (the
    windows before the spike) by the rule in ``simlab.overload.timeline``."""

    spike_end_s: float
    recovered_s: float | None
    baseline_p99_ms: float | None
    healthy_share_after: float


@dataclass(frozen=True)
class OverloadSummary(Plain):
    """The overload block (see the module's docstring)."""

    users: int
    attempts: int
    retries: int
    timeouts: int
    goodput_rps: float
    goodput_ci95: CI
    wasted_share: float | None
    users_served: float | None
    dropped_by: Mapping[str, int]
    bids_share: float | None
    hedged_calls_per_request: float | None
    throttled_retries: int | None
    recovery: Recovery | None
