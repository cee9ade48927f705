"""The load generator: N mostly idle connections, open-loop Poisson or closed-loop arrivals.

It runs in its own process (``python -m simlab.real.loadgen SPEC.json``), so
that it never shares the server's GIL, on uvloop when it is installed.

- **Connections.** It opens ``connections`` keep-alive connections before
  sending anything, from source addresses spread over 127.0.0.1..127.0.0.k
  so that 10,000+ connections don't exhaust one address's ephemeral ports,
  and keeps the idle ones open, as the notes' long-lived idle clients. With
  K requests a connection, a client opens one when it has a request and
  closes it after its K-th answer; once the window ends, a client with
  nothing left to send closes its connection after its answer, as the
  simulation's clients of a thread per connection or a pool do
  (``ConnectionBound``; a loop model's idle connections hold no thread, and
  what they hold after the window is not measured).
- **Arrivals.** Open loop: Poisson arrivals at total rate lam, each on a
  uniformly chosen connection (the simulation's semantics: a connection has
  one request in flight, and later ones wait for it; the report counts the
  measured requests that did, ``queued_behind``). The sequence is a function
  of the seed alone (``open_arrivals``), so a simulation can replay the very
  arrivals a run sent. Closed loop: each connection thinks Exp(Z), sends,
  waits for the answer.
- **Latency** runs from each request's *intended* send time, so a stalled
  server is charged for every request it delayed (the coordinated-omission
  correction of wrk2), and goes into HdrHistogram.
- **Bounded and loopback only.** It refuses any target outside 127.0.0.0/8
  and ::1, stops sending after ``warmup + duration`` or ``max_requests``, and
  gives outstanding requests at most ``timeout`` seconds before closing.
- **Overload dynamics** (``simlab.real.retrying``, off unless asked): the
  rate may follow a schedule (the simulation's time rescaling); a client
  may give up on an attempt after ``attempt_timeout`` and retry it with a
  jittered backoff under a retry budget; its connects may retransmit their
  SYN (``syn_retries``, the socket's ``TCP_SYNCNT``); and per-second
  windows (``windows``) are counted. A timed-out attempt's connection is
  handed to an ``Orphan`` that only waits for the late answer, to count the
  server's wasted work, while the client reconnects for whatever it sends
  next (an HTTP/1.1 connection with a request in flight cannot take another).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import httptools
import numpy as np
import uvloop
from hdrh.histogram import HdrHistogram

from simlab.provenance import atomic_write
from simlab.real.limits import raise_fd_limit
from simlab.real.pacing import DEFAULT_PACING, PACINGS, At, Timer, clock
from simlab.real.retrying import Attempt, ClientDynamics, Orphan, scheduled_gaps

__all__ = ["LoadSpec", "check_loopback", "open_arrivals", "run"]

HIST_MAX_US = 3_600_000_000
HIST_DIGITS = 3
SAMPLE_S = 0.01
BATCHES = 10
CONNECT_CONCURRENCY = 256
CONNECT_TIMEOUT_S = 15.0
ARRIVAL_BATCH = 4096
TRANSFER_STREAM = 0x5C1


def check_loopback(host: str) -> str:
    """The address to use if ``host`` is on loopback; ValueError otherwise."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ValueError(f"target: cannot resolve {host!r}: {exc}") from None
    addrs = {str(info[4][0]) for info in infos}
    for addr in sorted(addrs):
        if not ipaddress.ip_address(addr).is_loopback:
            raise ValueError(
                f"target: {host!r} resolves to {addr}, outside loopback "
                "(127.0.0.0/8, ::1); simlab only sends load to this machine"
            )
    return sorted(addrs)[0]


