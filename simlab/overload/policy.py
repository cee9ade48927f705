"""What clients, servers and backends do under overload: the knobs, as frozen values.

- ``Clients``: a client gives up on an attempt after ``timeout`` and
  retries up to ``retries`` times, after an exponential backoff with full
  jitter (uniform in [0, min(backoff_max, backoff * 2^n)] before the n-th
  retry, as the AWS architecture blog recommends), optionally under a retry
  budget: a token bucket as gRPC's retry throttling (gRFC A6) has it, shared
  by all clients (one load generator is one gRPC channel): it holds
  ``budget`` tokens, a failed attempt costs one, a success gives back
  ``token_ratio``, and a retry is allowed only while more than half the
  tokens are left. ``syn_retries``: when a server's accept backlog is full,
  Linux drops the SYN and the client's kernel retransmits it after 1 s,
  then 2 s, 4 s, ... (``tcp_syn_retries``, 6 by default); 0 keeps simlab's
  simpler model, in which a full backlog refuses the connection at once.
- ``Limits`` (the server): ``max_inflight`` answers 503 at once when that
  many requests are already in the server (uvicorn's
  ``--limit-concurrency``); ``queue_deadline`` drops a request that waited
  longer than that for a thread or the loop, without doing its work;
  ``offload`` runs an async handler's blocking calls on a thread pool of
  ``workers`` threads (``run_in_executor``) instead of on the loop.
- ``Backend``: ``pool`` calls at most served at once (a connection pool of
  K; more wait in turn, so the backend is an M/G/K queue whose latency
  grows with its load); ``deadline`` takes the best of the answers a
  fan-out has by then (an ad auction); ``hedge`` re-sends a call still
  unanswered after that long, and takes whichever answer comes first.
- ``Mix``: a share of the requests is CPU-heavy (``heavy_cpu`` of CPU
  instead of their own) and a share makes a blocking call of ``blocking``
  seconds (a synchronous driver): on a thread it only blocks that thread;
  on an event loop it holds the whole loop.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from simlab.errors import UserError

__all__ = ["REASONS", "Backend", "Clients", "Limits", "Mix", "fast_blocker", "in_play"]

# Why an attempt was dropped (a request's ``reason``; 0: it was not): the
# backlog refused its connection, the concurrency limit shed it (503), it
# waited past the queue deadline, its connect failed after the SYN retries,
# or its client withdrew it before sending it (a timeout at the client).
REFUSED, SHED, EXPIRED, CONNECT, ABANDONED = 1, 2, 3, 4, 5
REASONS = {
    REFUSED: "refused",
    SHED: "shed",
    EXPIRED: "expired",
    CONNECT: "connect_failed",
    ABANDONED: "abandoned",
}

MAX_RETRIES = 10
MAX_SYN_RETRIES = 10


def _positive(name: str, value: float | None, *, zero: bool = False) -> None:
    if value is None:
        return
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not zero):
        raise UserError(f"{name}(={value!r}) must be a number {'>=' if zero else '>'} 0")


def _count(name: str, value: int | None, low: int, high: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(f"{name}(={value!r}) must be an integer in [{low}, {high}]")


def _share(name: str, value: float) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not 0 <= value <= 1:
        raise UserError(f"{name}(={value!r}) must be a share in [0, 1]")


@dataclass(frozen=True)
class Clients:
    """How clients give up and retry (times in seconds)."""

    timeout: float | None = None
    retries: int = 0
    backoff: float = 0.1
    backoff_max: float = 10.0
    budget: float | None = None
    token_ratio: float = 0.1
    syn_retries: int = 0

    def __post_init__(self) -> None:
        _positive("timeout", self.timeout)
        _count("retries", self.retries, 0, MAX_RETRIES)
        _positive("backoff", self.backoff, zero=True)
        _positive("backoff_max", self.backoff_max, zero=True)
        _positive("budget", self.budget)
        _positive("token_ratio", self.token_ratio, zero=True)
        _count("syn_retries", self.syn_retries, 0, MAX_SYN_RETRIES)

    @property
    def active(self) -> bool:
        return self.timeout is not None or self.retries > 0 or self.syn_retries > 0

    def backoff_bound(self, retry: int) -> float:
        """The upper end of the jittered wait before retry number ``retry`` (1, 2, ...)."""
        return min(self.backoff_max, self.backoff * 2.0 ** (retry - 1))

    def describe(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Limits:
    """The server's own overload controls."""

    max_inflight: int | None = None
    queue_deadline: float | None = None
    offload: bool = False

    def __post_init__(self) -> None:
        _count("max_inflight", self.max_inflight, 1, 10**9)
        _positive("queue_deadline", self.queue_deadline)
        if not isinstance(self.offload, bool):
            raise UserError(f"offload(={self.offload!r}) must be true or false")

    @property
    def active(self) -> bool:
        return self.max_inflight is not None or self.queue_deadline is not None or self.offload

    def describe(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Backend:
    """The backend's limits and the fan-out's deadline and hedging (seconds)."""

    pool: int | None = None
    deadline: float | None = None
    hedge: float | None = None

    def __post_init__(self) -> None:
        _count("pool", self.pool, 1, 10**9)
        _positive("deadline", self.deadline)
        _positive("hedge", self.hedge)

    @property
    def active(self) -> bool:
        return self.pool is not None or self.deadline is not None or self.hedge is not None

    def describe(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Mix:
    """A share of heavy requests and a share of blocking calls (seconds)."""

    heavy_share: float = 0.0
    heavy_cpu: float = 0.0
    blocking_share: float = 0.0
    blocking: float = 0.0

    def __post_init__(self) -> None:
        _share("heavy_share", self.heavy_share)
        _share("blocking_share", self.blocking_share)
        _positive("heavy_cpu", self.heavy_cpu, zero=True)
        _positive("blocking", self.blocking, zero=True)

    @property
    def active(self) -> bool:
        return (self.heavy_share > 0 and self.heavy_cpu >= 0) or (
            self.blocking_share > 0 and self.blocking > 0
        )

    @property
    def blocks(self) -> bool:
        return self.blocking_share > 0 and self.blocking > 0

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def in_play(workload: Any, arch: Any) -> bool:
    """True when any overload option is set on this workload or architecture."""
    if workload.schedule is not None:
        return True
    for part in (workload.clients, workload.backend, workload.mix, arch.limits):
        if part is not None and part.active:
            return True
    return False


def fast_blocker(workload: Any, arch: Any) -> str | None:
    """Why the fast engine cannot reproduce a run with these overload options, or None."""
    w = workload
    if w.schedule is not None:
        return "a rate schedule varies the arrival rate (fast needs a number for --rate)"
    if w.clients is not None and w.clients.active:
        return "client timeouts and retries feed back on the answers (fast needs them off)"
    if arch.limits is not None and arch.limits.active:
        return "a concurrency limit, queue deadline or offload moves work (fast needs none)"
    if w.backend is not None and w.backend.active:
        return "a backend pool, fan-out deadline or hedging shapes each call (fast needs none)"
    if w.mix is not None and w.mix.active:
        return "a heavy or blocking request mix (fast needs none)"
    return None
