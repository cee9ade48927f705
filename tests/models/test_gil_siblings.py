"""A GIL hand-off woken on another copy's core (``Platform.gil_sibling_share``):
with two or more pre-forked copies, each with its own GIL, a waiter handed
its GIL while another copy's holder runs on a core may be woken on that
core, and waits there, its GIL idle, until that holder gives the core up."""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

import numpy as np
import pytest
import simpy

import simlab
from simlab import calibrate as cal
from simlab.models.pool import Cpu
from simlab.params import Platform
from simlab.real.grids import SIBLING_REPEATS, SIBLINGS, grid

# No overhead but the ones a test sets.
BARE = Platform(
    name="bare", cores=2, gil=True, context_switch_us=0.0, switch_contention=0.0,
    spawn_us=0.0, fork_us=0.0, dispatch_us=0.0, task_us=0.0, parse_us=0.0, call_us=0.0,
)  # fmt: skip


def _starts(platform: Platform, phases: list[tuple[int, float]]) -> list[float]:
    """When each phase (process, ms of CPU), all asked for at time 0 in this
    order, started running on ``platform``'s cores, two processes."""
    env = simpy.Environment()
    cpu = Cpu(env, platform, 2, None, np.random.default_rng(0))
    started: list[float] = []

    def phase(process: int, ms: float, k: int) -> Generator[simpy.Event, Any, None]:
        _, at = yield from cpu.run(cpu.gil(process), ms * 1e-3, 0, process)
        started[k] = at

    for k, (process, ms) in enumerate(phases):
        started.append(math.nan)
        env.process(phase(process, ms, k))
    env.run()
    return [round(t * 1e3, 9) for t in started]


def test_a_gil_hand_off_waits_for_the_core_another_copy_holds() -> None:
    # Copy 0 runs 1 ms and hands its GIL to its second thread; copy 1 holds
    # the other core for 3 ms. Woken on copy 1's core (share 1), that thread
    # waits there until 3 ms though copy 0's core is free from 1 ms.
    p = BARE.with_(gil_sibling_share=1.0)
    phases = [(0, 1.0), (1, 3.0), (0, 1.0)]
    assert _starts(p, phases) == [0.0, 0.0, 3.0]
    assert _starts(p.with_(gil_sibling_share=0.0), phases) == [0.0, 0.0, 1.0]
    # One copy: no other copy's core to be woken on.
    assert _starts(p, [(0, 1.0), (0, 1.0)]) == [0.0, 1.0]
    # A GIL taken without a wait is not a hand-off: nothing to be woken.
    assert _starts(p, [(0, 1.0), (1, 3.0)]) == [0.0, 0.0]
    with pytest.raises(ValueError, match="gil_sibling_share"):
        Platform(gil_sibling_share=1.5)


def _siblings() -> list[Any]:
    return [run for run in grid(quick=False) if run.role == "siblings"]


def test_the_sibling_runs_are_two_copies_at_a_long_switch_interval() -> None:
    runs = _siblings()
    assert len(runs) == len(SIBLINGS) * SIBLING_REPEATS
    assert not [run for run in grid(quick=True) if run.role == "siblings"]
    for run in runs:
        assert run.arch.processes == 2 and run.switch_interval_ms == 50.0


def test_two_copies_of_an_async_server_lose_nothing_to_the_share() -> None:
    # One thread a copy never hands its GIL over: the share moves nothing.
    # Threads handing theirs over lose served rate as the share grows.
    w = simlab.Workload(connections=32, rate=900.0, cpu=simlab.Fixed(0.002), calls=0)
    served = {}
    for model in ("async", "thread-pool"):
        for share in (0.0, 0.5):
            p = simlab.load_platform("cpython").with_(gil_sibling_share=share)
            arch = simlab.Architecture(workers=16, processes=2)
            s = simlab.simulate(model, w, p, arch, duration=3.0, warmup=1.0, seed=2,
                                replications=2, engine="des").summary  # fmt: skip
            served[model, share] = s.throughput_rps
    assert served["async", 0.5] == served["async", 0.0]
    assert served["thread-pool", 0.5] < 0.9 * served["thread-pool", 0.0]


def test_fit_sibling_share_finds_a_planted_share() -> None:
    # The sibling runs "measured" by the model itself at share 0.35 (other
    # seeds than the fit's), one of each configuration's repeats less: the
    # grid fit's interval holds 0.35, and is identified.
    platform = simlab.load_platform("cpython")
    runs = _siblings()[: len(SIBLINGS) * 2]
    planted = []
    for k, run in enumerate(runs):
        s = simlab.simulate(run.target, run.workload,
                            run.platform(platform.with_(gil_sibling_share=0.35)), run.arch,
                            duration=run.duration, warmup=run.warmup, seed=100 + k,
                            replications=2).summary  # fmt: skip
        planted.append((run, {"throughput_rps": s.throughput_rps}))
    fit = cal.fit_sibling_share(planted, platform)
    assert fit.identified, fit.why
    assert fit.ci95 is not None and fit.ci95[0] <= 0.35 <= fit.ci95[1]
    unlimited = cal.fit_sibling_share(planted, platform.with_(cores=None))
    assert not unlimited.identified and "no cores" in unlimited.why
    served_none = [(run, {"throughput_rps": 0.0}) for run, _ in planted]
    assert "served nothing" in cal.fit_sibling_share(served_none, platform).why
    assert "too few" in cal.fit_sibling_share(planted[:1], platform).why