@dataclass(frozen=True)
class LoadSpec:
    """What to send. ``queries`` is a list of query strings used in turn (the
    caller draws random CPU and I/O into them); ``rate`` xor ``think_s``."""

    host: str
    port: int
    connections: int
    queries: tuple[str, ...]
    rate: float | None = None
    think_s: float | None = None
    warmup: float = 2.0
    duration: float = 10.0
    max_requests: int = 2_000_000
    timeout: float = 30.0
    sources: int = 4
    requests_per_connection: int | None = None
    seed: int = 1
    # Overload dynamics (all off by default; ``simlab.real.retrying``).
    schedule: tuple[tuple[float, float], ...] | None = None  # (time_s, rate) breakpoints
    attempt_timeout: float | None = None
    retries: int = 0
    backoff: float = 0.1
    backoff_max: float = 10.0
    budget: float | None = None
    token_ratio: float = 0.1
    syn_retries: int = 0
    windows: bool = False
    # Slow clients: seconds to trickle each request out and to read each answer
    # (``client_dist`` "fixed" or "exp"), reading through a small receive buffer.
    send_s: float = 0.0
    recv_s: float = 0.0
    client_dist: str = "fixed"
    # A path to write every answered request to (off by default): one line
    # each, "intended_s,latency_s,connection,status", times from the run's
    # start, warm-up included, for a look at transients.
    requests_out: str | None = None
    # How sends are timed (``PACINGS``): "loop" on the event loop's clock,
    # "timer" on the monotonic clock with a timer of its own.
    pacing: str = DEFAULT_PACING
    # Report each connection's first local address (``connections.local``):
    # where copies race for the connections (gthread), the server side's
    # peers say which copy took which connection.
    report_local: bool = False

    def __post_init__(self) -> None:
        check_loopback(self.host)
        for name in ("send_s", "recv_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value <= MAX_TRANSFER_S):
                raise ValueError(f"{name}(={value}) must be in [0, {MAX_TRANSFER_S:g}] s")
        if self.pacing not in PACINGS:
            raise ValueError(f"pacing(={self.pacing!r}) must be one of {', '.join(PACINGS)}")
        if self.client_dist not in ("fixed", "exp"):
            raise ValueError(f"client_dist(={self.client_dist!r}) must be 'fixed' or 'exp'")
        if (self.rate is None) == (self.think_s is None):
            raise ValueError("give exactly one of rate and think_s")
        if self.rate is not None and not self.rate > 0:
            raise ValueError(f"rate(={self.rate}) must be > 0")
        if self.think_s is not None and not self.think_s >= 0:
            raise ValueError(f"think_s(={self.think_s}) must be >= 0")
        if self.connections < 1 or not self.queries:
            raise ValueError("connections must be >= 1 and queries non-empty")
        if self.duration <= 0 or self.warmup < 0 or self.timeout <= 0:
            raise ValueError("duration and timeout must be > 0, warmup >= 0")
        if self.schedule is not None and self.rate is None:
            raise ValueError("a schedule needs open arrivals (rate)")
        if self.attempt_timeout is not None and self.attempt_timeout <= 0:
            raise ValueError(f"attempt_timeout(={self.attempt_timeout}) must be > 0")
        if not 0 <= self.retries <= 10 or not 0 <= self.syn_retries <= 10:
            raise ValueError("retries and syn_retries must be in [0, 10]")


def poisson_arrivals(
    rng: np.random.Generator, rate: float, connections: int, t0: float
) -> Iterator[tuple[float, int]]:
    """Open-loop arrivals from ``t0`` on: (time, connection), Poisson at
    ``rate``, each on a connection drawn uniformly, without end."""
    t = t0
    while True:
        gaps = rng.exponential(1.0 / rate, ARRIVAL_BATCH).tolist()
        picks = rng.integers(0, connections, ARRIVAL_BATCH).tolist()
        for gap, k in zip(gaps, picks, strict=True):
            t += gap
            yield t, k


def open_arrivals(spec: LoadSpec) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """The arrivals an open-loop run of ``spec`` sends, in seconds from its
    start (the window opens at ``warmup``): the times and connections that
    ``Generator.open_loop`` dispatches, drawn from the same seeded stream.

    A simulation given these as a trace serves the very requests the real
    run sent, so a tail that rests on a few requests (a slow client's next
    request waiting for its last) is compared on the same few."""
    if spec.rate is None or spec.schedule is not None:
        raise ValueError("open_arrivals: only a constant rate's arrivals are replayed")
    end = spec.warmup + spec.duration
    times: list[float] = []
    conns: list[int] = []
    rng = np.random.default_rng(spec.seed)
    for t, k in poisson_arrivals(rng, spec.rate, spec.connections, 0.0):
        if t >= end or len(times) >= spec.max_requests:
            break
        times.append(t)
        conns.append(k)
    return tuple(times), tuple(conns)


def _histogram() -> HdrHistogram:
    return HdrHistogram(1, HIST_MAX_US, HIST_DIGITS)


class Stats:
    """Everything measured, for requests whose intended time is in the window."""

    def __init__(self) -> None:
        self.latency = _histogram()
        self.service = _histogram()
        self.queue = _histogram()
        self.batch_sum = [0.0] * BATCHES
        self.batch_n = [0] * BATCHES
        self.status: dict[int, int] = {}
        self.errors = {"timeouts": 0, "resets": 0, "refused": 0, "unanswered": 0}
        self.sent = 0
        self.scheduled = 0
        self.measured = 0
        self.completed_in_window = 0
        self.lag = _histogram()
        # Measured requests that arrived while their connection's previous
        # request was still unanswered, and so waited for it at the client.
        self.queued_behind = 0


# A slow client's request goes out in this many pieces spread over its send
# time, and its answer is read through a receive buffer this small.
TRICKLE_PIECES = 8
SLOW_RCVBUF = 4096
MAX_TRANSFER_S = 60.0


class Conn(asyncio.Protocol):
    """One client connection: one request in flight, the rest queued behind it."""

    def __init__(self, gen: Generator, index: int) -> None:
        self.gen = gen
        self.index = index
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.queue: deque[Attempt] = deque()
        self.current = Attempt(0.0)
        self.sent_at = 0.0
        self.busy = False
        self.service_us = -1
        self.answered = 0
        self.connecting = False
        self.closed_by_us = False
        self.idle_waiter: asyncio.Future[None] | None = None
        self.bids: str | None = None
        self.held: list[bytes] | None = None  # a slow reader's unread bytes
        self.first_local: tuple[str, int] | None = None  # its first connect's address

    def wait_idle(self) -> asyncio.Future[None]:
        """Resolves once this connection has nothing in flight or queued (closed loop)."""
        fut: asyncio.Future[None] = self.gen.loop.create_future()
        if not self.busy and not self.queue:
            fut.set_result(None)
        else:
            self.idle_waiter = fut
        return fut

    def _maybe_idle(self) -> None:
        if self.idle_waiter is not None and not self.busy and not self.queue:
            if not self.idle_waiter.done():
                self.idle_waiter.set_result(None)
            self.idle_waiter = None

    # --- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)
        self.parser = httptools.HttpResponseParser(self)
        self.answered = 0
        self.connecting = False
        self.held = None
        if self.first_local is None:
            local = transport.get_extra_info("sockname")
            if local is not None:
                self.first_local = (str(local[0]), int(local[1]))
        sock = transport.get_extra_info("socket")
        if self.gen.spec.recv_s > 0 and sock is not None:
            # A small window: a large answer backs up into the server's send buffer.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RCVBUF)

    def data_received(self, data: bytes) -> None:
        if self.gen.spec.recv_s > 0 and self.transport is not None:
            # A slow reader: the first bytes of an answer start its read time;
            # nothing more is read until it has passed.
            if self.held is None:
                self.held = [data]
                self.transport.pause_reading()
                self.gen.loop.call_later(self.gen.transfer("recv"), self._read_held)
                return
            if self.held:
                self.held.append(data)
                return
        self._feed(data)

    def _read_held(self) -> None:
        held, self.held = self.held or [], []
        if self.transport is None:
            return
        self.transport.resume_reading()
        for data in held:
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail("resets")

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.busy and not self.closed_by_us:
            self._fail("resets")
        self.closed_by_us = False
        if self.queue and not self.gen.stopping:
            self.gen.reconnect(self)

    # --- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.lower()
        if key == b"x-service-us":
            self.service_us = int(value)
        elif key == b"x-bids":
            self.bids = value.decode("ascii", "replace")

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        keep = self.parser.should_keep_alive()
        self.gen.done(self, status, self.service_us)
        self.service_us = -1
        self.bids = None
        self.held = None  # the next answer is read slowly again
        self.answered += 1
        k = self.gen.spec.requests_per_connection
        done = self.gen.sent_all and not self.queue
        if not keep or (k is not None and self.answered >= k) or done:
            self.close()
            if self.queue and not self.gen.stopping:
                self.gen.reconnect(self)
        else:
            self.pump()
        self._maybe_idle()

    # --- sending
    def submit(self, attempt: Attempt) -> None:
        self.queue.append(attempt)
        self.pump()

    def pump(self) -> None:
        if self.busy or not self.queue or self.transport is None:
            return
        self.current = self.queue.popleft()
        self.busy = True
        self.sent_at = self.gen.now()
        request = self.gen.next_request()
        if self.gen.spec.send_s <= 0:
            self.transport.write(request)
            return
        # A slow sender: the request goes out in pieces, the last one at the send time.
        send = self.gen.transfer("send")
        n = min(TRICKLE_PIECES, len(request))
        cuts = [len(request) * k // n for k in range(n + 1)]
        transport = self.transport
        for k in range(n):
            piece = request[cuts[k] : cuts[k + 1]]
            self.gen.loop.call_later(send * k / max(n - 1, 1), self._trickle, transport, piece)

    def _trickle(self, transport: asyncio.Transport, piece: bytes) -> None:
        if self.transport is transport and not transport.is_closing():
            transport.write(piece)

    def detach(self) -> asyncio.Transport | None:
        """Hand the connection, with its request in flight, away (a timeout):
        this client no longer waits on it and will connect afresh."""
        transport, self.transport = self.transport, None
        self.busy = False
        self.parser = httptools.HttpResponseParser(self)
        self.service_us = -1
        self.bids = None
        self._maybe_idle()
        return transport

    def close(self) -> None:
        if self.transport is not None:
            self.closed_by_us = True
            self.transport.close()
            self.transport = None

    def _fail(self, kind: str) -> None:
        if self.busy:
            self.busy = False
            self.gen.failed(self, kind)
        if self.transport is not None:
            self.closed_by_us = True
            self.transport.abort()
            self.transport = None
        self._maybe_idle()


class Generator:
    def __init__(self, spec: LoadSpec, loop: asyncio.AbstractEventLoop) -> None:
        self.spec = spec
        self.loop = loop
        self.stats = Stats()
        self.rng = np.random.default_rng(spec.seed)
        # Slow clients' exponential transfer times come from a stream of their
        # own, so the arrivals stay the seed's alone (``open_arrivals``).
        self.transfer_rng = np.random.default_rng([spec.seed, TRANSFER_STREAM])
        self.address = check_loopback(spec.host)
        self.sources = [f"127.0.0.{1 + k}" for k in range(max(1, spec.sources))]
        if not self.address.startswith("127."):
            self.sources = ["::1"]
        self.requests = [
            f"GET /work?{q} HTTP/1.1\r\nHost: {spec.host}\r\n\r\n".encode() for q in spec.queries
        ]
        self.next_query = 0
        self.conns = [Conn(self, k) for k in range(spec.connections)]
        self.outstanding = 0
        self.stopping = False
        # Set once no request is left to send, with K requests a connection: a
        # client with nothing in flight or queued then closes its connection,
        # as one with no more to send would (persistent ones stay: the
        # notes' long-lived clients, as the simulation keeps them).
        self.sent_all = False
        self.t0 = 0.0
        self.window = (0.0, 0.0)
        self.in_flight_samples: list[int] = []
        self.timeline: dict[int, int] = {}
        self.connect_failures = 0
        self.ov = ClientDynamics(self) if ClientDynamics.wanted(spec) else None
        self.answers: list[tuple[float, float, int, int]] | None = [] if spec.requests_out else None
        # The clock sends and answers are timed by, and the open loop's timer
        # where the pacing has one (``simlab.real.pacing``).
        self.now = clock(spec.pacing, loop)
        self.timer = Timer(loop) if spec.pacing == "timer" and spec.rate is not None else None

    def at(self, when: float, fn: Callable[..., object], *args: object) -> At:
        """``fn(*args)`` once this generator's clock reads ``when`` (``pacing.At``)."""
        return At(self.loop, self.now, when, fn, *args)

    def transfer(self, kind: str) -> float:
        """One slow client's send or read time (seconds)."""
        mean = self.spec.send_s if kind == "send" else self.spec.recv_s
        if self.spec.client_dist == "exp":
            return float(self.transfer_rng.exponential(mean))
        return mean

    def next_request(self) -> bytes:
        req = self.requests[self.next_query]
        self.next_query = (self.next_query + 1) % len(self.requests)
        return req

    # ---------------------------------------------------------- connections
    async def open_all(self) -> tuple[int, float]:
        sem = asyncio.Semaphore(CONNECT_CONCURRENCY)
        t = time.perf_counter()

        async def one(conn: Conn) -> None:
            async with sem:
                await self._connect(conn)

        await asyncio.gather(*(one(c) for c in self.conns))
        opened = sum(1 for c in self.conns if c.transport is not None)
        return opened, time.perf_counter() - t

    async def _connect(self, conn: Conn) -> None:
        conn.connecting = True
        src = self.sources[conn.index % len(self.sources)]
        try:
            if self.ov is not None and self.spec.syn_retries:
                await self.ov.connect(conn, src)
            else:
                await asyncio.wait_for(
                    self.loop.create_connection(
                        lambda: conn, self.address, self.spec.port, local_addr=(src, 0)
                    ),
                    CONNECT_TIMEOUT_S,
                )
            sock = conn.transport.get_extra_info("socket") if conn.transport else None
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, TimeoutError):
            conn.connecting = False
            self.connect_failures += 1
            # Requests queued on a connection that cannot open are lost.
            while conn.queue:
                self._lost(conn.queue.popleft(), "refused", conn)
            conn._maybe_idle()
            return
        if not conn.queue and (
            self.sent_all or (self.ov is not None and self.spec.requests_per_connection)
        ):
            conn.close()  # what it was opened for timed out while it connected, or sending is over
            return
        conn.pump()

    def close_idle(self) -> None:
        """No request is left to send (K requests a connection): a client with
        nothing in flight or queued closes its connection, as one that is done
        would, and every other closes after its answer. A server that holds a
        thread per open connection (thread-pool, iterative) would otherwise
        keep those threads waiting for requests that never come, and the
        requests queued behind them would wait out the drain's timeout."""
        self.sent_all = True
        for conn in self.conns:
            if not conn.busy and not conn.queue:
                conn.close()

    def reconnect(self, conn: Conn) -> None:
        if not conn.connecting:
            conn.connecting = True
            self.loop.create_task(self._connect(conn))

    # ------------------------------------------------------------- outcomes
    def _measured(self, intended: float) -> bool:
        return self.window[0] <= intended < self.window[1]

    def done(self, conn: Conn, status: int, service_us: int) -> None:
        now = self.now()
        conn.busy = False
        self.outstanding -= 1
        attempt = conn.current
        intended = attempt.intended
        if self.ov is not None:
            self.ov.answered(conn, attempt, status, now)
        if self.answers is not None:
            self.answers.append((intended - self.t0, now - intended, conn.index, status))
        if status == 200 and self.window[0] <= now < self.window[1]:
            # Answers per tenth of the window, for the throughput's batch-means CI.
            width = (self.window[1] - self.window[0]) / BATCHES
            batch = min(BATCHES - 1, int((now - self.window[0]) / width))
            self.timeline[batch] = self.timeline.get(batch, 0) + 1
            self.stats.completed_in_window += 1
        if not self._measured(intended):
            return
        st = self.stats
        st.status[status] = st.status.get(status, 0) + 1
        if status != 200:
            return
        # The sender never sends before the intended time, so this is >= the
        # true latency; the histogram's floor is 1 us.
        latency_us = max(1, int((now - intended) * 1e6))
        st.latency.record_value(min(latency_us, HIST_MAX_US))
        batch = min(
            BATCHES - 1,
            int((intended - self.window[0]) / (self.window[1] - self.window[0]) * BATCHES),
        )
        st.batch_sum[batch] += latency_us
        st.batch_n[batch] += 1
        st.lag.record_value(max(1, min(HIST_MAX_US, int((conn.sent_at - intended) * 1e6))))
        if conn.bids is not None and self.ov is not None:
            self.ov.bids(conn.bids)
        if service_us >= 0:
            st.service.record_value(max(1, min(service_us, HIST_MAX_US)))
            st.queue.record_value(max(1, min(latency_us - service_us, HIST_MAX_US)))

    def failed(self, conn: Conn, kind: str) -> None:
        self.outstanding -= 1
        if self._measured(conn.current.intended):
            self.stats.errors[kind] += 1
        if self.ov is not None:
            self.ov.failed(conn, conn.current, kind)

    def _lost(self, attempt: Attempt, kind: str, conn: Conn) -> None:
        self.outstanding -= 1
        if self._measured(attempt.intended):
            self.stats.errors[kind] += 1
        if self.ov is not None:
            self.ov.failed(conn, attempt, kind)

    # ------------------------------------------------------------- arrivals
    def dispatch(self, conn: Conn, intended: float, attempt: Attempt | None = None) -> None:
        self.outstanding += 1
        self.stats.sent += 1
        if self._measured(intended):
            self.stats.measured += 1
            if conn.busy or conn.queue:
                self.stats.queued_behind += 1
        if attempt is None:
            attempt = Attempt(intended)
        if self.ov is not None:
            self.ov.dispatched(conn, attempt)
        conn.submit(attempt)
        if conn.transport is None:
            self.reconnect(conn)

    async def open_loop(self) -> None:
        """Open-loop arrivals: Poisson at the rate, or at the schedule's rate
        (as the simulation draws them)."""
        spec = self.spec
        assert spec.rate is not None
        arrivals = (
            poisson_arrivals(self.rng, spec.rate, spec.connections, self.t0)
            if spec.schedule is None
            else scheduled_gaps(spec.schedule, self.rng, spec.connections, self.t0)
        )
        end = self.window[1]
        for t, k in arrivals:
            if t >= end or self.stats.sent >= spec.max_requests or self.stopping:
                return
            if self._measured(t):
                self.stats.scheduled += 1
            if self.timer is not None:
                await self.timer.until(t)
            else:
                # Never send early: latency is counted from t. Timers may fire
                # a little early (uvloop's are whole milliseconds), so sleep
                # again until t has passed; sleep(0) only yields for the last
                # sliver, spinning until the loop's clock ticks
                # (``simlab.real.pacing``).
                while (delay := t - self.now()) > 0:
                    await asyncio.sleep(delay if delay > 0.001 else 0)
            self.dispatch(self.conns[k], t)

    async def closed_loop(self) -> None:
        spec = self.spec
        assert spec.think_s is not None
        think = spec.think_s
        end = self.window[1]
        pending: set[asyncio.Task[None]] = set()

        async def client(conn: Conn) -> None:
            while not self.stopping:
                await asyncio.sleep(float(self.rng.exponential(think)) if think > 0 else 0)
                t = self.now()
                if t >= end or self.stats.sent >= spec.max_requests:
                    return
                if self._measured(t):
                    self.stats.scheduled += 1
                self.dispatch(conn, t)
                await conn.wait_idle()

        for conn in self.conns:
            task = self.loop.create_task(client(conn))
            pending.add(task)
        await asyncio.gather(*pending)

    async def sampler(self) -> None:
        while not self.stopping:
            now = self.now()
            if self.window[0] <= now < self.window[1]:
                self.in_flight_samples.append(self.outstanding)
            if self.ov is not None:
                self.ov.sample(now)
            await asyncio.sleep(SAMPLE_S)

    async def sweeper(self) -> None:
        """Abort requests that have waited longer than ``timeout``."""
        while True:
            now = self.now()
            for conn in self.conns:
                if conn.busy and now - conn.sent_at > self.spec.timeout:
                    conn._fail("timeouts")
            await asyncio.sleep(min(0.5, self.spec.timeout / 4))


async def _run(spec: LoadSpec) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    gen = Generator(spec, loop)
    try:
        return await _drive(gen, spec, loop)
    finally:
        # The open loop's timerfd, however the run ended.
        if gen.timer is not None:
            gen.timer.close()


async def _drive(  # noqa: PLR0912 - the run, in order
    gen: Generator, spec: LoadSpec, loop: asyncio.AbstractEventLoop
) -> dict[str, Any]:
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(gen, "stopping", True))
    if spec.requests_per_connection is None:
        opened, connect_s = await gen.open_all()
    else:
        # A client with K requests per connection connects when it has a request
        # (as the models assume), not ahead of time: an idle connection opened
        # early would hold a thread of a thread-pool or iterative server for ever.
        opened, connect_s = 0, 0.0
    gen.t0 = gen.now() + 0.05
    gen.window = (gen.t0 + spec.warmup, gen.t0 + spec.warmup + spec.duration)
    wall_window = (
        time.time() + 0.05 + spec.warmup,
        time.time() + 0.05 + spec.warmup + spec.duration,
    )
    # The load generator's own CPU over the window: it shares the machine's
    # cores with the server, and the simulation of a lab run charges it there.
    cpu_marks: list[float] = []
    # On the generator's clock, whichever the pacing's (``pacing.At``).
    for at in gen.window:
        gen.at(at, lambda: cpu_marks.append(time.process_time()))
    if spec.requests_per_connection is not None:
        # When the window ends, whatever mode is sending (a closed loop's
        # clients may still be thinking, or queued behind held threads).
        gen.at(gen.window[1], gen.close_idle)
    sampler = loop.create_task(gen.sampler())
    sweeper = loop.create_task(gen.sweeper())
    if spec.rate is not None:
        await gen.open_loop()
    else:
        await gen.closed_loop()
    # Stop sending; give what is in flight up to ``timeout`` to come back.
    # With K requests a connection, idle clients close at the window's end
    # (``close_idle``, on a timer set above), or now if sending stopped later.
    if spec.requests_per_connection is not None and gen.now() >= gen.window[1]:
        gen.close_idle()
    deadline = gen.now() + spec.timeout
    while gen.outstanding > 0 and gen.now() < deadline and not gen.stopping:
        await asyncio.sleep(0.01)
    gen.stopping = True
    for conn in gen.conns:
        if conn.busy or conn.queue:
            if gen._measured(conn.current.intended) and conn.busy:
                gen.stats.errors["unanswered"] += 1
            for attempt in conn.queue:
                if gen._measured(attempt.intended):
                    gen.stats.errors["unanswered"] += 1
            conn.queue.clear()
            conn.busy = False
        conn.close()
    if gen.ov is not None:
        gen.ov.close()
    sampler.cancel()
    sweeper.cancel()
    await asyncio.sleep(0)
    report = _report(spec, gen, opened, connect_s, wall_window)
    if gen.answers is not None and spec.requests_out:
        _write_answers(Path(spec.requests_out), gen.answers)
    report["cpu_s_window"] = cpu_marks[1] - cpu_marks[0] if len(cpu_marks) == 2 else None
    if gen.ov is not None:
        report["overload"] = gen.ov.report(time.time() + (gen.t0 - gen.now()))
    return report


