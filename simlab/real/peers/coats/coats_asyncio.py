"""The Python coroutines of experiments/callbacks_vs_coroutines.py, on one asyncio loop.

Usage: python coats_asyncio.py pending N   N tasks each suspended in asyncio.sleep(an hour)
       python coats_asyncio.py hops C K MS warm up, print READY, wait for a line on stdin, then
                                           rounds of C concurrent tasks each passing K
                                           times through the loop (asyncio.sleep(0))
                                           until MS milliseconds have passed; print DONE
                                           with the rounds and the wall time, and hold.
"""

from __future__ import annotations

import asyncio
import sys
import time

HOUR_S = 3600.0


async def wait(i: int) -> int:
    await asyncio.sleep(HOUR_S)
    return i


async def chain(k: int) -> int:
    for _ in range(k):
        await asyncio.sleep(0)  # one turn of the loop: the task is resumed by the loop
    return k


async def one_round(c: int, k: int) -> int:
    return sum(await asyncio.gather(*(chain(k) for _ in range(c))))


async def rounds(c: int, k: int, ms: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    done = 0
    while (time.perf_counter() - t0) * 1e3 < ms:
        await one_round(c, k)
        done += 1
    return done, time.perf_counter() - t0


async def main(mode: str, args: list[int]) -> None:
    if mode == "pending":
        t0 = time.perf_counter()
        held = [asyncio.create_task(wait(i)) for i in range(args[0])]
        await asyncio.sleep(0)  # every task started, now suspended in its sleep
        print(f'READY {{"create_s": {time.perf_counter() - t0}}}', flush=True)
        await asyncio.gather(*held)
        return
    c, k, ms = args
    await rounds(c, k, ms)  # warm-up
    print('READY {"create_s": 0}', flush=True)
    # The measurer reads the CPU count, then sends a line: the rounds start after it.
    sys.stdin.readline()
    done, wall = await rounds(c, k, ms)
    print(f'DONE {{"rounds": {done}, "wall_s": {wall}}}', flush=True)
    await asyncio.sleep(HOUR_S)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], [int(a) for a in sys.argv[2:]]))
