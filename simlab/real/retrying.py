"""The load generator's overload dynamics: schedules, timeouts, retries, SYN retransmits,
and per-second windows, as the simulation has them (``simlab.overload.des``).

``ClientDynamics`` hangs off the load generator (``loadgen.Generator.ov``)
when any of these is asked for, and sees every attempt:

- **Timeouts.** An attempt is given up ``attempt_timeout`` after its
  intended send time. One still queued at its client (behind another
  request on the connection, or waiting for the connection to open) is
  withdrawn. One the server has is left to it: its connection is handed to
  an ``Orphan``, which only waits for the late answer (counted as
  throughput, not goodput: the server's wasted work) and then closes, and
  the client connects afresh for whatever it sends next, because an
  HTTP/1.1 connection with a request in flight cannot carry another. At
  most ``Orphan.CAP`` orphans stay open (file descriptors); beyond that the
  oldest is closed and its answer goes unseen (counted).
- **Retries.** A timed-out attempt, a 503, a reset or a refused connection
  is retried after ``uniform(0, min(backoff_max, backoff * 2^(n-1)))``,
  while ``retries`` and the retry budget allow (a token bucket shared by
  every client: a failure costs 1, a success gives back ``token_ratio``,
  retries only while more than half the tokens are left, as gRPC's retry
  throttling).
- **SYN retransmits.** With ``syn_retries``, a connection's socket gets
  ``TCP_SYNCNT``: when the server's accept backlog is full, Linux drops the
  SYN and the kernel retransmits it after 1 s, 2 s, 4 s...
- **Windows.** Counts per second from the run's start (warm-up included)
  with the simulated timeline's keys (``simlab.overload.summary.Window``).

It imports nothing from the simulation (the load generator is a lean process).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import httptools
import numpy as np

if TYPE_CHECKING:
    from simlab.real.loadgen import Conn, Generator
    from simlab.real.pacing import At

__all__ = ["Attempt", "ClientDynamics", "Orphan", "scheduled_gaps"]

BATCH = 4096
KINDS = (
    "offered", "sent", "retries", "throughput", "goodput", "dropped", "timeouts", "late_dropped",
)  # fmt: skip


class Attempt:
    """One attempt at a request: its intended send time, its number (0 for the
    first), the request it belongs to, and its timeout timer."""

    __slots__ = ("done", "intended", "n", "origin", "timer")

    def __init__(self, intended: float, n: int = 0, origin: int = -1) -> None:
        self.intended = intended
        self.n = n
        self.origin = origin
        self.timer: At | None = None
        self.done = False


def scheduled_gaps(
    schedule: tuple[tuple[float, float], ...], rng: np.random.Generator, connections: int, t0: float
) -> Iterator[tuple[float, int]]:
    """Send times (``t0`` + seconds) and clients of Poisson arrivals at the
    schedule's rate, by time rescaling (as the simulation draws them)."""
    times = [t for t, _ in schedule]
    rates = [r for _, r in schedule]
    last = len(times) - 1
    k = 0
    pos = 0.0
    while True:
        units = rng.exponential(1.0, BATCH).tolist()
        picks = rng.integers(0, connections, BATCH).tolist()
        for unit, pick in zip(units, picks, strict=True):
            e = unit
            while True:
                end = times[k + 1] if k < last else math.inf
                rate = rates[k]
                if rate > 0:
                    gap = e * (1.0 / rate)
                    if pos + gap < end:
                        break
                    e -= (end - pos) * rate
                if end == math.inf:
                    return
                pos = end
                k += 1
            pos += gap
            yield t0 + pos, pick


