"""HTTP/1.1 for the real servers: h11 or httptools parsing, the ``/work`` route, and responses.

Every server, blocking or asyncio, goes through an exchange: it feeds bytes
to the parser and gets back either a parsed ``WorkRequest`` to run, a ready
error response (400 for a malformed request or bad query values, 404, 405,
431 for a header block over ``MAX_HEADER_BYTES``), or a need for more bytes.
``Exchange`` uses h11 (pure Python, strict); ``FastExchange`` uses httptools
(llhttp, in C; what uvicorn uses), for speed. Parsing is theirs; nothing here
parses HTTP by hand.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
import httptools

__all__ = [
    "EOF",
    "MAX_HEADER_BYTES",
    "PARSERS",
    "BadRequest",
    "Exchange",
    "FastExchange",
    "WorkRequest",
    "new_exchange",
    "parse_work",
]

PARSERS = ("h11", "httptools")

MAX_HEADER_BYTES = 64 * 1024
# Upper bounds on the work one request may ask for: a request over them is a
# client error (400), not hours of CPU or a million backend calls.
MAX_CPU_MS = 60_000.0
MAX_IO_MS = 600_000.0
MAX_CALLS = 1_000
# Overload dynamics' query parameters (``WorkRequest``).
OVERLOAD_PARAMS = ("block_ms", "deadline_ms", "hedge_ms", "hedge_io_ms")


class BadRequest(ValueError):  # noqa: N818 - named for the HTTP status it becomes
    """A request the server answers with 4xx and then closes."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class WorkRequest:
    """``GET /work?cpu_ms=&io_ms=&calls=&fanout=``, validated.

    ``io_ms`` is one latency for every call, or a comma-separated list with
    one per call (so that a client can draw random per-call latencies).

    Overload dynamics add (all optional): ``block_ms``, a blocking call of
    that long (``time.sleep``, as a synchronous driver would block: on a
    thread it holds that thread, on an event loop the whole loop);
    ``deadline_ms``, after which the calls' fan-out takes the answers it
    has; ``hedge_ms`` and ``hedge_io_ms``, a call still unanswered after
    ``hedge_ms`` is sent again with the second latency (one per call), and
    the first answer counts. ``bids`` is filled in by the backend client:
    (answers received in time, calls), reported as ``x-bids``.
    """

    cpu_ms: float = 0.0
    io_ms: tuple[float, ...] = ()
    fanout: str = "sequential"
    block_ms: float = 0.0
    deadline_ms: float | None = None
    hedge_ms: float | None = None
    hedge_io_ms: tuple[float, ...] = ()
    bids: list[int] = field(default_factory=list, compare=False)

    @property
    def calls(self) -> int:
        return len(self.io_ms)

    @property
    def delays_us(self) -> list[int]:
        return [int(ms * 1000) for ms in self.io_ms]

    @property
    def hedge_delays_us(self) -> list[int]:
        return [int(ms * 1000) for ms in self.hedge_io_ms]

    def headers(self) -> list[tuple[str, str]]:
        """What the answer reports besides its service time: the bids received."""
        if len(self.bids) == 2:
            return [("x-bids", f"{self.bids[0]}/{self.bids[1]}")]
        return []


