"""What the load generator's open-loop pacing costs in CPU, with no server at all.

``Generator.open_loop`` (``simlab/real/loadgen.py``) never sends early. Its
default pacing (``loop``) sleeps until the last millisecond before each
intended send and then yields with ``asyncio.sleep(0)`` until uvloop's
whole-millisecond clock reaches it; the ``timer`` pacing waits on a timerfd
armed at the send's time (``simlab.real.pacing``). This runs that very loop
on uvloop, each pacing in turn, for a few seconds of Poisson arrivals, each
send replaced by a counter (no sockets), and beside them, in the same run, a
baseline that only sleeps until each arrival (``asyncio.sleep(delay)``: it
may send up to a millisecond early). It prints the CPU a request of each and
the loop pacing's over the timer's: what the lab's load generator spends
beside the server it measures before it sends anything
(docs/calibration.md, "The load generator spins").

Run: ``python benchmarks/loadgen_pacing.py [--rates 300 700] [--seconds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import numpy as np
import uvloop

from simlab.real.loadgen import Generator, LoadSpec
from simlab.real.pacing import PACINGS


async def _paced(rate: float, seconds: float, pacing: str) -> tuple[int, float]:
    """The loadgen's own open loop, its sends counted: (requests, CPU s)."""
    loop = asyncio.get_running_loop()
    spec = LoadSpec(
        host="127.0.0.1", port=9, connections=1, queries=("cpu=0",), rate=rate, pacing=pacing
    )
    gen = Generator(spec, loop)
    sent = [0]

    def dispatch(*_args: Any) -> None:
        sent[0] += 1

    gen.dispatch = dispatch  # type: ignore[method-assign]
    gen.t0 = gen.now()
    gen.window = (gen.t0, gen.t0 + seconds)
    cpu = time.process_time()
    try:
        await gen.open_loop()
    finally:
        if gen.timer is not None:
            gen.timer.close()
    return sent[0], time.process_time() - cpu


async def _plain(rate: float, seconds: float) -> tuple[int, float]:
    """The same Poisson arrivals, each only slept until: (requests, CPU s)."""
    loop = asyncio.get_running_loop()
    rng = np.random.default_rng(1)
    t, end, n = loop.time(), loop.time() + seconds, 0
    cpu = time.process_time()
    while (t := t + float(rng.exponential(1 / rate))) < end:
        if (delay := t - loop.time()) > 0:
            await asyncio.sleep(delay)
        n += 1
    return n, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[300.0, 700.0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    if args.seconds <= 0 or min(args.rates) <= 0:
        parser.error("--rates and --seconds must be positive")
    print(
        "| rate/s | loop pacing, CPU us a request | timer pacing | plain sleep | loop over timer |"
    )
    print("|---:|---:|---:|---:|---:|")
    for rate in args.rates:
        us = {}
        for pacing in PACINGS:
            n, cpu = uvloop.run(_paced(rate, args.seconds, pacing))
            us[pacing] = cpu / max(n, 1) * 1e6
        m, base = uvloop.run(_plain(rate, args.seconds))
        plain = base / max(m, 1) * 1e6
        print(
            f"| {rate:g} | {us['loop']:.0f} | {us['timer']:.0f} | {plain:.0f} "
            f"| {us['loop'] / us['timer']:.1f}x |"
        )


if __name__ == "__main__":
    main()
