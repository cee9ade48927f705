"""The summary against the kernel: where one fast run's time goes, in-process.

Runs ``simulate`` on the whole-process benchmark's queue (M/M/100, lambda =
90/s, S ~ Exp(1 s), reactor-pool with 100 workers, no warm-up, one
replication) with the fast engine, and times, by the process's CPU clock:

- ``kernel``: the compiled loop itself (``simlab.kernels.run_events`` or
  ``recurse``: the built module, or numba's JIT when it is not built);
- ``inputs``: the rest of the replication (arrivals and demands drawn as
  the DES draws them, the deal, the ``Record``);
- ``summary``: everything after the replications (``simulation._result``:
  the levels, peaks and means, percentiles and their intervals, stability).

The issue's goal: the summary of a 500,000-request run takes under a fifth
of the kernel's time. Prints one JSON object per platform (``ideal``: the
recursion; ``cpython``: the default platform's event loop).

Run: ``python benchmarks/bench_summary.py [--requests N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

# As ``simlab simulate`` runs (``simlab.cli.main``): the summary's few small
# BLAS calls would otherwise wake a pool of OpenBLAS threads that spin beside
# it, CPU time this process's clock counts. Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import simlab
from simlab import Architecture, Workload, kernels, simulation
from simlab.cli import keep_freed_memory
from simlab.distributions import Exponential, Fixed

# As ``simlab simulate`` runs too: freed memory kept for reuse, not unmapped.
keep_freed_memory()

LAM = 90.0


class _Clock:
    """CPU seconds spent inside the wrapped functions."""

    def __init__(self) -> None:
        self.spent = 0.0

    def wrap(self, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent += time.process_time() - t

        return timed


def measure(platform: str, requests: int) -> dict[str, Any]:
    kernel, summary = _Clock(), _Clock()
    saved = (kernels.run_events, kernels.recurse, simulation._result)
    kernels.run_events = kernel.wrap(saved[0])
    kernels.recurse = kernel.wrap(saved[1])
    simulation._result = summary.wrap(saved[2])
    try:
        w = Workload(connections=10**12, rate=LAM, cpu=Fixed(0.0), io=Exponential(1.0))
        t = time.process_time()
        result = simlab.simulate(
            "reactor-pool", w, simlab.load_platform(platform), Architecture(workers=100),
            duration=requests / LAM, warmup=0.0, replications=1, engine="fast",
        )  # fmt: skip
        total = time.process_time() - t
    finally:
        kernels.run_events, kernels.recurse, simulation._result = saved
    return {
        "platform": platform,
        "requests": result.summary.requests,
        "built_kernels": kernels.aot_module() is not None,
        "kernel_s": round(kernel.spent, 3),
        "inputs_s": round(total - kernel.spent - summary.spent, 3),
        "summary_s": round(summary.spent, 3),
        "summary_over_kernel": round(summary.spent / kernel.spent, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=500_000)
    args = ap.parse_args()
    # A first small run: bytecode, the kernels' module, the platform's file.
    measure("ideal", 5_000)
    for platform in ("ideal", "cpython"):
        print(json.dumps(measure(platform, args.requests)), flush=True)


if __name__ == "__main__":
    main()
