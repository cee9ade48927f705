"""A GIL hand-off beside the lab's neighbours (``Platform.gil_neighbour_share``):
a waiter woken on a core a neighbour holds waits until that neighbour (one
thread, its runs one after another) blocks, the GIL idle meanwhile, then runs
on that core; without neighbours the share changes nothing."""

from __future__ import annotations

import json
import math
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import simpy

import simlab
import simlab.platforms
from simlab import calibrate as cal
from simlab.models.pool import BACKEND, CLIENT, PROBE, Cpu
from simlab.params import Architecture, Platform, Workload
from simlab.platforms import platform_from_profile
from simlab.real.grids import BESIDE, BESIDE_REPEATS, grid

REPO = Path(__file__).resolve().parents[2]

# Sixteen threads, each its connection's, over their GIL's capacity (2 ms of
# CPU and a 2 ms call a request on one process: about 440/s) in an open loop.
SATURATED = Workload(connections=16, rate=520.0, cpu=simlab.Fixed(0.002), io=simlab.Fixed(0.002))
ARCH = Architecture(workers=16)


def _run(share: float, client_cpu_us: float, **platform: Any) -> dict:
    on = simlab.load_platform("cpython").with_(
        gil_neighbour_share=share, client_cpu_us=client_cpu_us, **platform
    )
    return simlab.simulate(
        "thread-pool", SATURATED, on, ARCH, duration=4.0, warmup=1.0, seed=3, replications=3,
    ).summary.to_dict()  # fmt: skip


@pytest.mark.parametrize(
    ("client_cpu_us", "platform"),
    [(0.0, {}), (450.0, {"gil": False}), (450.0, {"cores": None})],
    ids=["no neighbours", "no GIL", "unlimited cores"],
)
def test_without_a_neighbour_on_a_core_the_share_changes_nothing(
    client_cpu_us: float, platform: dict[str, Any]
) -> None:
    # No process beside the server, no GIL to hand off, or cores that a
    # neighbour never holds: no hand-off can wait for a neighbour, and no
    # draw is made, so the run is the run at share 0, request for request.
    a, b = _run(1.0, client_cpu_us, **platform), _run(0.0, client_cpu_us, **platform)
    a.pop("platform"), b.pop("platform")  # the parameters differ, and nothing else
    assert a == b


def test_a_hand_off_that_waits_for_a_neighbours_core_lowers_the_gils_capacity() -> None:
    # Beside an open-loop load generator at 450 us of CPU a request, every
    # hand-off that waits for its run leaves the GIL idle: at its capacity the
    # server serves less, by more than the replications' intervals, and not
    # because a request costs more CPU: that grows by under half the loss.
    none, every = _run(0.0, 450.0), _run(1.0, 450.0)
    assert every["throughput_ci95"][1] < none["throughput_ci95"][0]
    loss = none["throughput_rps"] / every["throughput_rps"] - 1
    cpu = [r["cpu_busy_cores"] / r["throughput_rps"] for r in (none, every)]
    assert cpu[1] / cpu[0] - 1 < loss / 2