def _write_answers(path: Path, answers: list[tuple[float, float, int, int]]) -> None:
    lines = ["intended_s,latency_s,connection,status"]
    lines += [f"{t:.6f},{lat:.6f},{k},{status}" for t, lat, k, status in answers]
    atomic_write(path, ("\n".join(lines) + "\n").encode())


def _encode(h: HdrHistogram) -> str:
    # HdrHistogram's own compressed, base64-wrapped encoding.
    return h.encode().decode() if h.get_total_count() else ""


def _report(
    spec: LoadSpec, gen: Generator, opened: int, connect_s: float, wall: tuple[float, float]
) -> dict[str, Any]:
    st = gen.stats
    batch_means = [s / n / 1000 for s, n in zip(st.batch_sum, st.batch_n, strict=True) if n]
    samples = gen.in_flight_samples
    return {
        "spec": {k: v for k, v in asdict(spec).items() if k != "queries"},
        "queries": len(spec.queries),
        "connections": {
            "opened": opened,
            "failed": gen.connect_failures,
            "seconds": connect_s,
            **({"local": [c.first_local for c in gen.conns]} if spec.report_local else {}),
        },
        "window_wall": list(wall),
        "scheduled": st.scheduled,
        "sent": st.sent,
        "measured": st.measured,
        "completed_in_window": st.completed_in_window,
        "status": {str(k): v for k, v in sorted(st.status.items())},
        "errors": st.errors,
        "latency_hist": _encode(st.latency),
        "service_hist": _encode(st.service),
        "queue_hist": _encode(st.queue),
        "send_delay_hist": _encode(st.lag),
        "queued_behind": st.queued_behind,
        "batch_means_ms": batch_means,
        "in_flight_mean": float(np.mean(samples)) if samples else math.nan,
        "in_flight_samples": len(samples),
        "timeline": [gen.timeline.get(b, 0) for b in range(BATCHES)],
    }