def _number(text: str, name: str, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(400, f"{name} must be a number") from None
    if not math.isfinite(value) or value < 0 or value > high:
        raise BadRequest(400, f"{name} must be between 0 and {high:g}")
    return value


def _param(params: dict[str, list[str]], name: str, high: float) -> float:
    values = params.get(name)
    return _number(values[-1], name, high) if values else 0.0


def parse_work(target: str) -> WorkRequest:
    """Validate a request target; raises BadRequest (400/404) when it is not a valid /work."""
    parts = urlsplit(target)
    if parts.path != "/work":
        raise BadRequest(404, "only /work is served")
    try:
        params = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    except ValueError:
        raise BadRequest(400, "malformed query") from None
    unknown = set(params) - {"cpu_ms", "io_ms", "calls", "fanout", *OVERLOAD_PARAMS}
    if unknown:
        raise BadRequest(400, f"unknown parameter {sorted(unknown)[0]}")
    calls = _param(params, "calls", MAX_CALLS)
    if calls != int(calls):
        raise BadRequest(400, "calls must be an integer")
    fanout = params.get("fanout", ["sequential"])[-1]
    if fanout not in ("sequential", "parallel"):
        raise BadRequest(400, "fanout must be sequential or parallel")
    raw_io = params.get("io_ms", ["0"])[-1].split(",")
    io = [_number(x, "io_ms", MAX_IO_MS) for x in raw_io]
    if len(io) == 1:
        io = io * int(calls)
    elif len(io) != int(calls):
        raise BadRequest(400, "io_ms must be one value or one per call")
    cpu = _param(params, "cpu_ms", MAX_CPU_MS)
    if not any(k in params for k in OVERLOAD_PARAMS):
        return WorkRequest(cpu_ms=cpu, io_ms=tuple(io), fanout=fanout)
    return WorkRequest(cpu_ms=cpu, io_ms=tuple(io), fanout=fanout, **_overload(params, len(io)))


def _overload(params: dict[str, list[str]], calls: int) -> dict[str, Any]:
    """The overload parameters of a /work request, validated (``WorkRequest``)."""
    deadline = _param(params, "deadline_ms", MAX_IO_MS) if "deadline_ms" in params else None
    hedge = _param(params, "hedge_ms", MAX_IO_MS) if "hedge_ms" in params else None
    if deadline is not None and deadline <= 0:
        raise BadRequest(400, "deadline_ms must be above 0")
    if hedge is not None and hedge <= 0:
        raise BadRequest(400, "hedge_ms must be above 0")
    raw_hedge = params.get("hedge_io_ms", [""])[-1]
    hedge_io = [_number(x, "hedge_io_ms", MAX_IO_MS) for x in raw_hedge.split(",") if x]
    if hedge is not None and len(hedge_io) == 1:
        hedge_io = hedge_io * calls
    if hedge is not None and len(hedge_io) != calls:
        raise BadRequest(400, "hedge_io_ms must be one value or one per call")
    if hedge is None and hedge_io:
        raise BadRequest(400, "hedge_io_ms needs hedge_ms")
    return {
        "block_ms": _param(params, "block_ms", MAX_IO_MS),
        "deadline_ms": deadline,
        "hedge_ms": hedge,
        "hedge_io_ms": tuple(hedge_io),
    }


_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


class EOF:
    """Marker: the client closed the connection."""


class Exchange:
    """One server-side connection's HTTP state, fed with bytes as they arrive.

    ``feed(data)`` then ``next()`` returns one of:
    - a ``WorkRequest``: run it, then send ``respond(service_us)``;
    - ``bytes``: an error response (4xx) to send, after which the connection
      must close;
    - ``None``: more bytes are needed (``mid_request`` says whether a request
      has started, for the slow-client timeout);
    - ``EOF``: the client closed cleanly.
    ``keep_alive`` is False once the connection must close after the response.
    """

    def __init__(self) -> None:
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self._pending: WorkRequest | BadRequest | None = None

    def feed(self, data: bytes) -> None:
        self.conn.receive_data(data)

    @property
    def keep_alive(self) -> bool:
        return self.conn.our_state is not h11.MUST_CLOSE and self.conn.their_state not in (
            h11.MUST_CLOSE,
            h11.ERROR,
            h11.CLOSED,
        )

    @property
    def mid_request(self) -> bool:
        """True once part of a request has arrived and it is not yet complete."""
        c = self.conn
        return c.their_state is h11.SEND_BODY or (
            c.their_state is h11.IDLE and bool(c.trailing_data[0])
        )

    def next(self) -> WorkRequest | bytes | type[EOF] | None:
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                # h11 reports a header block over max_incomplete_event_size this way.
                status = 431 if "too long" in str(exc).lower() else 400
                return self._error(status, str(exc))
            if event is h11.NEED_DATA:
                return None
            if isinstance(event, h11.ConnectionClosed):
                return EOF
            if isinstance(event, h11.Request):
                if event.method != b"GET":
                    self._pending = BadRequest(405, "only GET is served")
                else:
                    try:
                        self._pending = parse_work(event.target.decode("ascii", "replace"))
                    except BadRequest as exc:
                        self._pending = exc
            elif isinstance(event, h11.EndOfMessage):
                pending, self._pending = self._pending, None
                if isinstance(pending, BadRequest):
                    return self._error(pending.status, pending.reason)
                assert pending is not None
                return pending
            # Otherwise h11.Data: a request body, which /work ignores.

    def respond(self, service_us: int, extra: list[tuple[str, str]] | None = None) -> bytes:
        """The 200 for the request just run; readies the connection for the next one.

        ``x-service-us`` reports the time the server spent on the work itself,
        so that the client can split latency into service and queueing delay.
        """
        return self._send(200, b"ok\n", [("x-service-us", str(service_us)), *(extra or [])])

    def refuse(self) -> bytes:
        """503 for a request refused because the work queue is full; the connection stays."""
        return self._send(503, b"overloaded\n", [])

    def _error(self, status: int, reason: str) -> bytes:
        body = f"{reason}\n".encode()
        try:
            return self._send(status, body, [("connection", "close")])
        except h11.LocalProtocolError:
            # The request was so broken that h11 will not frame a reply; say it raw.
            head = b"HTTP/1.1 %d Error\r\nconnection: close\r\ncontent-length: %d\r\n\r\n"
            return head % (status, len(body)) + body

    def _send(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> bytes:
        c = self.conn
        head = h11.Response(
            status_code=status,
            headers=[("content-length", str(len(body))), *headers],
            reason=_REASONS.get(status, b"Error"),
        )
        out = b"".join(
            x or b""
            for x in (c.send(head), c.send(h11.Data(data=body)), c.send(h11.EndOfMessage()))
        )
        if c.our_state is h11.DONE and c.their_state is h11.DONE:
            c.start_next_cycle()
        return out


def _response(status: int, body: bytes, headers: list[tuple[str, str]], close: bool) -> bytes:
    lines = [b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Error"))]
    lines.append(b"content-length: %d" % len(body))
    lines += [f"{k}: {v}".encode("latin-1") for k, v in headers]
    if close:
        lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class FastExchange:
    """``Exchange``'s interface on httptools.

    httptools parses everything it is fed at once, pipelined requests
    included, so finished requests wait in a queue and are handed out one at
    a time, as the servers run them. A header block is limited to
    ``MAX_HEADER_BYTES`` by counting the bytes fed while headers are open.
    """

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self._ready: deque[WorkRequest | _CloseAfter | bytes | type[EOF]] = deque()
        self._url = bytearray()
        self._in_headers = False
        self._in_message = False
        self._header_bytes = 0
        self._chunk = 0
        self._oversize = False
        self._keep_alive = True
        self._broken = False

    # httptools callbacks ---------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._in_headers = True
        self._header_bytes = 0
        self._oversize = False
        self._url.clear()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_headers_complete(self) -> None:
        self._in_headers = False
        # The chunk that ends the header block counts whole: this errs on the
        # side of counting too much, never too little.
        self._oversize = self._header_bytes + self._chunk > MAX_HEADER_BYTES

    def on_message_complete(self) -> None:
        self._in_message = False
        keep = self.parser.should_keep_alive()
        if self._oversize:
            self._fail(431, "header block too long")
            return
        if self.parser.get_method() != b"GET":
            self._fail(405, "only GET is served")
            return
        try:
            work = parse_work(self._url.decode("ascii", "replace"))
        except BadRequest as exc:
            self._fail(exc.status, exc.reason)
            return
        self._ready.append(work if keep else _CloseAfter(work))

    # the exchange ----------------------------------------------------------

    def _fail(self, status: int, reason: str) -> None:
        self._broken = True
        self._ready.append(_response(status, f"{reason}\n".encode(), [], close=True))

    def feed(self, data: bytes) -> None:
        if self._broken:
            return
        if not data:
            if self._in_message:
                self._fail(400, "connection closed in the middle of a request")
            else:
                self._ready.append(EOF)
            return
        self._chunk = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not served")
        except httptools.HttpParserError as exc:
            self._fail(400, f"malformed request: {exc}")
        if self._in_headers and not self._broken:
            # Still inside a header block: count what it has taken so far.
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._fail(431, "header block too long")

    @property
    def keep_alive(self) -> bool:
        return self._keep_alive and not self._broken

    @property
    def mid_request(self) -> bool:
        return self._in_message and not self._ready

    def next(self) -> WorkRequest | bytes | type[EOF] | None:
        if not self._ready:
            return None
        item = self._ready.popleft()
        if isinstance(item, _CloseAfter):
            self._keep_alive = False
            return item.work
        return item

    def respond(self, service_us: int, extra: list[tuple[str, str]] | None = None) -> bytes:
        return _response(
            200,
            b"ok\n",
            [("x-service-us", str(service_us)), *(extra or [])],
            close=not self._keep_alive,
        )

    def refuse(self) -> bytes:
        return _response(503, b"overloaded\n", [], close=not self._keep_alive)


class _CloseAfter:
    """A request after which the client asked to close (HTTP/1.0, Connection: close)."""

    __slots__ = ("work",)

    def __init__(self, work: WorkRequest) -> None:
        self.work = work


def new_exchange(parser: str) -> Exchange | FastExchange:
    """An exchange on the named parser (``h11`` or ``httptools``)."""
    if parser == "httptools":
        return FastExchange()
    if parser == "h11":
        return Exchange()
    raise ValueError(f"unknown parser {parser!r} (choose from: {', '.join(PARSERS)})")