def _trace(
    share: float, later: dict[str, tuple[float, float]] | None = None
) -> dict[str, tuple[float, float]]:
    """Two cores, one GIL, share ``share``: phase A holds the GIL and a core
    0-2 ms, phase B asks for the GIL at 0.5 ms (1 ms of CPU); neighbour n0
    runs 1-4 ms, n1 takes a core at 2.5 ms for 3 ms, n2 asks for one at 3 ms
    for 1 ms (three neighbours: the load generator, the backend, the probe);
    ``later``: more runs of n0's neighbour, (when asked, CPU) by name, in s.
    (start, end) of each, in ms."""
    later = later or {}
    env = simpy.Environment()
    platform = Platform(name="trace", cores=2, gil=True, gil_neighbour_share=share)
    cpu = Cpu(env, platform, 1, None, np.random.default_rng(0))
    out: dict[str, tuple[float, float]] = {}

    def phase(name: str, at: float, demand: float) -> Generator[simpy.Event, Any, None]:
        yield env.timeout(at)
        _, started = yield from cpu.run(cpu.gil(0), demand, 0, 0)
        out[name] = (round(started * 1e3, 6), round(env.now * 1e3, 6))

    def neighbour(
        name: str, who: int, at: float, demand: float
    ) -> Generator[simpy.Event, Any, None]:
        yield env.timeout(at)
        begun = env.now
        yield from cpu.background(demand, who)
        out[name] = (round(begun * 1e3, 6), round(env.now * 1e3, 6))

    env.process(phase("A", 0.0, 0.002))
    env.process(phase("B", 0.0005, 0.001))
    env.process(neighbour("n0", CLIENT, 0.001, 0.003))
    env.process(neighbour("n1", BACKEND, 0.0025, 0.003))
    env.process(neighbour("n2", PROBE, 0.003, 0.001))
    for name, (at, demand) in later.items():
        env.process(neighbour(name, CLIENT, at, demand))
    env.run()
    return out


def test_a_waiter_woken_on_a_neighbours_core_runs_there_when_it_stops() -> None:
    # At 2 ms A drops the GIL to B and frees its core. At share 0 B runs on
    # that core at once. At share 1 B was woken on n0's core (the only
    # neighbour running then): it waits for n0 to end at 4 ms, holding the
    # GIL, and runs on n0's core 4-5 ms, ahead of n2, which has queued for a
    # core since 3 ms (n1 took the free one at 2.5) and runs 5-6 ms.
    assert _trace(0.0)["B"] == (2.0, 3.0)
    share = _trace(1.0)
    assert share["B"] == (4.0, 5.0)
    assert share["n2"] == (3.0, 6.0)


def test_a_waiter_on_a_neighbours_core_waits_until_the_neighbour_blocks() -> None:
    # The load generator (n0) has another run asked at 3.5 ms, while its first
    # runs: one thread, it runs it next, 4-5 ms, on the core it holds. B, woken
    # on that core, waits until the load generator has nothing left to run
    # (5 ms), then runs 5-6 ms; the probe (n2) gets the core the backend (n1)
    # leaves at 5.5 ms. At share 0 the second run changes nothing for B.
    later = {"n3": (0.0035, 0.001)}
    assert _trace(0.0, later)["B"] == (2.0, 3.0)
    share = _trace(1.0, later)
    assert share["n3"] == (3.5, 5.0)
    assert share["B"] == (5.0, 6.0)
    assert share["n2"] == (3.0, 6.5)


def test_the_share_must_be_a_share() -> None:
    with pytest.raises(ValueError, match="gil_neighbour_share"):
        simlab.load_platform("cpython").with_(gil_neighbour_share=1.5)


def test_the_beside_runs_are_open_loops_over_their_gils_capacity() -> None:
    # What the fit reads as the GIL's time a request (1/served) is that only
    # where the GIL, not the offered rate, sets the served rate: each run's
    # model at share 0 (and so at any share: it only slows the GIL) serves
    # less than it is offered, its interval wholly under the offered rate.
    runs = [run for run in grid(quick=False) if run.role == "beside"]
    assert len(runs) == len(BESIDE) * BESIDE_REPEATS
    assert not [run for run in grid(quick=True) if run.role == "beside"]
    platform = simlab.load_platform("cpython")
    for run in runs[::BESIDE_REPEATS]:
        s = simlab.simulate(run.target, run.workload, platform, run.arch, duration=3.0,
                            warmup=1.0, seed=1, replications=2).summary  # fmt: skip
        assert run.workload.rate is not None
        assert s.throughput_ci95[1] < run.workload.rate, run.label()


