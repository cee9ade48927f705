"""``memory_mib``'s peaks are one quantity in ``simulate`` and ``measure``.

The probe reads the server's kernel memory every 0.1 s and the tree's PSS
(user memory) every 1 s, on fixed grids; the simulation reads its exact
levels on the same grids. These tests build level paths whose sampled and
exact peaks differ and check that the simulated side's rule and the probe's
give the same numbers for them, so a change of either side's definition
fails here.
"""

from __future__ import annotations

import os

import numpy as np

from simlab.distributions import Fixed
from simlab.metrics import Step, sampled_memory_peaks
from simlab.params import Architecture, Workload
from simlab.platforms import cpython
from simlab.real.probe import FIELDS, Probe, ProbeSample
from simlab.results import SAMPLE_INTERVAL_S, USER_SAMPLE_INTERVAL_S
from simlab.simulation import simulate

WINDOW = (0.0, 3.0)
# User memory of 20 MiB with a child's 4 MiB between its 1 s reads (seen by
# the 0.1 s grid, not the 1 s one), and 2 MiB across the read at 2 s.
USER = Step.build(
    [
        (np.array([0.35]), np.array([0.75]), 4.0),
        (np.array([1.95]), np.array([2.05]), 2.0),
    ],
    base=20.0,
)
# Kernel memory of 3 MiB with a spike between 0.1 s reads and one across a read.
KERNEL = Step.build(
    [
        (np.array([1.42]), np.array([1.47]), 5.0),
        (np.array([2.25]), np.array([2.35]), 1.0),
    ],
    base=3.0,
)


def _probe_reads() -> Probe:
    """The probe's reads of the two paths, as its loop makes them from the
    window's start: the kernel charge at every read, PSS at every tenth and
    carried between."""
    probe = Probe(os.getpid())
    ratio = round(USER_SAMPLE_INTERVAL_S / SAMPLE_INTERVAL_S)
    pss = 0.0
    for k, t in enumerate(WINDOW[0] + SAMPLE_INTERVAL_S * np.arange(30)):
        at = np.array([t])
        if k % ratio == 0:
            pss = float(USER.at(at)[0])
        values = dict.fromkeys(FIELDS, 0.0)
        values["pss_mib"] = pss
        values["kernel_mib"] = float(KERNEL.at(at)[0])
        values["memory_mib"] = values["pss_mib"] + values["kernel_mib"]
        probe.samples.append(ProbeSample(float(t), values))
    return probe


def test_sampled_memory_peaks_miss_what_falls_between_reads() -> None:
    peaks = sampled_memory_peaks(USER, KERNEL, *WINDOW)
    assert USER.window(*WINDOW)[0] == 24.0
    assert peaks["user_mib_sampled_peak"] == 22.0  # the read at 2 s
    assert KERNEL.window(*WINDOW)[0] == 8.0
    assert peaks["kernel_mib_sampled_peak"] == 4.0  # the read at 2.3 s
    # 22 MiB (read at 2 s, carried) + 4 MiB (at 2.3 s); the exact sum peaks at 28.
    assert peaks["memory_mib_sampled_peak"] == 26.0


def test_probe_reports_the_simulations_sampled_memory_peaks() -> None:
    measured = _probe_reads().summary(WINDOW)
    peaks = sampled_memory_peaks(USER, KERNEL, *WINDOW)
    assert measured["pss_mib"]["peak"] == peaks["user_mib_sampled_peak"]
    assert measured["kernel_mib"]["peak"] == peaks["kernel_mib_sampled_peak"]
    assert measured["memory_mib"]["peak"] == peaks["memory_mib_sampled_peak"]


def test_probe_reads_pss_on_the_user_grid() -> None:
    # The loop itself, on this process: a PSS read at the start and every
    # USER_SAMPLE_INTERVAL_S after, the cheap reads between carrying it.
    probe = Probe(os.getpid())
    fulls: list[float] = []
    real_sample = probe.sample

    def spy(*, full: bool) -> ProbeSample:
        got = real_sample(full=full)
        if full:
            fulls.append(got.time)
        return got

    probe.sample = spy  # type: ignore[method-assign]
    probe.start()
    try:
        deadline = 2.5 * USER_SAMPLE_INTERVAL_S
        probe.join(deadline)
    finally:
        probe.stop()
    gaps = np.diff(fulls)
    assert len(fulls) >= 2
    # Each gap is one user interval, up to a busy machine's timer lateness.
    assert np.all(np.abs(gaps - USER_SAMPLE_INTERVAL_S) < 3 * SAMPLE_INTERVAL_S)
    assert len(probe.samples) > 2 * len(fulls)


def test_simulate_reports_sampled_and_exact_memory_peaks() -> None:
    # A child per one-request connection: its memory comes and goes within
    # milliseconds, so 1 s reads of PSS see less than the exact peak.
    w = Workload(connections=5000, rate=60.0, cpu=Fixed(0.001), io=Fixed(0.02), calls=1,
                 requests_per_connection=1)  # fmt: skip
    s = simulate("process-per-connection", w, cpython(), Architecture(),
                 duration=5.0, warmup=1.0, seed=3, replications=2).summary  # fmt: skip
    m = s.memory_mib
    assert m.user_peak < m.user_peak_exact
    assert m.peak < m.peak_exact
    assert m.kernel_peak <= m.kernel_peak_exact
    assert m.user_mean <= m.user_peak_exact