class Orphan(asyncio.Protocol):
    """A connection whose client gave up on its request: it waits for the late
    answer only to count it, then closes."""

    CAP = 4000

    def __init__(self, owner: ClientDynamics, transport: asyncio.Transport) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = transport
        self.parser = httptools.HttpResponseParser(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.close()

    def on_message_complete(self) -> None:
        self.owner.late(self.parser.get_status_code())
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.owner.orphans.pop(self, None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self.owner.orphans.pop(self, None)


class ClientDynamics:
    """Timeouts, retries, the retry budget, SYN retransmits and windows."""

    @staticmethod
    def wanted(spec: Any) -> bool:
        return bool(
            spec.attempt_timeout is not None
            or spec.retries
            or spec.syn_retries
            or spec.windows
            or spec.schedule is not None
        )

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        spec = gen.spec
        self.spec = spec
        # The jitter has a stream of its own, so the arrivals stay as they were.
        self.rng = np.random.default_rng([spec.seed, 0x7E7])
        self.tokens = spec.budget if spec.budget is not None else 0.0
        self.throttled = 0
        self.next_origin = 0
        self.n = max(1, math.ceil(spec.warmup + spec.duration))
        self.counts = {k: [0] * self.n for k in KINDS}
        self.latency: list[list[float]] = [[] for _ in range(self.n)]
        self.flight_sum = [0.0] * self.n
        self.server_sum = [0.0] * self.n
        self.samples = [0] * self.n
        self.orphans: dict[Orphan, None] = {}
        self.unseen = 0
        self.users: set[int] = set()
        self.served: set[int] = set()
        self.measured = {"attempts": 0, "retries": 0, "timeouts": 0, "good": 0, "late": 0}
        self.dropped_by: dict[str, int] = {}
        self.bid_shares: list[float] = []

    # --------------------------------------------------------------- windows

    def _slot(self, t: float) -> int:
        k = int(t - self.gen.t0)
        return k if 0 <= k < self.n and t >= self.gen.t0 else -1

    def _count(self, kind: str, t: float) -> None:
        k = self._slot(t)
        if k >= 0:
            self.counts[kind][k] += 1

    def sample(self, now: float) -> None:
        k = self._slot(now)
        if k >= 0:
            self.flight_sum[k] += self.gen.outstanding
            self.server_sum[k] += self.gen.outstanding + len(self.orphans)
            self.samples[k] += 1

    # -------------------------------------------------------------- attempts

    def dispatched(self, conn: Conn, attempt: Attempt) -> None:
        if attempt.origin < 0:
            attempt.origin = self.next_origin
            self.next_origin += 1
        t = attempt.intended
        self._count("sent", t)
        self._count("offered" if attempt.n == 0 else "retries", t)
        if self.gen._measured(t):
            self.measured["attempts"] += 1
            if attempt.n == 0:
                self.users.add(attempt.origin)
            else:
                self.measured["retries"] += 1
        timeout = self.spec.attempt_timeout
        if timeout is not None:
            # On the generator's clock, whichever the pacing's.
            attempt.timer = self.gen.at(t + timeout, self._expire, conn, attempt)

    def _settle(self, attempt: Attempt) -> bool:
        """Mark the attempt resolved; False if it already was."""
        if attempt.done:
            return False
        attempt.done = True
        if attempt.timer is not None:
            attempt.timer.cancel()
            attempt.timer = None
        return True

    def _expire(self, conn: Conn, attempt: Attempt) -> None:
        if not self._settle(attempt):
            return
        gen = self.gen
        now = gen.now()
        gen.outstanding -= 1
        self._count("timeouts", now)
        if gen._measured(attempt.intended):
            self.measured["timeouts"] += 1
            gen.stats.errors["timeouts"] += 1
        if conn.busy and conn.current is attempt:
            transport = conn.detach()
            if transport is not None:
                orphan = Orphan(self, transport)
                transport.set_protocol(orphan)
                self._keep(orphan)
            if conn.queue and not gen.stopping:
                gen.reconnect(conn)
        else:
            with contextlib.suppress(ValueError):
                conn.queue.remove(attempt)
            conn._maybe_idle()
        self._failure()
        self._retry(conn, attempt)

    def _keep(self, orphan: Orphan) -> None:
        self.orphans[orphan] = None
        while len(self.orphans) > Orphan.CAP:
            oldest = next(iter(self.orphans))
            self.unseen += 1
            oldest.close()

    def answered(self, conn: Conn, attempt: Attempt, status: int, now: float) -> None:
        if not self._settle(attempt):
            return
        if status == 200:
            self._count("throughput", now)
            self._count("goodput", now)
            k = self._slot(now)
            if k >= 0:
                self.latency[k].append((now - attempt.intended) * 1e3)
            if self.gen.window[0] <= now < self.gen.window[1]:
                self.measured["good"] += 1
            self.served.add(attempt.origin)
            b = self.spec.budget
            if b is not None:
                self.tokens = min(b, self.tokens + self.spec.token_ratio)
            return
        self._count("dropped", now)
        if self.gen._measured(attempt.intended):
            key = "shed" if status == 503 else f"status_{status}"
            self.dropped_by[key] = self.dropped_by.get(key, 0) + 1
        self._failure()
        self._retry(conn, attempt)

    def failed(self, conn: Conn, attempt: Attempt, kind: str) -> None:
        """A reset, a refused connection, or the end-of-run sweep."""
        if not self._settle(attempt):
            return
        now = self.gen.now()
        self._count("dropped", now)
        if self.gen._measured(attempt.intended):
            self.dropped_by[kind] = self.dropped_by.get(kind, 0) + 1
        self._failure()
        self._retry(conn, attempt)

    def late(self, status: int) -> None:
        """A late answer on an orphan: the server did the work for nobody."""
        now = self.gen.now()
        if status == 200:
            self._count("throughput", now)
            if self.gen.window[0] <= now < self.gen.window[1]:
                self.measured["late"] += 1
        else:
            self._count("late_dropped", now)  # refused, but its client was gone

    def bids(self, text: str) -> None:
        got, _, total = text.partition("/")
        with contextlib.suppress(ValueError, ZeroDivisionError):
            self.bid_shares.append(int(got) / int(total))

    # --------------------------------------------------------------- retries

    def _failure(self) -> None:
        if self.spec.budget is not None:
            self.tokens = max(0.0, self.tokens - 1.0)

    def _retry(self, conn: Conn, attempt: Attempt) -> None:
        spec = self.spec
        if attempt.n >= spec.retries or self.gen.stopping:
            return
        if spec.budget is not None and self.tokens <= spec.budget / 2:
            self.throttled += 1
            return
        n = attempt.n + 1
        bound = min(spec.backoff_max, spec.backoff * 2.0 ** (n - 1))
        wait = float(self.rng.uniform(0.0, bound)) if bound > 0 else 0.0
        self.gen.loop.call_later(wait, self._resend, conn, attempt)

    def _resend(self, conn: Conn, attempt: Attempt) -> None:
        gen = self.gen
        now = gen.now()
        if gen.stopping or now >= gen.window[1] or gen.stats.sent >= self.spec.max_requests:
            return
        gen.dispatch(conn, now, Attempt(now, attempt.n + 1, attempt.origin))

    # --------------------------------------------------------------- connect

    async def connect(self, conn: Conn, src: str) -> None:
        """Connect with ``TCP_SYNCNT`` set: the kernel retransmits a dropped SYN
        after 1 s, 2 s, 4 s... ``syn_retries`` times before it gives up."""
        gen = self.gen
        tries = self.spec.syn_retries
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, tries)
            sock.bind((src, 0))
            await asyncio.wait_for(
                gen.loop.sock_connect(sock, (gen.address, self.spec.port)),
                float(2 ** (tries + 1) + 1),
            )
            await gen.loop.create_connection(lambda: conn, sock=sock)
        except BaseException:
            sock.close()
            raise

    # ------------------------------------------------------------------ end

    def close(self) -> None:
        for orphan in list(self.orphans):
            orphan.close()

    def report(self, wall_t0: float) -> dict[str, Any]:
        def pct(values: list[float], q: float) -> float | None:
            return float(np.percentile(values, q)) if values else None

        windows = {k: list(v) for k, v in self.counts.items()}
        windows["p50_ms"] = [pct(v, 50) for v in self.latency]  # type: ignore[misc]
        windows["p99_ms"] = [pct(v, 99) for v in self.latency]  # type: ignore[misc]
        windows["in_flight"] = cast(
            list[int],
            [s / n if n else None for s, n in zip(self.flight_sum, self.samples, strict=True)],
        )
        windows["at_server"] = cast(
            list[int],
            [s / n if n else None for s, n in zip(self.server_sum, self.samples, strict=True)],
        )
        measured_users = len(self.users)
        return {
            "t0_wall": wall_t0,
            "windows": windows,
            "users": measured_users,
            "attempts": self.measured["attempts"],
            "retries": self.measured["retries"],
            "timeouts": self.measured["timeouts"],
            "good_in_window": self.measured["good"],
            "late_in_window": self.measured["late"],
            "users_served": (
                len(self.users & self.served) / measured_users if measured_users else None
            ),
            "throttled": self.throttled,
            "unseen_late_answers": self.unseen,
            "dropped_by": dict(sorted(self.dropped_by.items())),
            "bids_share": float(np.mean(self.bid_shares)) if self.bid_shares else None,
        }
