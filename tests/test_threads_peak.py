"""``threads.peak`` is one quantity in ``simulate`` and ``measure``: the level read every 0.1 s.

A level that spikes between reads (threads made per short connection) has
an exact peak above what a sampler sees; these tests build such a path and
check that the simulated side's definition and the probe's give the same
number for it, and that the exact peak differs, so a change of either
side's definition fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from simlab.distributions import Fixed
from simlab.metrics import Step, sampled_peak
from simlab.params import Architecture, Workload
from simlab.platforms import cpython
from simlab.real.probe import FIELDS, Probe, ProbeSample
from simlab.results import SAMPLE_INTERVAL_S
from simlab.simulation import simulate

# A level of 1 with short spikes: to 6 between reads, to 3 across one read.
SPIKES = Step.build(
    [
        (np.array([0.23, 0.41]), np.array([0.26, 0.44]), 5.0),  # between reads: never seen
        (np.array([0.29]), np.array([0.31]), 2.0),  # across the read at 0.3
    ],
    base=1.0,
)
WINDOW = (0.0, 1.0)


def test_sampled_peak_misses_a_spike_between_reads() -> None:
    exact, _ = SPIKES.window(*WINDOW)
    assert exact == 6.0
    assert sampled_peak(SPIKES, *WINDOW) == 3.0


def test_probe_reports_the_simulations_sampled_peak() -> None:
    probe = Probe(os.getpid())
    assert probe.interval == SAMPLE_INTERVAL_S
    # The probe's reads of the same path, on its grid from the window's start.
    for t in WINDOW[0] + SAMPLE_INTERVAL_S * np.arange(10):
        values = dict.fromkeys(FIELDS, 0.0)
        values["threads"] = float(SPIKES.at(np.array([t]))[0])
        probe.samples.append(ProbeSample(float(t), values))
    measured = probe.summary(WINDOW)["threads"]["peak"]
    assert measured == sampled_peak(SPIKES, *WINDOW)
    assert measured < SPIKES.window(*WINDOW)[0]


def test_simulate_reports_both_peaks_for_threads_per_short_connection() -> None:
    # A thread per one-request connection: the count rises and falls within
    # milliseconds, so the 0.1 s reads see less than the exact peak.
    w = Workload(connections=5000, rate=200.0, cpu=Fixed(0.001), io=Fixed(0.02), calls=1,
                 requests_per_connection=1)  # fmt: skip
    s = simulate("thread-per-connection", w, cpython(), Architecture(),
                 duration=5.0, warmup=1.0, seed=3, replications=2).summary  # fmt: skip
    assert s.threads.peak < s.threads.peak_exact
    assert s.threads.mean <= s.threads.peak


@pytest.mark.parametrize("model", ["thread-pool", "thread-per-connection"])
def test_a_fixed_count_reads_the_same_either_way(model: str) -> None:
    w = Workload(connections=20, rate=100.0, cpu=Fixed(0.001), io=Fixed(0.01), calls=1)
    s = simulate(model, w, cpython(), Architecture(workers=8),
                 duration=2.0, warmup=0.5, seed=1, replications=2).summary  # fmt: skip
    assert s.threads.peak == s.threads.peak_exact


def test_probe_counts_no_thread_for_an_unreaped_child() -> None:
    # A server whose forked child has exited but is not reaped yet (a zombie):
    # psutil still answers one thread for the child; the probe counts none.
    parent = subprocess.Popen([sys.executable, "-c", UNREAPED], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        deadline = time.monotonic() + 5
        while child.status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.01)
        assert child.num_threads() == 1  # what psutil says of a zombie
        seen = Probe(parent.pid).sample(full=False).values
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
    assert seen["processes"] == 1
    assert seen["threads"] == 1


# A parent that forks a child which exits at once, and never reaps it.
UNREAPED = """
import os, time
pid = os.fork()
if pid == 0:
    os._exit(0)
print(pid, flush=True)
time.sleep(30)
"""
