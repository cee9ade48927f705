"""The load generator's pacings (``simlab.real.pacing``), without a server:
an open loop's sends, counted in place of sending, are the seed's arrivals
of the window, in order, and with the timer none goes before its time on
the monotonic clock."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from typing import Any

import numpy as np
import pytest
import uvloop

from simlab.real.loadgen import Generator, LoadSpec, poisson_arrivals
from simlab.real.pacing import PACINGS, At, Timer

RATE, SECONDS = 2000.0, 0.3


async def _sends(pacing: str) -> tuple[list[tuple[float, float]], Generator]:
    """(intended, monotonic clock at the send) of every send of a short open loop."""
    loop = asyncio.get_running_loop()
    spec = LoadSpec(host="127.0.0.1", port=9, connections=3, queries=("cpu_ms=0",),
                    rate=RATE, pacing=pacing)  # fmt: skip
    gen = Generator(spec, loop)
    sent: list[tuple[float, float]] = []

    def dispatch(_conn: Any, intended: float, *_args: Any) -> None:
        sent.append((intended, time.monotonic()))

    gen.dispatch = dispatch  # type: ignore[method-assign]
    gen.t0 = gen.now() + 0.01
    gen.window = (gen.t0, gen.t0 + SECONDS)
    try:
        await gen.open_loop()
    finally:
        if gen.timer is not None:
            gen.timer.close()
    return sent, gen


@pytest.mark.parametrize("pacing", PACINGS)
def test_every_arrival_of_the_window_is_sent_in_order(pacing: str) -> None:
    sent, gen = uvloop.run(_sends(pacing))
    assert (gen.timer is not None) == (pacing == "timer")
    # The seed's own arrivals (``poisson_arrivals``), those before the window's end.
    arrivals = poisson_arrivals(np.random.default_rng(gen.spec.seed), RATE, 3, gen.t0)
    wanted = list(itertools.takewhile(lambda a: a[0] < gen.window[1], arrivals))
    assert [t for t, _ in sent] == [t for t, _ in wanted]
    assert len(sent) > 400  # about 600 at 2,000/s over 0.3 s


def test_the_timer_pacing_never_sends_early() -> None:
    # The monotonic clock read at each send, against the send's own time: the
    # timerfd, not a check of the clock in a loop, decides when it goes.
    sent, _ = uvloop.run(_sends("timer"))
    assert sent and all(at >= intended for intended, at in sent)


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


def test_a_call_at_a_monotonic_time_never_comes_early() -> None:
    # uvloop's timers count its whole-millisecond clock: a call at a time of
    # the monotonic clock waits again if one comes before it (``pacing.At``).
    async def run() -> list[tuple[float, float]]:
        loop = asyncio.get_running_loop()
        fired: list[tuple[float, float]] = []
        done = loop.create_future()
        whens = [time.monotonic() + 0.0003 + 0.0011 * k for k in range(12)]
        for when in whens:
            At(loop, time.monotonic, when, lambda w=when: fired.append((w, time.monotonic())))
        At(loop, time.monotonic, whens[-1] + 0.005, done.set_result, None)
        await done
        return fired

    fired = uvloop.run(run())
    assert len(fired) == 12 and all(at >= when for when, at in fired)
