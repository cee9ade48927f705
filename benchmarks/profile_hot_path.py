"""Profile the DES hot path with pyinstrument on the benchmark's M/M/c queue.

Run: ``make profile``. Prints pyinstrument's call tree for 200,000 requests
of ``reactor-pool`` on the ideal platform, then the split between the event
loop and the summary (levels, tables).
"""

from __future__ import annotations

import time

import numpy as np
from pyinstrument import Profiler

import simlab
from simlab import Architecture, Workload
from simlab.distributions import Exponential, Fixed
from simlab.simulation import _result, run_replication

REQUESTS = 200_000
LAM = 90.0
SEED = 1


def main() -> None:
    w = Workload(connections=10**12, rate=LAM, cpu=Fixed(0.0), io=Exponential(1.0))
    ideal = simlab.load_platform("ideal")
    arch = Architecture(workers=100)
    profiler = Profiler(interval=0.001)
    profiler.start()
    simlab.simulate(
        "reactor-pool",
        w,
        ideal,
        arch,
        duration=REQUESTS / LAM,
        warmup=0.0,
        replications=1,
        seed=SEED,
    )
    profiler.stop()
    print(profiler.output_text(unicode=False, color=False))

    t0 = time.perf_counter()
    record = run_replication(
        "reactor-pool",
        w,
        ideal,
        arch,
        duration=REQUESTS / LAM,
        warmup=0.0,
        seed=SEED,
        replication=0,
        seed_seq=np.random.SeedSequence(SEED),
    )
    t1 = time.perf_counter()
    _result(
        "reactor-pool",
        [record],
        workload=w,
        platform=ideal,
        arch=arch,
        duration=REQUESTS / LAM,
        warmup=0.0,
        seed=SEED,
    )
    t2 = time.perf_counter()
    print(
        f"event loop: {REQUESTS / (t1 - t0):,.0f} req/s ({t1 - t0:.2f} s); "
        f"summary, levels and tables: {t2 - t1:.2f} s"
    )


if __name__ == "__main__":
    main()
