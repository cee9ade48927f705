"""A pure-Python M/M/c by recursion: a heap of the servers' free times.

The Kiefer-Wolfowitz recursion a user would write without any library (the
idea simlab's fast engine compiles). M/M/100, lambda = 90/s, mean service
1 s; N customers; prints the mean wait. Run: ``python heap_mmc.py N``.
"""

import heapq
import random
import sys

LAM, MEAN_S, SERVERS, SEED = 90.0, 1.0, 100, 1


def main(n: int) -> None:
    rng = random.Random(SEED)
    free = [0.0] * SERVERS  # already a heap
    now = total = 0.0
    for _ in range(n):
        now += rng.expovariate(LAM)
        start = max(now, heapq.heappop(free))
        total += start - now
        heapq.heappush(free, start + rng.expovariate(1 / MEAN_S))
    print(f"{n} customers, mean wait {total / n:.6f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]))
