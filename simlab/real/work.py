"""What ``/work`` does: burn thread CPU time, then call the backend.

Threaded servers use ``BlockingBackend`` (one socket per thread, blocking
``recv``); asyncio servers use ``AsyncBackend`` (one multiplexed connection
per event loop, a future per call). A parallel fan-out writes all its calls
at once and then waits for every answer, so it takes about the longest call.

Overload dynamics (``WorkRequest``'s optional fields): a blocking call
(``time.sleep``) after the CPU; and an *auction*, calls with a deadline
(the fan-out takes the answers it has by then) and hedging (a call still
unanswered after ``hedge_ms`` is sent again, and its first answer counts).
Answers are matched to calls by id, so that a late answer to an earlier
request's call is skipped; the blocking client runs auctions on a
connection of their own, read with timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import socket
import threading
import time
from typing import BinaryIO, cast

from simlab.real.protocol import WorkRequest

__all__ = ["AsyncBackend", "BackendError", "BlockingBackend", "burn_cpu", "run_blocking"]


class BackendError(OSError):
    """The backend could not be reached or broke the protocol."""


def burn_cpu(ms: float) -> None:
    """Spin until this thread has used ``ms`` milliseconds of CPU time.

    Thread CPU time, not wall time: under a GIL or a busy core the thread is
    descheduled and the burn stretches, exactly as real work would.
    """
    if ms <= 0:
        return
    end = time.thread_time() + ms / 1000.0
    x = 0
    while time.thread_time() < end:
        for _ in range(100):  # about 5 us between clock reads
            x += 1


class BlockingBackend:
    """Per-thread blocking connections to the backend."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 630.0) -> None:
        self.address = (host, port)
        self.timeout = timeout
        self._local = threading.local()
        self._ids = itertools.count()
        self._all: set[socket.socket] = set()
        # Reentrant: close_all may run in a signal handler on a thread holding it.
        self._lock = threading.RLock()
        self._closed = False

    def _conn(self) -> tuple[socket.socket, BinaryIO]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise BackendError("shutting down")
            try:
                sock = socket.create_connection(self.address, timeout=self.timeout)
            except OSError as exc:
                raise BackendError(f"cannot reach the backend at {self.address}: {exc}") from exc
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = (sock, cast(BinaryIO, sock.makefile("rb")))
            self._local.conn = conn
            with self._lock:
                self._all.add(sock)
        return conn

    def call(self, delays_us: list[int], parallel: bool) -> None:
        if not delays_us:
            return
        sock, reader = self._conn()
        try:
            if parallel:
                sock.sendall(b"".join(b"%d %d\n" % (next(self._ids), d) for d in delays_us))
                for _ in delays_us:
                    self._read(reader)
            else:
                for d in delays_us:
                    sock.sendall(b"%d %d\n" % (next(self._ids), d))
                    self._read(reader)
        except OSError as exc:
            self.close()
            raise BackendError(f"backend call failed: {exc}") from exc

    @staticmethod
    def _read(reader: BinaryIO) -> None:
        line = reader.readline()
        if not line.endswith(b"\n"):
            raise BackendError("backend closed the connection")

    def auction(self, request: WorkRequest) -> None:
        """The request's calls with its deadline and hedging; records its bids."""
        delays, hedges = request.delays_us, request.hedge_delays_us
        if not delays:
            return
        sock = self._auction_sock()
        start = time.monotonic()
        end = start + request.deadline_ms / 1e3 if request.deadline_ms is not None else math.inf
        hedge = request.hedge_ms / 1e3 if request.hedge_ms is not None else None
        got = 0
        try:
            if request.fanout == "parallel":
                calls = list(range(len(delays)))
                got = self._race(sock, calls, delays, hedges, end=end, hedge=hedge)
            else:
                for j in range(len(delays)):
                    if time.monotonic() >= end:
                        break
                    if not self._race(sock, [j], delays, hedges, end=end, hedge=hedge):
                        break
                    got += 1
        except OSError as exc:
            self._drop_auction()
            raise BackendError(f"backend call failed: {exc}") from exc
        request.bids[:] = [got, len(delays)]

    def _race(
        self,
        sock: socket.socket,
        calls: list[int],
        delays: list[int],
        hedges: list[int],
        *,
        end: float,
        hedge: float | None,
    ) -> int:
        """Send ``calls``, hedge the late ones, and read answers until every call
        has one or ``end`` passes; returns how many were answered."""
        ids: dict[int, int] = {}
        for j in calls:
            ids[self._send_call(sock, delays[j])] = j
        hedge_at = time.monotonic() + hedge if hedge is not None else math.inf
        answered: set[int] = set()
        while len(answered) < len(calls):
            now = time.monotonic()
            if now >= end:
                break
            if now >= hedge_at:
                for j in calls:
                    if j not in answered:
                        ids[self._send_call(sock, hedges[j])] = j
                hedge_at = math.inf
            call_id = self._read_id(sock, min(end, hedge_at) - now)
            if call_id is not None and call_id in ids:
                answered.add(ids[call_id])
        return len(answered)

    def _send_call(self, sock: socket.socket, delay_us: int) -> int:
        call_id = next(self._ids)
        sock.sendall(b"%d %d\n" % (call_id, delay_us))
        return call_id

    def _read_id(self, sock: socket.socket, wait: float) -> int | None:
        """The next answer's call id, or None if none came within ``wait`` s."""
        buf: bytes = self._local.auction_buf
        while b"\n" not in buf:
            sock.settimeout(min(max(wait, 1e-4), self.timeout))
            try:
                data = sock.recv(65536)
            except TimeoutError:
                self._local.auction_buf = buf
                return None
            if not data:
                raise BackendError("backend closed the connection")
            buf += data
        line, _, rest = buf.partition(b"\n")
        self._local.auction_buf = rest
        return int(line)

    def _auction_sock(self) -> socket.socket:
        sock = getattr(self._local, "auction", None)
        if sock is None:
            if self._closed:
                raise BackendError("shutting down")
            try:
                sock = socket.create_connection(self.address, timeout=self.timeout)
            except OSError as exc:
                raise BackendError(f"cannot reach the backend at {self.address}: {exc}") from exc
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.auction = sock
            self._local.auction_buf = b""
            with self._lock:
                self._all.add(sock)
        return cast(socket.socket, sock)

    def _drop_auction(self) -> None:
        sock = getattr(self._local, "auction", None)
        if sock is not None:
            self._local.auction = None
            with self._lock:
                self._all.discard(sock)
            sock.close()

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with self._lock:
                self._all.discard(conn[0])
            conn[1].close()
            conn[0].close()

    def close_all(self) -> None:
        """Shut down every thread's connection: calls in progress fail at once."""
        self._closed = True
        with self._lock:
            socks = list(self._all)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def run_blocking(request: WorkRequest, backend: BlockingBackend) -> int:
    """Do the work on this thread; returns its duration in microseconds."""
    t0 = time.perf_counter()
    burn_cpu(request.cpu_ms)
    if request.block_ms > 0:
        time.sleep(request.block_ms / 1e3)  # a synchronous driver: this thread waits
    if request.deadline_ms is None and request.hedge_ms is None:
        backend.call(request.delays_us, request.fanout == "parallel")
    else:
        backend.auction(request)
    return int((time.perf_counter() - t0) * 1e6)