def test_fit_neighbour_share_finds_a_planted_share() -> None:
    # The beside runs "measured" by the model itself at share 0.6 (other seeds
    # than the fit's): the grid fit's interval holds 0.6, and is identified.
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
    # Without the lab's neighbours the share moves nothing, and the fit says so.
    bare = cal.fit_neighbour_share(planted, simlab.load_platform("cpython"))
    assert not bare.identified and "no lab neighbours" in bare.why
    served_none = [(run, {"throughput_rps": 0.0}) for run, _ in planted]
    assert "served nothing" in cal.fit_neighbour_share(served_none, platform).why
    # Not identified: the platform's own value stands (the preset's, 1).
    assert math.isclose(bare.value, simlab.load_platform("cpython").gil_neighbour_share)
    assert math.isclose(bare.value, 1.0)


@pytest.mark.parametrize(("key", "preset"), [("gil_neighbour_share", 1.0),
                                             ("gil_sibling_share", 0.0)])  # fmt: skip
def test_the_committed_profile_fits_the_share_or_labels_it(key: str, preset: float) -> None:
    # Fitted from its runs (beside the load generator; two copies) with the
    # GIL's other costs in place: an interval inside (0, 1], or, where the
    # runs do not bound it, the preset's value labelled as an assumption,
    # with no interval shown.
    profile = json.loads((REPO / "data" / "profiles" / "cpython.json").read_text())
    entry = profile["parameters"][key]
    # The committed profile as simlab reads it (the tests' own $SIMLAB_DATA
    # holds a frozen one).
    used = getattr(platform_from_profile(profile, source="cpython.json"), key)
    if entry["identified"]:
        low, high = entry["ci95"]
        assert 0 < low <= entry["value"] <= high <= 1
        assert used == entry["value"]
    else:
        assert "ci95" not in entry and "not identified" in entry["assumption"]
        assert used == getattr(simlab.platforms.cpython(), key) == preset


def test_the_gil_costs_and_the_share_are_fitted_in_turn_until_the_share_stays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Planted fits that trade off as the real ones did on 5 December: the
    # wake-ups a fit finds rise with the share held, and the share found
    # falls with the wake-ups held. The rounds stop where the share comes
    # back to where it was fitted from, whatever share they start at.
    seen: list[float] = []

    def costs(results: object, platform: Platform) -> dict[str, cal.GridFit]:
        seen.append(platform.gil_neighbour_share)
        poll = 2.0 + 4.0 * platform.gil_neighbour_share
        return {"gil_poll_us": cal.GridFit(poll, [poll - 1, poll + 1], True, "")}

    def share(results: object, platform: Platform) -> cal.GridFit:
        value = 0.8 if platform.gil_poll_us >= 5.0 else 0.7
        return cal.GridFit(value, [value - 0.1, value + 0.1], True, "")

    monkeypatch.setattr(cal, "fit_thread_costs", costs)
    monkeypatch.setattr(cal, "fit_neighbour_share", share)
    preset = simlab.platforms.cpython()
    for start in (0.0, 1.0):
        seen.clear()
        fits, found, rounds = cal.fit_gil_rounds(
            [], preset.with_(gil_neighbour_share=start), preset
        )
        # 0 -> poll 2 -> share 0.7 -> poll 4.8 -> 0.7 stays; 1 -> poll 6 ->
        # 0.8 -> poll 5.2 -> 0.8 stays.
        expected = 0.7 if start == 0.0 else 0.8
        assert found.value == expected and rounds == 2
        assert seen == [start, expected]
        assert fits["gil_poll_us"].value == pytest.approx(2.0 + 4.0 * expected)

    # A share that swings between two values is said to have moved still.
    def swinging(results: object, platform: Platform) -> cal.GridFit:
        value = 0.2 if platform.gil_poll_us >= 4.0 else 0.9
        return cal.GridFit(value, [0.1, 1.0], True, "")

    monkeypatch.setattr(cal, "fit_neighbour_share", swinging)
    *_, rounds = cal.fit_gil_rounds([], preset, preset)
    assert rounds == cal.GIL_ROUNDS + 1
