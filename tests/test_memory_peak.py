"""``memory_mib``'s peaks are one quantity in ``simulate`` and ``measure``.

The probe reads the server's kernel memory every 0.1 s and the tree's PSS
(user memory) every 1 s, on fixed grids; the simulation reads its exact
levels on the same grids, for each place of the PSS reads in the window,
and reports the mean over those places. These tests build level paths whose sampled and
exact peaks differ and check that the simulated side's rule and the probe's
give the same numbers for them, so a change of either side's definition
fails here.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from simlab.distributions import Fixed
from simlab.metrics import Step, sampled_memory_peaks
from simlab.params import Architecture, Workload
from simlab.platforms import cpython
from simlab.real.probe import FIELDS, Probe, ProbeSample
from simlab.results import SAMPLE_INTERVAL_S, USER_SAMPLE_INTERVAL_S
from simlab.simulation import simulate

WINDOW = (1.0, 4.0)
RATIO = round(USER_SAMPLE_INTERVAL_S / SAMPLE_INTERVAL_S)
# User memory of 20 MiB with 3 MiB more before the window (a PSS read then is
# carried into the window's first reads), a child's 4 MiB that falls between
# the 1 s reads of some phases, and 2 MiB across the read at 3 s.
USER = Step.build(
    [
        (np.array([0.45]), np.array([0.95]), 3.0),
        (np.array([1.35]), np.array([1.75]), 4.0),
        (np.array([2.95]), np.array([3.05]), 2.0),
    ],
    base=20.0,
)
# Kernel memory of 3 MiB with a spike between 0.1 s reads and one across a read.
KERNEL = Step.build(
    [
        (np.array([2.42]), np.array([2.47]), 5.0),
        (np.array([3.25]), np.array([3.35]), 1.0),
    ],
    base=3.0,
)


def _probe_reads(phase: int) -> Probe:
    """The probe's reads of the two paths, as its loop makes them, started a
    second before the window: the kernel charge at every read, PSS at every
    tenth (the ``phase``-th of the window's first ten) and carried between."""
    probe = Probe(os.getpid())
    pss = 0.0
    for k in range(-RATIO, 3 * RATIO):
        at = np.array([WINDOW[0] + SAMPLE_INTERVAL_S * k])
        if (k - phase) % RATIO == 0:
            pss = float(USER.at(at)[0])
        values = dict.fromkeys(FIELDS, 0.0)
        values["pss_mib"] = pss
        values["kernel_mib"] = float(KERNEL.at(at)[0])
        values["memory_mib"] = values["pss_mib"] + values["kernel_mib"]
        probe.samples.append(ProbeSample(float(at[0]), values))
    return probe


def test_sampled_memory_peaks_miss_what_falls_between_reads() -> None:
    peaks = sampled_memory_peaks(USER, KERNEL, *WINDOW, phase=0)
    assert USER.window(*WINDOW)[0] == 24.0
    assert peaks["user_mib_sampled_peak"] == 22.0  # the read at 3 s
    assert KERNEL.window(*WINDOW)[0] == 8.0
    assert peaks["kernel_mib_sampled_peak"] == 4.0  # the read at 3.3 s
    # 22 MiB (read at 3 s, carried) + 4 MiB (at 3.3 s); the exact sum peaks at 28.
    assert peaks["memory_mib_sampled_peak"] == 26.0
    # Reads at 0.5, 1.5, 2.5, 3.5 s: the child's 4 MiB is seen.
    assert sampled_memory_peaks(USER, KERNEL, *WINDOW, phase=5)["user_mib_sampled_peak"] == 24.0


@pytest.mark.parametrize("phase", range(RATIO))
def test_probe_reports_the_simulations_sampled_memory_peaks(phase: int) -> None:
    measured = _probe_reads(phase).summary(WINDOW)
    peaks = sampled_memory_peaks(USER, KERNEL, *WINDOW, phase=phase)
    assert measured["pss_mib"]["peak"] == peaks["user_mib_sampled_peak"]
    assert measured["kernel_mib"]["peak"] == peaks["kernel_mib_sampled_peak"]
    assert measured["memory_mib"]["peak"] == peaks["memory_mib_sampled_peak"]


def test_simulate_reports_the_mean_over_the_probes_phases() -> None:
    # Where the PSS reads fall relative to the window is chance on the real
    # side: the simulation reports the mean over the phases.
    each = [sampled_memory_peaks(USER, KERNEL, *WINDOW, phase=p) for p in range(RATIO)]
    mean = sampled_memory_peaks(USER, KERNEL, *WINDOW)
    for key in ("user_mib_sampled_peak", "memory_mib_sampled_peak"):
        values = [e[key] for e in each]
        assert min(values) < max(values)  # the phase matters on this path
        assert mean[key] == pytest.approx(np.mean(values), rel=1e-12)


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
