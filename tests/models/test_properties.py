"""Property tier (hypothesis): laws that must hold on every sample path."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import simlab
from simlab import Architecture, Trace, Workload
from simlab.distributions import Exponential, Fixed

pytestmark = pytest.mark.property

IDEAL = simlab.load_platform("ideal")
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(
    model=st.sampled_from(["reactor-pool", "thread-pool"]),
    rate=st.floats(1.0, 40.0),
    mean_s=st.floats(0.01, 0.5),
    rho=st.floats(0.2, 0.9),
    extra=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_more_workers_never_wait_longer(model, rate, mean_s, rho, extra, seed):
    # Common random numbers: the same seed gives request k the same arrival
    # time and the same service whatever the pool size. For a FCFS pool every
    # request's wait is then non-increasing in the number of workers
    # (Kiefer-Wolfowitz), so the mean is too.
    workers = max(1, round(rate * mean_s / rho))
    workload = Workload(
        connections=10**12,
        rate=rate,
        cpu=Fixed(0.0),
        io=Exponential(mean_s),
        requests_per_connection=1 if model == "thread-pool" else None,
    )

    def mean_wait(w: int) -> float:
        r = simlab.simulate(
            model,
            workload,
            IDEAL,
            Architecture(workers=w),
            duration=400 / rate,
            warmup=0.0,
            replications=1,
            seed=seed,
        )
        assume(r.summary.incomplete == 0)
        df = r.requests
        return float(df.loc[df["measured"], "wait"].mean())

    assert mean_wait(workers + extra) <= mean_wait(workers) + 1e-12


@FAST
@given(
    model=st.sampled_from(list(simlab.MODELS)),
    platform=st.sampled_from(["ideal", "cpython", "jvm", "go"]),
    sends=st.lists(st.tuples(st.floats(0.0, 5.0), st.integers(0, 19)), min_size=1, max_size=40),
    n1=st.integers(20, 200),
    more=st.integers(1, 5000),
    k=st.sampled_from([None, 1, 3]),
    workers=st.integers(1, 8),
    backlog=st.sampled_from([None, 0, 5]),
)
def test_threads_and_memory_never_fall_as_connections_grow(
    model, platform, sends, n1, more, k, workers, backlog
):
    # The same requests on the same connections; only idle connections are
    # added. Idle connections can cost threads and memory, never save them.
    sends = sorted(sends)
    trace = Trace(tuple(t for t, _ in sends), tuple(c for _, c in sends))
    p = simlab.load_platform(platform)
    arch = Architecture(workers=workers, backlog=backlog)

    def levels(n: int) -> tuple[float, ...]:
        w = Workload(
            connections=n, trace=trace, cpu=Fixed(0.001), io=Fixed(0.05), requests_per_connection=k
        )
        s = simlab.simulate(model, w, p, arch, duration=6.0, warmup=0.0, replications=1).summary
        return (
            s.threads.peak,
            s.threads.mean,
            s.memory_mib.peak,
            s.memory_mib.mean,
            s.memory_mib.virtual_peak,
        )

    small, large = levels(n1), levels(n1 + more)
    for a, b in zip(small, large, strict=True):
        assert b >= a - 1e-9


@FAST
@given(
    model=st.sampled_from(list(simlab.MODELS)),
    cores=st.sampled_from([1, 2, 4]),
    gil=st.booleans(),
    rate=st.floats(5.0, 3000.0),
    cpu_ms=st.floats(0.0, 5.0),
    processes=st.integers(1, 3),
    seed=st.integers(0, 1000),
)
def test_utilisation_never_exceeds_capacity(model, cores, gil, rate, cpu_ms, processes, seed):
    p = simlab.load_platform("cpython-preset").with_(cores=cores, gil=gil)
    w = Workload(
        connections=500,
        rate=rate,
        cpu=Exponential(cpu_ms / 1e3),
        io=Fixed(0.01),
        requests_per_connection=1,
    )
    s = simlab.simulate(
        model,
        w,
        p,
        Architecture(workers=4, processes=processes),
        duration=2.0,
        warmup=0.5,
        replications=1,
        seed=seed,
    ).summary
    assert 0.0 <= s.cpu_utilization <= 1.0 + 1e-9
    assert s.threads.busy_mean <= s.threads.mean + 1e-9
    # threads.peak is read every 0.1 s as the probe reads it; busy_peak and
    # peak_exact are the levels' exact maxima.
    assert s.threads.busy_peak <= s.threads.peak_exact + 1e-9
    assert s.threads.peak <= s.threads.peak_exact + 1e-9
    assert s.memory_mib.peak <= s.memory_mib.peak_exact + 1e-9
    assert s.completed + s.dropped + s.incomplete == s.requests
