"""The load generator's pacings (``simlab.real.pacing``), without a server:
each send of an open loop, counted in place of sending, is never before its
intended time on the pacing's own clock, and every arrival of the window
is sent."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest
import uvloop

from simlab.real.loadgen import Generator, LoadSpec
from simlab.real.pacing import PACINGS, Timer

RATE, SECONDS = 2000.0, 0.3


async def _sends(pacing: str) -> tuple[list[tuple[float, float]], Generator]:
    """(intended, clock at the send) of every send of a short open loop."""
    loop = asyncio.get_running_loop()
    spec = LoadSpec(host="127.0.0.1", port=9, connections=3, queries=("cpu_ms=0",),
                    rate=RATE, pacing=pacing)  # fmt: skip
    gen = Generator(spec, loop)
    sent: list[tuple[float, float]] = []

    def dispatch(_conn: Any, intended: float, *_args: Any) -> None:
        sent.append((intended, gen.now()))

    gen.dispatch = dispatch  # type: ignore[method-assign]
    gen.t0 = gen.now() + 0.01
    gen.window = (gen.t0, gen.t0 + SECONDS)
    await gen.open_loop()
    if gen.timer is not None:
        gen.timer.close()
    return sent, gen


@pytest.mark.parametrize("pacing", PACINGS)
def test_no_send_is_early_and_every_arrival_is_sent(pacing: str) -> None:
    sent, gen = uvloop.run(_sends(pacing))
    assert (gen.timer is not None) == (pacing == "timer")
    # Poisson arrivals at 2,000/s over 0.3 s: about 600 (far more than 400).
    assert len(sent) > 400
    assert all(at >= intended for intended, at in sent), pacing
    intended = [t for t, _ in sent]
    assert intended == sorted(intended) and intended[-1] < gen.window[1]


def test_the_timer_waits_for_its_time_and_closes() -> None:
    async def run() -> tuple[float, float, bool]:
        loop = asyncio.get_running_loop()
        timer = Timer(loop)
        t = time.monotonic() + 0.02
        await timer.until(t)
        woke = time.monotonic()
        await timer.until(t - 1.0)  # a time gone by returns at once
        timer.close()
        try:
            os.fstat(timer.fd)
        except OSError:
            return t, woke, True
        return t, woke, False

    t, woke, closed = uvloop.run(run())
    assert woke >= t
    assert closed


def test_a_pacing_is_named() -> None:
    with pytest.raises(ValueError, match="pacing"):
        LoadSpec(host="127.0.0.1", port=9, connections=1, queries=("q",), rate=1.0, pacing="spin")