def run(spec: LoadSpec) -> dict[str, Any]:
    """Run the load in this process (the CLI runs it in a child process), on uvloop."""
    raise_fd_limit(spec.connections + 256 + (Orphan.CAP if spec.attempt_timeout else 0))
    result: dict[str, Any] = uvloop.run(_run(spec))
    return result


def decode(text: str) -> HdrHistogram:
    return HdrHistogram.decode(text.encode()) if text else _histogram()


def recorded(h: HdrHistogram) -> tuple[np.ndarray, np.ndarray]:
    """The recorded values (each its bucket's highest equivalent, as
    ``get_recorded_iterator`` gives them) and their counts, in order.

    The library's iterator walks every one of the counts array's ~23,000
    slots in Python (about half a second a histogram, three histograms and
    five percentiles a measurement); the nonzero slots are found in numpy and
    only they are turned into values, by the library's own functions."""
    counts = np.ctypeslib.as_array(h.counts)[: h.counts_len]
    index = np.flatnonzero(counts)
    values = np.fromiter(
        (h.get_highest_equivalent_value(h.get_value_from_index(int(i))) for i in index),
        dtype=np.float64,
        count=len(index),
    )
    return values, counts[index].astype(np.int64)


def mean(h: HdrHistogram) -> float:
    """``HdrHistogram.get_mean_value`` (each count at its bucket's median
    equivalent value) from the nonzero slots alone (see ``recorded``)."""
    total = int(h.get_total_count())
    if not total:
        return 0.0
    counts = np.ctypeslib.as_array(h.counts)[: h.counts_len]
    index = np.flatnonzero(counts)
    weighted: int = sum(
        int(counts[i]) * h._hdr_median_equiv_value(h.get_value_from_index(int(i))) for i in index
    )
    return float(weighted) / total


