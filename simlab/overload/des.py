"""Overload dynamics in the discrete-event models: what a ``Model`` delegates here.

A model gets one ``Dynamics`` (``model.ov``) when any overload option is set,
and None otherwise, so a run without them takes exactly its old path. It holds:

- **Scheduled arrivals** (``arrivals``): Poisson with a piecewise-constant
  rate, by time rescaling; with one segment, the same draws and the same
  floating-point times as a constant ``--rate``.
- **Clients that give up and retry.** Every attempt is a request row of
  its own, with its first attempt (``origin``) and its number
  (``attempt``). A timer fires ``timeout`` after an attempt's intended send
  time; if the attempt is still unanswered, the client gives up on it
  (``gave_up``). An attempt still queued at the client (behind another on
  its connection) is withdrawn unsent; one the server already has is left
  to it: the server does the work anyway, which is *wasted* (throughput
  that is not goodput). The client then closes that connection and opens a
  new one (a new socket id) for whatever it sends next, because an HTTP/1.1
  connection with a request in flight cannot carry another. Where a thread
  owns a persistent connection (``thread-pool``, ``iterative``,
  ``thread-per-connection``, ``process-per-connection`` without
  ``requests_per_connection``), the simulation keeps the connection: the
  next attempt waits for the owner to finish the abandoned one (a
  simplification; documented in docs/overload.md). A timed-out or refused
  attempt is retried after a jittered backoff, while retries and the retry
  budget allow; no attempt is sent at or after the end of the arrivals.
- **Server limits**, called by the models where a request reaches them:
  ``shed`` (503 beyond ``max_inflight``), ``expired`` (the queue deadline),
  ``reconnect`` (a dropped SYN retransmitted after 1 s, 2 s, 4 s...).
- **The backend**: ``io`` replaces the single wait for a request's backend
  calls with each call: it waits for one of the backend's ``pool`` slots,
  may be hedged, and a fan-out may stop at its deadline.
- **The mix**: heavy requests get ``heavy_cpu`` of CPU; a blocking call
  waits on its thread, or holds an async loop (``loop_phase``) unless it is
  offloaded to a thread pool.

Everything random comes from the replication's appended streams
(``client``, ``mix``, ``hedge``; ``simlab.streams``), so the earlier
streams, and every draw of a run without these options, are unchanged.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from simlab.distributions import Distribution
from simlab.models.base import BATCH, COMPLETED, PENDING
from simlab.models.pool import Pool
from simlab.overload.policy import ABANDONED, CONNECT, EXPIRED, REASONS, REFUSED, SHED

if TYPE_CHECKING:
    from simlab.models.base import Model

__all__ = ["ABANDONED", "CONNECT", "EXPIRED", "REASONS", "REFUSED", "SHED", "Dynamics"]

_NAN = float("nan")
INF = math.inf

Waits = Generator[simpy.Event, Any, Any]


class Dynamics:
    """One replication's overload state, attached to its model."""

    def __init__(self, model: Model) -> None:
        m = self.m = model
        self.env = m.env
        w, a = m.workload, m.arch
        self.clients = w.clients if w.clients is not None and w.clients.active else None
        self.limits = a.limits
        self.backend = w.backend if w.backend is not None and w.backend.active else None
        self.mix = w.mix if w.mix is not None and w.mix.active else None
        self.schedule = w.schedule
        s = m.streams
        assert s.client is not None
        assert s.mix is not None
        assert s.hedge is not None
        self.rng_client, self.rng_mix, self.rng_hedge = s.client, s.mix, s.hedge

        self.origin: array[int] = array("q")
        self.attempt: array[int] = array("b")
        self.gave_up: array[float] = array("d")
        self.reason: array[int] = array("b")
        self.bids: array[float] = array("d")
        self.sent: array[float] = array("d")
        self.socket_of: array[int] = array("q")
        self.counted = bytearray()
        self.grow(m._capacity)

        # Where a timed-out client reconnects, a new connection gets a new id.
        self.fresh = w.requests_per_connection is not None or not m.holds_connection
        self.socket: dict[int, int] = {}  # client -> its current connection, when not itself
        self.head: dict[int, int] = {}  # connection -> the request the server has from it
        self.closed: set[int] = set()  # connections their client walked away from
        self.next_socket = w.connections
        self._pending: tuple[int, int] | None = None
        c = self.clients
        self.tokens = c.budget if c is not None and c.budget is not None else 0.0
        self.throttled = 0
        self.inside = 0  # requests inside the server, for max_inflight

        b = self.backend
        self.pool = Pool(self.env, b.pool) if b is not None and b.pool is not None else None
        self.needs_calls = b is not None and w.calls > 0
        self._calls: list[np.ndarray] = []
        self._second: list[np.ndarray] = []
        self.hedged = 0
        self.mix_blocks = self.mix is not None and self.mix.blocks
        self._blocking: list[np.ndarray] = []
        # On a thread, a blocking call only blocks that thread: it is I/O.
        # On a loop, the model's ``loop_phase`` holds the loop through it.
        self.thread_io = self.needs_calls or (self.mix_blocks and not m.busy_on_cpu)
        lim = self.limits
        self.on_loop = m.busy_on_cpu and (
            self.mix_blocks or (lim is not None and lim.queue_deadline is not None)
        )
        self.offload = lim is not None and lim.offload and m.busy_on_cpu
        self.executors = (
            [Pool(self.env, a.workers, first_id=k * a.workers) for k in range(a.processes)]
            if self.offload
            else []
        )

    # ------------------------------------------------------------- columns

    def grow(self, extra: int) -> None:
        nan_block = array("d", [_NAN]) * extra
        for col in (self.gave_up, self.bids, self.sent):
            col.extend(nan_block)
        minus = array("q", [-1]) * extra
        self.origin.extend(minus)
        self.socket_of.extend(minus)
        self.attempt.extend(array("b", [0]) * extra)
        self.reason.extend(array("b", [0]) * extra)
        self.counted.extend(bytes(extra))

    def columns(self, n: int) -> dict[str, np.ndarray]:
        def col(a: array[Any], dtype: type) -> np.ndarray:
            return np.frombuffer(a, dtype=dtype, count=n).copy()

        out = {
            "origin": col(self.origin, np.int64),
            "attempt": col(self.attempt, np.int8),
            "gave_up": col(self.gave_up, np.float64),
            "reason": col(self.reason, np.int8),
            "bids": col(self.bids, np.float64),
            "sent": col(self.sent, np.float64),
        }
        if self.mix_blocks:
            drawn = np.concatenate(self._blocking) if self._blocking else np.empty(0)
            out["blocking"] = np.concatenate((drawn, np.zeros(max(0, n - len(drawn)))))[:n]
        return out

    def stats(self) -> dict[str, float]:
        return {"hedged_calls": float(self.hedged), "throttled_retries": float(self.throttled)}

    # ------------------------------------------------------------- arrivals

    def arrivals(self) -> Generator[simpy.Event, Any, None]:
        """Poisson arrivals at the schedule's rate, by time rescaling.

        A unit-rate exponential ``e`` is spent at the current segment's rate;
        a gap that would cross a breakpoint spends what it can there and
        carries the rest into the next segment. Within one segment, the gap
        is ``e * (1 / rate)``, the very number a constant rate draws.
        """
        m, env = self.m, self.env
        sch = self.schedule
        assert sch is not None
        times, rates = sch.times, sch.rates
        last = len(times) - 1
        n_conns = m.workload.connections
        rng_gap, rng_conn = m.streams.arrival, m.streams.connection
        k = 0
        pos = env.now
        while True:
            units = rng_gap.exponential(1.0, BATCH).tolist()
            conns = rng_conn.integers(0, n_conns, BATCH).tolist()
            for unit, conn in zip(units, conns, strict=True):
                e = unit
                while True:
                    end = times[k + 1] if k < last else INF
                    rate = rates[k]
                    if rate > 0:
                        gap = e * (1.0 / rate)
                        if pos + gap < end:
                            break
                        e -= (end - pos) * rate
                    if end == INF:
                        return  # a last segment of rate 0: nothing more is sent
                    pos = end
                    k += 1
                if pos == env.now:
                    yield env.timeout(gap)
                else:
                    yield env.timeout(pos + gap - env.now)
                pos = env.now
                if pos >= m.stop or m.overloaded:
                    return
                m.send(conn)

    # ------------------------------------------------------------- clients

    def on_send(self, i: int, client: int) -> int:
        """Attempt ``i`` from ``client``: its place in its request, its timer;
        returns the connection it goes out on."""
        pending = self._pending
        if pending is None:
            self.origin[i] = i
        else:
            self.origin[i], self.attempt[i] = pending
            self._pending = None
        sock = self.socket.get(client, client)
        self.socket_of[i] = sock
        c = self.clients
        if c is not None and c.timeout is not None:
            self.env.timeout(c.timeout).callbacks.append(lambda _ev: self._timeout(i))
        return sock

    def on_sent(self, sock: int, i: int) -> None:
        """The server now has request ``i`` from connection ``sock``."""
        self.head[sock] = i
        self.sent[i] = self.env.now

    def _timeout(self, i: int) -> None:
        m = self.m
        if m.outcome[i] != PENDING or not math.isnan(self.gave_up[i]):
            return
        self.gave_up[i] = self.env.now
        self._failure()
        sock = self.socket_of[i]
        if self.head.get(sock) == i:
            # The server has it (or the client is still connecting): leave it
            # there and walk away from the connection.
            if self.fresh:
                self._abandon(sock, m.connection[i])
        else:
            # Still waiting at the client behind another request: never sent.
            queue = m.active.get(sock)
            if queue is not None and i in queue:
                queue.remove(i)
            self.reason[i] = ABANDONED
            m.drop(i)
        self._retry(i)

    def _abandon(self, sock: int, client: int) -> None:
        """The client closes ``sock``; what it still had to send goes on a new connection."""
        m = self.m
        new = self.next_socket
        self.next_socket += 1
        self.socket[client] = new
        self.closed.add(sock)
        queue = m.active.get(sock)
        if queue:
            moved = list(queue)
            queue.clear()
            for j in moved:
                self.socket_of[j] = new
                m.route(j, new)

    def done(self, i: int) -> None:
        """Attempt ``i`` was answered or dropped."""
        if self.counted[i]:
            self.counted[i] = 0
            self.inside -= 1
        if not math.isnan(self.gave_up[i]):
            return  # the client had already given up on it
        if self.m.outcome[i] == COMPLETED:
            c = self.clients
            if c is not None and c.budget is not None:
                self.tokens = min(c.budget, self.tokens + c.token_ratio)
            return
        if self.reason[i] == 0:
            self.reason[i] = REFUSED
        if self.clients is not None:
            self._failure()
            self._retry(i)

    def _failure(self) -> None:
        c = self.clients
        if c is not None and c.budget is not None:
            self.tokens = max(0.0, self.tokens - 1.0)

    def _retry(self, i: int) -> None:
        c = self.clients
        if c is None or self.attempt[i] >= c.retries:
            return
        if c.budget is not None and self.tokens <= c.budget / 2:
            self.throttled += 1
            return
        n = self.attempt[i] + 1
        bound = c.backoff_bound(n)
        wait = float(self.rng_client.uniform(0.0, bound)) if bound > 0 else 0.0
        origin, client = self.origin[i], self.m.connection[i]
        self.env.timeout(wait).callbacks.append(lambda _ev: self._resend(origin, n, client))

    def _resend(self, origin: int, attempt: int, client: int) -> None:
        m = self.m
        if self.env.now >= m.stop or m.overloaded:
            return
        self._pending = (origin, attempt)
        m.send(client)
        self._pending = None

    # -------------------------------------------------------- server limits

    def shed(self, i: int) -> bool:
        """True (and the request answered 503) when the server already holds
        ``max_inflight`` requests; otherwise it counts this one in."""
        if self.over_limit():
            self.refuse(i)
            return True
        self.admit(i)
        return False

    def over_limit(self) -> bool:
        """True when the server already holds ``max_inflight`` requests."""
        lim = self.limits
        return lim is not None and lim.max_inflight is not None and self.inside >= lim.max_inflight

    def admit(self, i: int) -> None:
        """Count request ``i`` in, against ``max_inflight``."""
        lim = self.limits
        if lim is not None and lim.max_inflight is not None:
            self.inside += 1
            self.counted[i] = 1

    def refuse(self, i: int) -> None:
        """Answer request ``i`` 503 (the concurrency limit)."""
        self.reason[i] = SHED
        self.m.drop(i)

    def expired(self, i: int, since: float) -> bool:
        """True (and the request dropped unserved) when it waited longer than the deadline."""
        lim = self.limits
        if lim is None or lim.queue_deadline is None:
            return False
        if self.env.now - since > lim.queue_deadline:
            self.reason[i] = EXPIRED
            self.m.drop(i)
            return True
        return False

    def reconnect(
        self, i: int, acquire: Callable[[], Generator[simpy.Event, Any, tuple[int, int] | None]]
    ) -> Generator[simpy.Event, Any, tuple[int, int] | None]:
        """The SYN of request ``i``'s connection was dropped (a full backlog):
        the client retransmits it after 1 s, 2 s, 4 s..., ``syn_retries``
        times, then gives up (``connect`` fails) one more doubling later."""
        c = self.clients
        tries = c.syn_retries if c is not None else 0
        if tries == 0:
            return None  # simlab's plain model: a full backlog refuses at once
        for r in range(tries + 1):
            yield self.env.timeout(float(2**r))
            if not math.isnan(self.gave_up[i]):
                self.reason[i] = ABANDONED
                return None
            if r == tries:
                break
            owner = yield from acquire()
            if owner is not None:
                return owner
        self.reason[i] = CONNECT
        return None

    @property
    def syn(self) -> bool:
        return self.clients is not None and self.clients.syn_retries > 0

    # -------------------------------------------------------------- draws

    def draw_calls(
        self, workload_io: Distribution, calls: int, fanout: str, latency: Distribution
    ) -> list[float]:
        """One batch of backend calls, drawn exactly as ``draw_io`` draws them
        (same streams, same order), kept call by call; returns each request's
        total, as ``draw_io`` would."""
        s = self.m.streams
        drawn = workload_io.sample(s.io, (BATCH, calls))
        if latency.mean > 0:
            drawn = drawn + latency.sample(s.slack, (BATCH, calls))
        self._calls.append(drawn)
        if self.backend is not None and self.backend.hedge is not None:
            second = workload_io.sample(self.rng_hedge, (BATCH, calls))
            if latency.mean > 0:
                second = second + latency.sample(self.rng_hedge, (BATCH, calls))
            self._second.append(second)
        total = drawn.sum(axis=1) if fanout == "sequential" else drawn.max(axis=1)
        out: list[float] = total.tolist()
        return out

    def draw_mix(self, demand: list[float]) -> None:
        """Make the last batch of ``demand`` heavy where the mix says, and draw
        which requests block."""
        mix = self.mix
        if mix is None:
            return
        if mix.heavy_share > 0:
            heavy = self.rng_mix.random(BATCH) < mix.heavy_share
            base = len(demand) - BATCH
            for k in np.flatnonzero(heavy).tolist():
                demand[base + k] = mix.heavy_cpu
        if mix.blocks:
            blocks = self.rng_mix.random(BATCH) < mix.blocking_share
            self._blocking.append(np.where(blocks, mix.blocking, 0.0))

    def blocking_of(self, i: int) -> float:
        if not self.mix_blocks:
            return 0.0
        return float(self._blocking[i // BATCH][i % BATCH])

    # ------------------------------------------------------------ the backend

    def io(self, i: int) -> Generator[simpy.Event, Any, float]:
        """Request ``i``'s blocking call (on a thread) and backend calls, call by
        call; returns the time they took, which becomes its ``io_time``."""
        env, m = self.env, self.m
        t0 = env.now
        if not m.busy_on_cpu:
            b = self.blocking_of(i)
            if b > 0:
                yield env.timeout(b)
        calls = m.workload.calls
        if self.needs_calls and calls:
            yield from self._fan_out(i, calls)
        elif calls:
            yield env.timeout(float(self._plain_io(i)))
        took = env.now - t0
        m.io_time[i] = took
        return took

    def _plain_io(self, i: int) -> float:
        return float(self.m.io_time[i])

    def _fan_out(self, i: int, calls: int) -> Generator[simpy.Event, Any, None]:
        env, m = self.env, self.m
        b = self.backend
        assert b is not None
        row = self._calls[i // BATCH][i % BATCH]
        second = self._second[i // BATCH][i % BATCH] if self._second else None
        deadline = b.deadline
        start = env.now
        answers: list[float] = []
        if m.workload.fanout == "parallel":
            done = [
                self._call(float(row[j]), float(second[j]) if second is not None else 0.0, answers)
                for j in range(calls)
            ]
            every = simpy.AllOf(env, done)
            if deadline is None:
                yield every
            else:
                yield every | env.timeout(deadline)
        else:
            for j in range(calls):
                if deadline is not None and env.now - start >= deadline:
                    break
                ev = self._call(
                    float(row[j]), float(second[j]) if second is not None else 0.0, answers
                )
                if deadline is None:
                    yield ev
                    continue
                yield ev | env.timeout(start + deadline - env.now)
                if not ev.triggered:
                    break
        if deadline is not None:
            cut = start + deadline
            self.bids[i] = sum(1 for t in answers if t <= cut) / calls

    def _call(self, latency: float, second: float, answers: list[float]) -> simpy.Event:
        """One call: an event that fires at its first answer (the call's, or its hedge's)."""
        env = self.env
        done = env.event()

        def answer(_ev: simpy.Event) -> None:
            if not done.triggered:
                answers.append(env.now)
                done.succeed()

        self._issue(latency).callbacks.append(answer)
        b = self.backend
        if b is not None and b.hedge is not None:

            def hedge(_ev: simpy.Event) -> None:
                if not done.triggered:
                    self.hedged += 1
                    self._issue(second).callbacks.append(answer)

            env.timeout(b.hedge).callbacks.append(hedge)
        return done

    def _issue(self, latency: float) -> simpy.Event:
        if self.pool is None:
            return self.env.timeout(latency)
        return self.env.process(self._held(latency))

    def _held(self, latency: float) -> Generator[simpy.Event, Any, None]:
        """A call that needs one of the backend's slots: it waits for one, in
        turn, and holds it for its latency (the backend does not know whether
        its caller still waits)."""
        pool = self.pool
        assert pool is not None
        slot = pool.take()
        if slot < 0:
            slot = yield pool.wait()
        yield self.env.timeout(latency)
        pool.give(slot)

    # ------------------------------------------------------------- the loop

    def loop_phase(
        self, i: int, process: int, loop: Pool, demand: float
    ) -> Generator[simpy.Event, Any, tuple[float, float, float] | None]:
        """An async request's turn on its loop: (CPU, start, blocking time), or
        None when it waited past the queue deadline (dropped).

        A blocking call made from the handler holds the loop for its whole
        duration: nothing else on that loop runs meanwhile. Offloaded
        (``run_in_executor``), it waits for one of the process's ``workers``
        threads instead and leaves the loop free.
        """
        env, m = self.env, self.m
        slot = loop.take()  # the loop's id (several loops per process: each its own)
        if slot < 0:
            slot = yield loop.wait()
        if self.expired(i, m.admit[i]):
            loop.give(slot)
            return None
        cpu, start = 0.0, env.now
        if demand > 0:
            cpu, start = yield from m.cpu.run(None, demand, 0, process, loop=True)
        blocking = self.blocking_of(i)
        if blocking > 0 and not self.offload:
            yield env.timeout(blocking)
        loop.give(slot)
        if blocking > 0 and self.offload:
            pool = self.executors[process]
            thread = pool.take()
            if thread < 0:
                thread = yield pool.wait()
            yield env.timeout(blocking)
            pool.give(thread)
        return cpu, start, blocking

    def resume(self, loop: Pool) -> Generator[simpy.Event, Any, None]:
        """A task's turn on its loop after an await (its answer's CPU is folded
        into its first phase, as in ``async``): it only waits for the loop."""
        slot = loop.take()
        if slot < 0:
            slot = yield loop.wait()
        loop.give(slot)

    def extra_threads(self) -> int:
        """Threads the overload options add to a model's base level (offload pools)."""
        return sum(p.capacity for p in self.executors)
