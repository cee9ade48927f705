"""A GIL hand-off beside the lab's neighbours (``Platform.gil_neighbour_share``):
a waiter woken on a core a neighbour holds waits for that neighbour's run,
the GIL idle meanwhile; without neighbours the share changes nothing."""

from __future__ import annotations

import pytest

import simlab
from simlab import calibrate as cal
from simlab.params import Architecture, Workload
from simlab.real.grids import BESIDE_REPEATS, grid

# Sixteen threads, each its connection's, over their GIL's capacity (2 ms of
# CPU and a 2 ms call a request on one process: about 440/s) in an open loop.
SATURATED = Workload(connections=16, rate=520.0, cpu=simlab.Fixed(0.002), io=simlab.Fixed(0.002))
ARCH = Architecture(workers=16)


def _run(share: float, client_cpu_us: float, seed: int = 3, replications: int = 3) -> dict:
    platform = simlab.load_platform("cpython").with_(
        gil_neighbour_share=share, client_cpu_us=client_cpu_us
    )
    return simlab.simulate(
        "thread-pool", SATURATED, platform, ARCH, duration=4.0, warmup=1.0, seed=seed,
        replications=replications,
    ).summary.to_dict()  # fmt: skip


def test_without_neighbours_the_share_changes_nothing() -> None:
    # No process beside the server: no hand-off can find a neighbour's core,
    # and no draw is made, so the run is the run at share 0, request for request.
    a, b = _run(1.0, 0.0), _run(0.0, 0.0)
    a.pop("platform"), b.pop("platform")  # the parameters differ, and nothing else
    assert a == b


def test_a_hand_off_that_waits_for_a_neighbours_core_lowers_the_gils_capacity() -> None:
    # Beside an open-loop load generator at 450 us of CPU a request, every
    # hand-off that waits for its run leaves the GIL idle: at its capacity the
    # server serves less, and each replication's interval says by more than
    # noise.
    none, every = _run(0.0, 450.0), _run(1.0, 450.0)
    assert every["throughput_ci95"][1] < none["throughput_ci95"][0]
    # The CPU a request is the server's own, the same either way: the GIL idles.
    per_request = [r["cpu_busy_cores"] / r["throughput_rps"] for r in (none, every)]
    assert per_request[1] == pytest.approx(per_request[0], rel=0.03)


def test_the_share_must_be_a_share() -> None:
    with pytest.raises(ValueError, match="gil_neighbour_share"):
        simlab.load_platform("cpython").with_(gil_neighbour_share=1.5)


def test_the_beside_runs_are_open_loops_over_their_gils_capacity() -> None:
    # What the fit reads as the GIL's time a request (1/served) is that only
    # where the GIL, not the offered rate, sets the served rate: each run's
    # model at share 0 (and so at any share) serves less than it is offered.
    runs = [run for run in grid(quick=False) if run.role == "beside"]
    assert len(runs) == 2 * BESIDE_REPEATS
    assert not [run for run in grid(quick=True) if run.role == "beside"]
    platform = simlab.load_platform("cpython")
    for run in runs[::BESIDE_REPEATS]:
        s = simlab.simulate(run.target, run.workload, platform, run.arch, duration=3.0,
                            warmup=1.0, seed=1).summary  # fmt: skip
        assert run.workload.rate is not None
        assert s.throughput_rps < 0.95 * run.workload.rate, run.label()


def test_fit_neighbour_share_finds_a_planted_share() -> None:
    # The beside runs "measured" by the model itself at share 0.6 (other seeds
    # than the fit's): the grid fit finds a share near it, and identifies it.
    platform = simlab.load_platform("cpython").with_(client_cpu_us=450.0)
    planted = []
    for k, run in enumerate(r for r in grid(quick=False) if r.role == "beside"):
        s = simlab.simulate(run.target, run.workload, platform.with_(gil_neighbour_share=0.6),
                            run.arch, duration=run.duration, warmup=run.warmup, seed=100 + k,
                            replications=2).summary  # fmt: skip
        planted.append((run, {"throughput_rps": s.throughput_rps}))
    fit = cal.fit_neighbour_share(planted, platform)
    assert fit.identified, fit.why
    assert fit.ci95 is not None and fit.ci95[0] <= 0.6 <= fit.ci95[1]
    assert fit.value == pytest.approx(0.6, abs=0.2)
    # Without the load generator's CPU the share moves nothing: not identified.
    bare = simlab.load_platform("cpython")
    assert not cal.fit_neighbour_share(planted, bare).identified
