"""Benchmark: simulated requests per wall-second on M/M/c, simlab against SimPy and Ciw.

The queue is the one the issue names: lam = 90/s, S ~ Exp(1 s), c = 100,
500,000 requests. Three engines, each in its own process (so peak memory is
its own), each run REPEATS times; the table reports medians and the ratios of
simlab to the other two, all measured in this one run:

- simlab: ``reactor-pool`` on the ideal platform, through ``simlab.simulate``
  (tables and summary included);
- a minimal SimPy script of the same queue (Resource, one process per
  customer, waits recorded in a list);
- Ciw, the queueing-network simulator.

Run: ``make bench`` or ``python benchmarks/bench_mmc.py [--requests N]``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import statistics
import subprocess
import sys
import time

LAM, MU, C = 90.0, 1.0, 100
REQUESTS = 500_000
REPEATS = 3
SEED = 1


def run_simlab(n: int) -> int:
    import simlab
    from simlab import Architecture, Workload
    from simlab.distributions import Exponential, Fixed

    w = Workload(connections=10**12, rate=LAM, cpu=Fixed(0.0), io=Exponential(1 / MU))
    r = simlab.simulate(
        "reactor-pool",
        w,
        simlab.load_platform("ideal"),
        Architecture(workers=C),
        duration=n / LAM,
        warmup=0.0,
        replications=1,
        seed=SEED,
    )
    return int(r.summary["completed"])


def run_simpy(n: int) -> int:
    import numpy as np
    import simpy

    rng = np.random.default_rng(SEED)
    gaps = rng.exponential(1 / LAM, n).tolist()
    service = rng.exponential(1 / MU, n).tolist()
    env = simpy.Environment()
    servers = simpy.Resource(env, C)
    waits: list[float] = []

    def customer(s: float):  # type: ignore[no-untyped-def]
        t0 = env.now
        with servers.request() as req:
            yield req
            waits.append(env.now - t0)
            yield env.timeout(s)

    def source():  # type: ignore[no-untyped-def]
        for gap, s in zip(gaps, service, strict=True):
            yield env.timeout(gap)
            env.process(customer(s))

    env.process(source())
    env.run()
    return len(waits)


def run_ciw(n: int) -> int:
    import ciw

    net = ciw.create_network(
        arrival_distributions=[ciw.dists.Exponential(LAM)],
        service_distributions=[ciw.dists.Exponential(MU)],
        number_of_servers=[C],
    )
    ciw.seed(SEED)
    q = ciw.Simulation(net)
    q.simulate_until_max_customers(n, method="Finish")
    return len(q.get_all_records())


ENGINES = {"simlab": run_simlab, "simpy": run_simpy, "ciw": run_ciw}


IMPORTS = {"simlab": ["simlab"], "simpy": ["numpy", "simpy"], "ciw": ["ciw"]}


def one(engine: str, n: int) -> None:
    # Imports are not part of what is timed: only simulating n requests is.
    for module in IMPORTS[engine]:
        importlib.import_module(module)
    t0 = time.perf_counter()
    done = ENGINES[engine](n)
    wall = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"engine": engine, "requests": done, "wall_s": wall, "peak_mib": peak_mib}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--one", choices=list(ENGINES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one, args.requests)
        return
    rates: dict[str, list[float]] = {e: [] for e in ENGINES}
    peaks: dict[str, list[float]] = {e: [] for e in ENGINES}
    # Interleaved so that drifting machine load hits every engine alike.
    for _ in range(args.repeats):
        for engine in ENGINES:
            out = subprocess.run(
                [sys.executable, __file__, "--one", engine, "--requests", str(args.requests)],
                capture_output=True,
                text=True,
                check=True,
                timeout=3600,
            ).stdout
            row = json.loads(out.strip().splitlines()[-1])
            rates[engine].append(row["requests"] / row["wall_s"])
            peaks[engine].append(row["peak_mib"])
    med = {e: statistics.median(v) for e, v in rates.items()}
    print(
        f"M/M/c lam={LAM:g}/s S=Exp({1 / MU:g} s) c={C}, {args.requests:,} requests, "
        f"median of {args.repeats}"
    )
    print(f"{'engine':8s} {'req/s':>10s} {'peak MiB':>9s} {'vs simpy':>9s} {'vs ciw':>7s}")
    for e in ENGINES:
        print(
            f"{e:8s} {med[e]:10,.0f} {statistics.median(peaks[e]):9.0f} "
            f"{med[e] / med['simpy']:9.2f} {med[e] / med['ciw']:7.2f}"
        )
    vs_simpy = "met" if med["simlab"] >= 0.8 * med["simpy"] else "MISSED"
    vs_ciw = "met" if med["simlab"] >= 2 * med["ciw"] else "MISSED"
    print(f"goal: simlab >= 0.8x simpy -> {vs_simpy}; >= 2x ciw -> {vs_ciw}")


if __name__ == "__main__":
    main()