class AsyncBackend:
    """One connection per event loop, shared by every task; calls matched by id."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.address = (host, port)
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._ids = itertools.count()
        self._connecting: asyncio.Lock | None = None

    async def _ensure(self) -> asyncio.StreamWriter:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._writer is None or self._writer.is_closing():
                try:
                    reader, writer = await asyncio.open_connection(*self.address)
                except OSError as exc:
                    raise BackendError(
                        f"cannot reach the backend at {self.address}: {exc}"
                    ) from exc
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._writer = writer
                self._reader_task = asyncio.create_task(self._read_loop(reader))
            return self._writer

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                fut = self._pending.pop(int(line), None)
                if fut is not None and not fut.done():
                    fut.set_result(None)
        except (OSError, ValueError):
            pass
        finally:
            self._writer = None
            pending, self._pending = self._pending, {}
            for fut in pending.values():
                if not fut.done():
                    fut.set_exception(BackendError("backend connection lost"))

    async def call(self, delays_us: list[int], parallel: bool) -> None:
        if not delays_us:
            return
        writer = await self._ensure()
        loop = asyncio.get_running_loop()
        if parallel:
            futures = []
            lines = []
            for d in delays_us:
                call_id = next(self._ids)
                fut: asyncio.Future[None] = loop.create_future()
                self._pending[call_id] = fut
                futures.append(fut)
                lines.append(b"%d %d\n" % (call_id, d))
            writer.write(b"".join(lines))
            await asyncio.gather(*futures)
            return
        for d in delays_us:
            call_id = next(self._ids)
            fut = loop.create_future()
            self._pending[call_id] = fut
            writer.write(b"%d %d\n" % (call_id, d))
            await fut

    async def auction(self, request: WorkRequest) -> None:  # noqa: PLR0912 - two fan-outs
        """The request's calls with its deadline and hedging; records its bids."""
        delays, hedges = request.delays_us, request.hedge_delays_us
        if not delays:
            return
        writer = await self._ensure()
        loop = asyncio.get_running_loop()
        deadline = request.deadline_ms / 1e3 if request.deadline_ms is not None else None
        start = loop.time()
        futures = [loop.create_future() for _ in delays]
        issued: list[int] = []

        def send(j: int, delay_us: int) -> None:
            call_id = next(self._ids)
            self._pending[call_id] = futures[j]  # a hedge shares its call's future
            issued.append(call_id)
            writer.write(b"%d %d\n" % (call_id, delay_us))

        def hedge(calls: list[int]) -> None:
            for j in calls:
                if not futures[j].done():
                    send(j, hedges[j])

        got = 0
        try:
            if request.fanout == "parallel":
                for j, d in enumerate(delays):
                    send(j, d)
                if request.hedge_ms is not None:
                    loop.call_later(request.hedge_ms / 1e3, hedge, list(range(len(delays))))
                done, _ = await asyncio.wait(futures, timeout=deadline)
                got = sum(1 for f in done if f.exception() is None)
            else:
                for j, d in enumerate(delays):
                    left = None if deadline is None else start + deadline - loop.time()
                    if left is not None and left <= 0:
                        break
                    send(j, d)
                    if request.hedge_ms is not None:
                        loop.call_later(request.hedge_ms / 1e3, hedge, [j])
                    done, _ = await asyncio.wait([futures[j]], timeout=left)
                    if not done or futures[j].exception() is not None:
                        break
                    got += 1
        finally:
            for call_id in issued:  # late answers find nothing to wake
                self._pending.pop(call_id, None)
            for f in futures:
                if not f.done():
                    f.cancel()
        request.bids[:] = [got, len(delays)]

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
