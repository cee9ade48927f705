"""A minimal SimPy M/M/c script: what a user would write by hand (the baseline).

M/M/100, lambda = 90/s, mean service 1 s; N customers; prints the mean wait.
Run: ``python simpy_mmc.py N``.
"""

import random
import sys

import simpy

LAM, MEAN_S, SERVERS, SEED = 90.0, 1.0, 100, 1


def main(n: int) -> None:
    rng = random.Random(SEED)
    env = simpy.Environment()
    servers = simpy.Resource(env, SERVERS)
    waits: list[float] = []

    def customer():  # type: ignore[no-untyped-def]
        t = env.now
        with servers.request() as req:
            yield req
            waits.append(env.now - t)
            yield env.timeout(rng.expovariate(1 / MEAN_S))

    def source():  # type: ignore[no-untyped-def]
        for _ in range(n):
            yield env.timeout(rng.expovariate(LAM))
            env.process(customer())

    env.process(source())
    env.run()
    print(f"{len(waits)} customers, mean wait {sum(waits) / len(waits):.6f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]))