def percentile(h: HdrHistogram, q: float) -> float:
    """The ``q``-th percentile of the recorded values as the simulation takes
    it (``numpy.percentile``'s linear interpolation between the two values
    whose ranks straddle q/100 x (n - 1)), each value its bucket's highest
    equivalent (three significant digits).

    HdrHistogram's own ``get_value_at_percentile`` returns the value at rank
    round(q/100 x n) instead: the same at large n, but on a few hundred
    requests whose top 1% is two or three of them (a slow client's request
    that waited for its last) the two definitions are a whole request
    apart, and ``p99`` must mean the same in ``measure`` as in ``simulate``.
    """
    v, counts = recorded(h)
    if not len(counts):
        return math.nan
    ranks = np.cumsum(counts)  # last rank (1-based) of each value
    pos = q / 100.0 * (int(ranks[-1]) - 1)  # 0-based fractional rank
    lo = math.floor(pos)
    hi = min(lo + 1, int(ranks[-1]) - 1)
    v_lo = v[int(np.searchsorted(ranks, lo + 1))]
    v_hi = v[int(np.searchsorted(ranks, hi + 1))]
    return float(v_lo + (pos - lo) * (v_hi - v_lo))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simlab-loadgen", description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="JSON file with a LoadSpec, or - for stdin")
    args = parser.parse_args(argv)
    if args.spec == "-":
        text = sys.stdin.read()
    else:
        with open(args.spec) as fh:
            text = fh.read()
    data = json.loads(text)
    data["queries"] = tuple(data["queries"])
    if data.get("schedule") is not None:
        data["schedule"] = tuple((float(t), float(r)) for t, r in data["schedule"])
    try:
        spec = LoadSpec(**data)
    except (TypeError, ValueError) as exc:
        print(f"simlab-loadgen: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(run(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
