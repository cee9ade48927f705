"""The lab's probe beside the server (``Model._probe_samples``): CPU that the
server's processes cannot use, growing with the processes in the tree."""

from __future__ import annotations

import pytest

import simlab
from simlab.fast import reason_not_fast
from simlab.params import Architecture, Workload


def _run(rate: float, probe_us: float, per_process_us: float, cores: int | None = 2) -> dict:
    platform = simlab.load_platform("cpython").with_(
        cores=cores, probe_us=probe_us, probe_process_us=per_process_us
    )
    workload = Workload(connections=200, rate=rate, cpu=simlab.Fixed(0.002), calls=0)
    return simlab.simulate(
        "process-per-connection", workload, platform, Architecture(), duration=3.0, warmup=1.0,
        seed=3, replications=2,
    ).summary.to_dict()  # fmt: skip


def _near_two_cores() -> float:
    """The rate at which the children's CPU fills 95% of the two cores."""
    light = _run(100.0, 0.0, 0.0)
    per_request = light["cpu_utilization"] * 2 / light["throughput_rps"]
    return 1.9 / per_request


def test_the_probe_takes_its_cpu_from_a_server_with_cores_to_spare() -> None:
    # At half the cores' load a sample of 2 ms + 201 x 0.5 ms (about half a
    # core at 0.1 s apart) finds cores free and takes them: the children's
    # phases queue behind its slices, and their latency grows.
    rate = _near_two_cores() / 2
    without = _run(rate, 0.0, 0.0)
    with_ = _run(rate, 2000.0, 500.0)
    assert with_["latency_ms"]["p50"] > without["latency_ms"]["p50"]
    assert with_["latency_ms"]["p99"] > without["latency_ms"]["p99"]


def test_beside_saturated_children_the_probe_gets_a_share_not_a_core() -> None:
    # Saturated, the same probe's slices queue behind 200 children's phases,
    # as the kernel shares a core among runnable threads (measured: a 30 ms
    # sample beside 200 busy children ran 15 times in 10 s, not 75): the
    # served rate loses far less than the half core the probe would take alone.
    rate = _near_two_cores() * 1.2
    without = _run(rate, 0.0, 0.0)
    with_ = _run(rate, 2000.0, 500.0)
    half_core = 0.5 / 2  # of two cores
    assert with_["throughput_rps"] > (1 - half_core / 2) * without["throughput_rps"]


def test_the_probe_costs_nothing_on_unlimited_cores() -> None:
    # Cores that are never scarce: the probe queues behind nobody, and nobody
    # behind it, so the run is the run without it, request for request.
    a = _run(700.0, 2000.0, 500.0, cores=None)
    b = _run(700.0, 0.0, 0.0, cores=None)
    a.pop("platform"), b.pop("platform")  # the parameters differ, and nothing else
    assert a == b


def test_the_fast_engine_refuses_the_probe() -> None:
    w = Workload(connections=100, rate=10.0)
    probed = simlab.load_platform("cpython").with_(probe_us=2000.0)
    assert "probe_us" in (reason_not_fast("async", w, probed, Architecture()) or "")
    with pytest.raises(ValueError, match="probe_us"):
        simlab.simulate("async", w, probed, engine="fast", duration=1, warmup=0)


def test_a_closed_loop_charges_its_own_load_generator_cpu() -> None:
    """A closed loop's load generator sends as it reads (measured at a third
    of an open loop's CPU a request): ``client_closed_cpu_us`` where set, the
    open loop's ``client_cpu_us`` otherwise."""
    from simlab.distributions import Exponential, Fixed  # noqa: PLC0415
    from simlab.models.base import _neighbours  # noqa: PLC0415

    platform = simlab.load_platform("cpython").with_(cores=2, client_cpu_us=500.0)
    open_loop = Workload(connections=10, rate=50.0, cpu=Fixed(0.001))
    closed = Workload(connections=10, think=Exponential(0.1), cpu=Fixed(0.001))
    both = platform.with_(client_closed_cpu_us=150.0)
    assert _neighbours(open_loop, both)[0] == pytest.approx(500e-6)
    assert _neighbours(closed, both)[0] == pytest.approx(150e-6)
    assert _neighbours(closed, platform)[0] == pytest.approx(500e-6)  # not measured: as open
    # And it takes from the server's cores: a saturated closed loop serves more
    # beside a lighter load generator.
    sat = Workload(connections=8, think=Fixed(1e-6), cpu=Fixed(0.001), io=Fixed(0.005), calls=1)

    def served(p: simlab.Platform) -> float:
        return simlab.simulate(
            "thread-per-connection", sat, p, Architecture(), duration=3.0, warmup=0.5, seed=2,
            replications=2,
        ).summary.throughput_rps  # fmt: skip

    assert served(both) > served(platform)
