"""h11 and httptools exchanges agree: the same requests get the same work or the same status."""

from __future__ import annotations

import pytest

from simlab.real.protocol import EOF, Exchange, FastExchange, WorkRequest, new_exchange

CASES = [
    b"GET /work?cpu_ms=1&io_ms=5&calls=2&fanout=parallel HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /work HTTP/1.0\r\n\r\n",
    b"GET /work HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"GET /work?cpu_ms=abc HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /work?io_ms=1,2&calls=3 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /other HTTP/1.1\r\nHost: t\r\n\r\n",
    b"POST /work HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
    b"\x00\xff\x13garbage\r\n\r\n",
    # Well over the 64 KiB limit: h11 checks only what it holds incomplete, so
    # a header just over it can pass h11 when it arrives in one piece.
    b"GET /work HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (200 * 1024) + b"\r\n\r\n",
]


def outcome(exchange: Exchange | FastExchange, raw: bytes, chunk: int) -> tuple[object, bool]:
    for k in range(0, len(raw), chunk):
        exchange.feed(raw[k : k + chunk])
        item = exchange.next()
        if item is not None:
            break
    else:
        item = exchange.next()
    if isinstance(item, WorkRequest):
        exchange.respond(1)
        return item, exchange.keep_alive
    if isinstance(item, bytes):
        return int(item.split(b" ", 2)[1]), False
    return item, exchange.keep_alive


@pytest.mark.parametrize("raw", CASES)
@pytest.mark.parametrize("chunk", [7, 65536])
def test_parsers_agree(raw: bytes, chunk: int) -> None:
    assert outcome(Exchange(), raw, chunk) == outcome(FastExchange(), raw, chunk)


def test_pipelined_requests_come_one_at_a_time() -> None:
    e = FastExchange()
    e.feed(b"GET /work?cpu_ms=1 HTTP/1.1\r\nHost: t\r\n\r\nGET /work?cpu_ms=2 HTTP/1.1\r\n\r\n")
    first = e.next()
    assert isinstance(first, WorkRequest) and first.cpu_ms == 1
    assert b" 200 " in e.respond(5)
    second = e.next()
    assert isinstance(second, WorkRequest) and second.cpu_ms == 2
    assert e.next() is None
    e.feed(b"")
    assert e.next() is EOF


def test_unknown_parser() -> None:
    with pytest.raises(ValueError, match="parser"):
        new_exchange("picohttp")
