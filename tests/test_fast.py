"""The fast engine against the DES: identical requests on traces and seeds, the
same distribution across seeds (Kolmogorov-Smirnov, power stated), and Erlang C."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import simlab
from simlab import Architecture, Trace, Workload, theory
from simlab.distributions import Exponential, Fixed, LogNormal
from simlab.fast import reason_not_fast

IDEAL = simlab.load_platform("ideal")
MANY = 10**12
COLUMNS = ["arrival", "admit", "start", "end", "service", "cpu", "worker", "process", "outcome"]


def both(model, workload, platform, arch, **run):
    des = simlab.simulate(model, workload, platform, arch, engine="des", **run)
    fast = simlab.simulate(model, workload, platform, arch, engine="fast", **run)
    assert fast.summary.engine == "fast" and des.summary.engine == "des"
    return des, fast


def assert_same_requests(des, fast):
    a, b = des.requests, fast.requests
    assert len(a) == len(b) > 0
    for col in COLUMNS:
        x, y = a[col].to_numpy(), b[col].to_numpy()
        if col == "outcome":
            assert (x == y).all()
        else:
            np.testing.assert_array_equal(x.astype(float), y.astype(float), err_msg=col)


# A trace where clients collide (connection 0 sends again before its answer),
# servers are all busy for a while, and nothing happens at the same instant.
TRACE = Trace(
    times=(0.0, 0.1, 0.25, 0.3, 0.45, 0.5, 0.62, 0.7, 2.05, 2.1, 2.15),
    connections=(0, 1, 0, 2, 3, 4, 5, 0, 6, 1, 7),
)


@pytest.mark.exact
@pytest.mark.parametrize(
    ("model", "arch", "platform", "k"),
    [
        ("reactor-pool", Architecture(workers=2), IDEAL, None),
        ("reactor-pool", Architecture(workers=2, processes=2), IDEAL, 2),
        (
            "reactor-pool",
            Architecture(workers=3),
            IDEAL.with_(parse_us=30_000.0, dispatch_us=10_000.0),
            None,
        ),
        ("thread-pool", Architecture(workers=2), IDEAL, 1),
        ("thread-per-connection", Architecture(), IDEAL.with_(context_switch_us=1000.0), None),
        ("async", Architecture(), IDEAL.with_(parse_us=20_000.0, task_us=5_000.0), None),
        ("async", Architecture(processes=2), IDEAL, 3),
    ],
)
def test_deterministic_traces_give_identical_requests(model, arch, platform, k):
    w = Workload(
        connections=8,
        trace=TRACE,
        cpu=Fixed(0.05),
        io=Fixed(0.7),
        calls=1,
        requests_per_connection=k,
    )
    des, fast = both(model, w, platform, arch, duration=10.0, warmup=0.0, replications=1)
    assert_same_requests(des, fast)
    waits = fast.requests["start"] - fast.requests["arrival"]
    if model in ("reactor-pool", "thread-pool") and arch.workers == 2 and k in (None, 1):
        assert waits.max() > 0  # the trace does queue for workers


@pytest.mark.exact
def test_fcfs_recursion_by_hand():
    """Two workers, service 1 s: requests at 0, 0.1 and 0.2 start at 0, 0.1
    and 1.0 (the earliest free worker), the third on worker 0."""
    w = Workload(
        connections=3, trace=Trace((0.0, 0.1, 0.2), (0, 1, 2)), cpu=Fixed(0.0), io=Fixed(1.0)
    )
    r = simlab.simulate(
        "reactor-pool", w, IDEAL, Architecture(workers=2), duration=5, warmup=0,
        replications=1, engine="fast",
    )  # fmt: skip
    req = r.requests
    assert req["start"].tolist() == [0.0, 0.1, 1.0]
    assert req["end"].tolist() == [1.0, 1.1, 2.0]
    assert req["worker"].tolist() == [0, 1, 0]


@pytest.mark.parametrize(
    ("model", "workload", "platform", "arch"),
    [
        (
            "reactor-pool",
            Workload(connections=500, rate=80.0, cpu=Exponential(0.004), io=LogNormal(0.1, cv=1.5)),
            IDEAL,
            Architecture(workers=10, processes=2),
        ),
        (
            "thread-pool",
            Workload(
                connections=300,
                rate=60.0,
                cpu=Fixed(0.002),
                io=Exponential(0.05),
                calls=3,
                fanout="parallel",
                requests_per_connection=1,
            ),
            IDEAL.with_(
                parse_us=50.0,
                context_switch_us=3.0,
                call_us=10.0,
                call_latency_us=200.0,
                call_latency_cv=0.8,
            ),
            Architecture(workers=4),
        ),
        (
            "async",
            Workload(connections=200, rate=150.0, cpu=Exponential(0.005), io=Fixed(0.03), calls=2),
            simlab.load_platform("jvm").with_(cores=4),
            Architecture(processes=3),
        ),
        (
            "thread-per-connection",
            Workload(connections=50, rate=40.0, cpu=LogNormal(0.01, cv=2.0), io=Fixed(0.05)),
            IDEAL.with_(parse_us=100.0),
            Architecture(processes=2),
        ),
    ],
)
def test_random_runs_match_the_des_request_for_request(model, workload, platform, arch):
    """The fast engine draws the DES's own random streams, so with the same
    seed every request, and therefore every summary number, is the same."""
    des, fast = both(model, workload, platform, arch, duration=30.0, warmup=2.0, replications=2)
    assert_same_requests(des, fast)
    d, f = des.summary.to_dict(), fast.summary.to_dict()
    for key in ("throughput_rps", "cpu_utilization", "stable", "dropped", "completed"):
        assert d[key] == f[key], key
    for block in ("latency_ms", "queue_delay_ms", "threads", "memory_mib"):
        assert d[block] == f[block], block


# The calibrated default platform: a GIL per process with its 5 ms switch
# interval, two cores, wake-ups of idle processes, switch contention, and
# lognormal call latencies. Each case has phases that queue for the GIL or a
# core, and phases longer than the switch interval.
CALIBRATED_CASES = [
    (
        "reactor-pool",
        Workload(connections=10_000, rate=150.0, cpu=Exponential(0.003), io=Fixed(0.05), calls=2),
        Architecture(workers=6),
    ),
    (
        "reactor-pool",
        Workload(
            connections=60,
            rate=200.0,
            cpu=LogNormal(0.004, cv=1.5),
            io=Exponential(0.02),
            calls=3,
            fanout="parallel",
            requests_per_connection=2,
        ),
        Architecture(workers=3, processes=3),
    ),
    (
        "thread-pool",
        Workload(
            connections=10**9,
            rate=150.0,
            cpu=Exponential(0.004),
            io=Exponential(0.02),
            calls=2,
            requests_per_connection=1,
        ),
        Architecture(workers=4, processes=2),
    ),
    (
        "thread-per-connection",
        Workload(
            connections=40, rate=150.0, cpu=LogNormal(0.004, cv=1.5), io=Exponential(0.02), calls=3
        ),
        Architecture(processes=2),
    ),
    (
        "async",
        Workload(connections=500, rate=250.0, cpu=Exponential(0.003), io=Fixed(0.03)),
        Architecture(processes=3),
    ),
    # Persistent connections owned for the whole run; with 100 threads for
    # 300 connections in two processes, some are never served.
    (
        "thread-pool",
        Workload(
            connections=300, rate=150.0, cpu=Exponential(0.003), io=Exponential(0.02), calls=2
        ),
        Architecture(workers=100, processes=2),
    ),
    (
        "two-tier",
        Workload(
            connections=300,
            rate=150.0,
            cpu=Exponential(0.003),
            io=Exponential(0.02),
            calls=2,
            requests_per_connection=2,
        ),
        Architecture(workers=3, processes=3, fronts=2),
    ),
    (
        "process-per-connection",
        Workload(connections=300, rate=150.0, cpu=Exponential(0.003), io=Exponential(0.02)),
        Architecture(processes=2),
    ),
]


@pytest.mark.parametrize(("model", "workload", "arch"), CALIBRATED_CASES)
def test_calibrated_profile_matches_the_des_request_for_request(model, workload, arch):
    """On the calibrated profile the fast engine runs the DES's own events in
    the DES's order (``simlab.fast_events``): every request is the same."""
    cpy = simlab.load_platform("cpython")
    # The tests' frozen profile predates the switch interval; a calibrated one
    # now carries CPython's 5 ms (``sys.getswitchinterval()``).
    cpy = cpy.with_(gil_interval_us=cpy.gil_interval_us or 5000.0)
    assert cpy.wake_us > 0 and cpy.gil and cpy.cores == 2 and cpy.gil_interval_us > 0
    assert cpy.call_latency_cv > 0 and cpy.switch_contention > 0
    run = {"duration": 15.0, "warmup": 1.0, "replications": 2}
    des, fast = both(model, workload, cpy, arch, **run)
    assert_same_requests(des, fast)
    assert des.summary.to_dict() | {"engine": "fast"} == fast.summary.to_dict()
    # The mechanisms act on what was compared: without wake-ups, or without
    # the GIL, the same requests get other CPU times or other starts and ends.
    for off in (cpy.with_(wake_us=0.0), cpy.with_(gil=False)):
        other = simlab.simulate(model, workload, off, arch, engine="fast", **run).requests
        moved = [c for c in ("start", "end", "cpu") if not other[c].equals(fast.requests[c])]
        if model in ("async", "process-per-connection") and not off.gil:
            continue  # one loop per process, or a child per connection: never a shared GIL
        assert moved, off


# The GIL handed to a random waiter (``gil_fifo_share`` 0, the calibrated
# value) or to the oldest half the time: the DES and the event loop read the
# same uniforms (``HandOffs``) at the same hand-offs, so they pick the same
# thread. Loaded so that two or more threads often wait for a GIL.
GIL_CASES = [
    (
        "reactor-pool",
        Workload(connections=10_000, rate=180.0, cpu=Exponential(0.004), io=Fixed(0.02), calls=2),
        Architecture(workers=8),
    ),
    (
        "thread-pool",
        Workload(
            connections=10**9, rate=160.0, cpu=LogNormal(0.004, cv=1.5), io=Exponential(0.02),
            calls=2, requests_per_connection=1,
        ),
        Architecture(workers=6, processes=2),
    ),
    (
        "thread-per-connection",
        Workload(connections=40, rate=160.0, cpu=LogNormal(0.004, cv=1.5), io=Exponential(0.02),
                 calls=3),
        Architecture(),
    ),
    (
        "two-tier",
        Workload(connections=300, rate=150.0, cpu=Exponential(0.004), io=Exponential(0.02),
                 calls=2, requests_per_connection=2),
        Architecture(workers=4, processes=2, fronts=2),
    ),
]  # fmt: skip


GIL_RUN = {"duration": 12.0, "warmup": 1.0, "replications": 2}

# Copies of a server whose GIL hand-offs may be woken on the core another
# copy's holder runs on (``gil_sibling_share``): the DES and the event loop
# read the same uniforms of the ``place`` stream at the same hand-offs, so
# the same waiters wait for the same cores. Three copies on two cores make
# two held cores possible, and the second uniform (which of them).
SIBLING_CASES = [
    ("thread-pool", Workload(connections=24, rate=600.0, cpu=Exponential(0.002),
                             io=Fixed(0.002), calls=1), Architecture(workers=8, processes=2)),
    ("thread-per-connection", Workload(connections=60, rate=500.0, cpu=LogNormal(0.002, cv=1.0),
                                       io=Exponential(0.005), calls=1), Architecture(processes=3)),
    ("reactor-pool", Workload(connections=500, rate=450.0, cpu=Exponential(0.002),
                              io=Fixed(0.01), calls=2), Architecture(workers=4, processes=2)),
    ("async", Workload(connections=300, rate=400.0, cpu=Exponential(0.002), io=Fixed(0.01)),
     Architecture(processes=2)),
]  # fmt: skip


@pytest.mark.parametrize(("model", "workload", "arch"), SIBLING_CASES)
def test_copies_woken_on_each_others_cores_match_the_des(model, workload, arch):
    cpy = simlab.load_platform("cpython")
    cpy = cpy.with_(gil_interval_us=cpy.gil_interval_us or 5000.0, gil_sibling_share=0.5)
    run = {"duration": 6.0, "warmup": 1.0, "replications": 2}
    fast = fast_as_des(model, workload, cpy, arch, **run)
    # The share acts on what was compared, where a copy has threads to hand
    # its GIL between (async's one loop thread a copy hands it to nobody).
    other = simlab.simulate(model, workload, cpy.with_(gil_sibling_share=0.0), arch,
                            engine="fast", **run).requests  # fmt: skip
    moved = [c for c in ("start", "end") if not other[c].equals(fast.requests[c])]
    assert bool(moved) == (model != "async"), moved


def fast_as_des(model, workload, platform, arch, **run):
    """The fast engine's run of a case it covers, checked request for request
    and summary for summary against the DES's."""
    assert reason_not_fast(model, workload, platform, arch) is None
    des, fast = both(model, workload, platform, arch, **run)
    assert_same_requests(des, fast)
    assert des.summary.to_dict() | {"engine": "fast"} == fast.summary.to_dict()
    return fast


@pytest.mark.parametrize("share", [0.0, 0.5])
@pytest.mark.parametrize(("model", "workload", "arch"), GIL_CASES)
def test_gil_handed_out_of_order_matches_the_des(model, workload, arch, share):
    cpy = simlab.load_platform("cpython")
    cpy = cpy.with_(gil_interval_us=cpy.gil_interval_us or 5000.0, gil_fifo_share=share)
    fast = fast_as_des(model, workload, cpy, arch, **GIL_RUN)
    # The hand-off's order acts on what was compared: in order, the same
    # requests start or end at other times.
    fifo = simlab.simulate(model, workload, cpy.with_(gil_fifo_share=1.0), arch, engine="fast",
                           **GIL_RUN).requests  # fmt: skip
    assert [c for c in ("start", "end") if not fifo[c].equals(fast.requests[c])]


@pytest.mark.parametrize(("model", "workload", "arch"), GIL_CASES)
def test_gil_waiters_polls_match_the_des(model, workload, arch):
    """The GIL's waiters slow its holder (``gil_poll_us``), in both engines alike."""
    cpy = simlab.load_platform("cpython")
    cpy = cpy.with_(gil_interval_us=cpy.gil_interval_us or 5000.0, gil_poll_us=40.0)
    fast = fast_as_des(model, workload, cpy, arch, **GIL_RUN)
    # The polls act on what was compared: without them, requests end earlier.
    off = simlab.simulate(model, workload, cpy.with_(gil_poll_us=0.0), arch, engine="fast",
                          **GIL_RUN)  # fmt: skip
    assert off.summary.cpu_busy_cores < fast.summary.cpu_busy_cores


@pytest.mark.parametrize(("model", "workload", "arch"), GIL_CASES)
@pytest.mark.parametrize("interval", [5000.0, 0.0])
def test_gil_hand_offs_match_the_des(model, workload, arch, interval):
    """A GIL taken after a wait is idle for its waiter's wake-up
    (``gil_handoff_us``), in both engines alike, with and without forced
    switches."""
    cpy = simlab.load_platform("cpython")
    cpy = cpy.with_(gil_interval_us=interval, gil_handoff_us=60.0)
    fast = fast_as_des(model, workload, cpy, arch, **GIL_RUN)
    # The hand-offs act on what was compared: without them requests wait
    # less, and their CPU is the same (the GIL idles, no core works).
    off = simlab.simulate(model, workload, cpy.with_(gil_handoff_us=0.0), arch, engine="fast",
                          **GIL_RUN)  # fmt: skip
    assert off.summary.latency_ms.mean < fast.summary.latency_ms.mean


# Many GIL waiters at once: the waiters' CPU is W times a wake-up's share, and
# the engines must round it alike (an order of products once differed by an ulp).
CROWDED = (
    "thread-per-connection",
    Workload(connections=300, rate=300.0, cpu=LogNormal(0.003, cv=1.5), io=Fixed(0.005),
             calls=3),
    Architecture(),
)  # fmt: skip


@pytest.mark.parametrize(("model", "workload", "arch"), [*GIL_CASES, CROWDED])
@pytest.mark.parametrize("cores", [2, None])
def test_gil_waiters_wake_ups_match_the_des(model, workload, arch, cores):
    """The GIL's waiters' wake-ups' own CPU (``gil_wake_us``): recorded beside
    the holder while a core is free, on the holder's phase while none is,
    in both engines alike."""
    cpy = simlab.load_platform("cpython")
    cpy = cpy.with_(gil_interval_us=cpy.gil_interval_us or 5000.0, gil_poll_us=0.0,
                    gil_wake_us=60.0, cores=cores)  # fmt: skip
    fast = fast_as_des(model, workload, cpy, arch, **GIL_RUN)
    off = simlab.simulate(model, workload, cpy.with_(gil_wake_us=0.0), arch, engine="fast",
                          **GIL_RUN)  # fmt: skip
    assert off.summary.cpu_busy_cores < fast.summary.cpu_busy_cores
    if cores is not None and arch.processes > 1:
        # Two processes' holders can fill both cores: then the waiters' CPU
        # lengthens the holders' phases, and requests end later.
        assert not off.requests["end"].equals(fast.requests["end"])
    else:
        # One process's phases all hold its GIL, so one core at most is
        # theirs and another is free for the waiters (or the cores are
        # unlimited): their CPU is recorded and moves no request.
        assert off.requests["end"].equals(fast.requests["end"])


@pytest.mark.parametrize(
    ("model", "arch"),
    [("async", Architecture(processes=2)), ("reactor-pool", Architecture(workers=4))],
)
def test_loop_wake_ups_match_the_des(model, arch):
    """A loop's wake-up from its poll (``loop_wake_us``), shared by a batch,
    and its cost per event (``loop_event_us``), as calibrated loops have."""
    cpy = simlab.load_platform("cpython").with_(loop_wake_us=400.0, loop_event_us=430.0)
    w = Workload(connections=500, rate=200.0, cpu=Exponential(0.002), io=Fixed(0.03))
    des, fast = both(model, w, cpy, arch, duration=10.0, warmup=1.0, replications=2)
    assert_same_requests(des, fast)
    # The wake-ups are charged: without them the loops' CPU times differ.
    quiet = simlab.simulate(model, w, cpy.with_(loop_wake_us=0.0), arch, engine="fast",
                            duration=10.0, warmup=1.0, replications=2)  # fmt: skip
    assert not quiet.requests["cpu"].equals(fast.requests["cpu"])


# Requests at the same instant, some taking no time at all: the event loop
# must break ties as SimPy does (time, then priority, then creation order).
TIES = Trace(
    times=(0.0,) * 5 + (0.5,) * 5 + (1.0,) * 3,
    connections=(0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 0, 5),
)


@pytest.mark.exact
@pytest.mark.parametrize(
    ("model", "arch"),
    [
        ("reactor-pool", Architecture(workers=2)),
        ("thread-pool", Architecture(workers=2)),
        ("async", Architecture(processes=2)),
        ("two-tier", Architecture(workers=2)),
        ("thread-per-connection", Architecture()),
    ],
)
@pytest.mark.parametrize(("cpu", "calls"), [(0.0, 0), (0.5, 1)])
@pytest.mark.parametrize("platform", ["cpython", "one core, a GIL, no overheads"])
def test_ties_on_contended_cpus(model, arch, cpu, calls, platform):
    # Without overheads a 0.5 s phase ends exactly as the next requests arrive.
    p = simlab.load_platform("cpython") if platform == "cpython" else IDEAL.with_(cores=1, gil=True)
    k = 1 if model == "thread-pool" else None
    w = Workload(connections=6, trace=TIES, cpu=Fixed(cpu), io=Fixed(0.0), calls=calls,
                 requests_per_connection=k)  # fmt: skip
    des, fast = both(model, w, p, arch, duration=3.0, warmup=0.0, replications=1)
    assert_same_requests(des, fast)


# --------------------------------------------------------------- distributions

# M/M/2 at rho = 0.5. Its waits relax in about 1/(c mu (1 - sqrt(rho))^2) =
# 0.6 s; one wait in 30 requests (3 s apart, 5 relaxation times) is taken,
# so the sampled waits are close to independent, as the KS test assumes.
LAM, MU, C = 10.0, 10.0, 2
SPACING = 30
WARMUP = 12.0  # 20 relaxation times
ALPHA = 0.01 / 4  # four statistical checks below, Bonferroni
EFFECT = 1.25  # the alternative the power is stated for: waits 25% longer (power 0.97)


def sampled_waits(engine: str, seed: int, reps: int, per_rep: int) -> np.ndarray:
    w = Workload(connections=MANY, rate=LAM, cpu=Fixed(0.0), io=Exponential(1 / MU))
    r = simlab.simulate(
        "reactor-pool", w, IDEAL, Architecture(workers=C), duration=SPACING * per_rep / LAM,
        warmup=WARMUP, seed=seed, replications=reps, engine=engine,
    )  # fmt: skip
    req = r.requests[r.requests["measured"]]
    out = [
        (rep["start"] - rep["admit"]).to_numpy()[::SPACING] for _, rep in req.groupby("replication")
    ]
    return np.concatenate(out)


def erlang_c_waits(rng: np.random.Generator, n: int, scale: float = 1.0) -> np.ndarray:
    pc = theory.erlang_c(C, LAM / MU)
    theta = C * MU - LAM
    return np.where(rng.random(n) < pc, rng.exponential(scale / theta, n), 0.0)


@pytest.mark.theory
def test_wait_distributions_agree_across_engines_and_with_erlang_c():
    """Independent seeds for the two engines: their sampled waits must not be
    told apart by a two-sample KS test, and both must match M/M/c.

    The fast engine is cheap, so it gives 5x the DES's sample. Power: with
    these sizes, the two-sample KS test at level ALPHA rejects, with the
    probability computed below from the exact Erlang C law, a wait
    distribution whose waiting part is 25% longer (same P(wait)); it must be
    at least 0.8, or the test could not see such a difference.
    """
    fast = sampled_waits("fast", seed=11, reps=20, per_rep=2000)
    des = sampled_waits("des", seed=12, reps=10, per_rep=800)
    rng = np.random.default_rng(5)
    rejections = [
        stats.ks_2samp(
            erlang_c_waits(rng, len(fast)), erlang_c_waits(rng, len(des), scale=EFFECT)
        ).pvalue
        < ALPHA
        for _ in range(200)
    ]
    power = float(np.mean(rejections))
    assert power >= 0.8, f"the KS test is too weak here (power {power:.2f}); sample more"
    assert stats.ks_2samp(fast, des).pvalue >= ALPHA
    pc = theory.erlang_c(C, LAM / MU)
    theta = C * MU - LAM
    for sample in (fast, des):
        waited = sample[sample > 0]
        # P(wait) against Erlang C: an exact binomial test.
        assert stats.binomtest(len(waited), len(sample), pc).pvalue >= ALPHA
        # The wait given that it happens is Exp(c mu - lam): one-sample KS.
        assert stats.kstest(waited, "expon", args=(0, 1 / theta)).pvalue >= ALPHA


def test_reasons_for_not_fast():
    w = Workload(connections=100, rate=10.0)
    cpy = simlab.load_platform("cpython")
    for model in simlab.MODELS:
        assert reason_not_fast(model, w, cpy, Architecture()) is None, model
    # A GIL handed out of order reads uniforms drawn ahead, as the DES does.
    convoy = cpy.with_(gil_fifo_share=0.0)
    for model in simlab.MODELS:
        assert reason_not_fast(model, w, convoy, Architecture()) is None, model
    crowded = cpy.with_(crowding=1e-4)
    crowding_reason = reason_not_fast("thread-per-connection", w, crowded, Architecture())
    assert "crowding" in (crowding_reason or "")
    copies = cpy.with_(gil_sibling_share=0.25)
    for model in simlab.MODELS:
        assert reason_not_fast(model, w, copies, Architecture(processes=2)) is None, model
    neighbours = cpy.with_(client_cpu_us=20.0)
    assert "client_cpu_us" in (reason_not_fast("reactor-pool", w, neighbours, Architecture()) or "")
    keep_alive = Workload(connections=100, rate=10.0, requests_per_connection=3)
    assert "K = 1" in (reason_not_fast("thread-pool", keep_alive, IDEAL, Architecture()) or "")
    assert "backlog" in (reason_not_fast("async", w, IDEAL, Architecture(backlog=5)) or "")
    assert "closed" in (
        reason_not_fast("async", Workload(connections=5, think=Fixed(1.0)), IDEAL, Architecture())
        or ""
    )
    assert reason_not_fast("async", w, IDEAL, Architecture()) is None
    with pytest.raises(ValueError, match="client_cpu_us"):
        simlab.simulate("reactor-pool", w, neighbours, engine="fast", duration=1, warmup=0)
    auto = simlab.simulate("reactor-pool", w, neighbours, engine="auto", duration=1, warmup=0,
                           replications=2)  # fmt: skip
    assert auto.summary.engine == "des"
    # The fallback says why, in the JSON; where auto runs what was asked, no key.
    assert "client_cpu_us" in auto.summary.to_dict()["engine_reason"]
    fast = simlab.simulate("async", w, IDEAL, engine="auto", duration=1, warmup=0, replications=2)
    assert fast.summary.engine == "fast" and "engine_reason" not in fast.summary.to_dict()
    with pytest.raises(ValueError, match="engine"):
        simlab.simulate("async", w, IDEAL, engine="warp", duration=1)


def test_tables_off_keeps_the_summary():
    w = Workload(connections=100, rate=50.0)
    full = simlab.simulate("async", w, IDEAL, duration=5, warmup=1, replications=2)
    lean = simlab.simulate("async", w, IDEAL, duration=5, warmup=1, replications=2, tables=False)
    assert lean.requests.empty and lean.series.empty
    assert lean.summary.to_dict() == full.summary.to_dict()
    assert math.isfinite(full.summary.latency_ms.p99)
    # Summarised as they end, the fast event loop's records keep none of its
    # buffers (the next replication writes them again): no order of ends.
    cpy = simlab.load_platform("cpython")
    run = {"duration": 5, "warmup": 1, "replications": 3, "tables": False, "engine": "fast"}
    events = simlab.simulate("async", w, cpy, **run)
    assert all(rec.end_order is None and not rec.columns for rec in events.records)


def test_forced_gil_switches_match_the_des():
    """Long CPU phases on one GIL with CPython's switch interval: each forced
    switch is timed from a waiter's wait (``Cpu._drop_at``) in both engines."""
    p = simlab.load_platform("cpython").with_(gil_interval_us=5000.0, gil_fifo_share=1.0)
    w = Workload(connections=16, rate=150.0, cpu=Exponential(0.004), io=Fixed(0.005))
    des, fast = both("thread-pool", w, p, Architecture(workers=16),
                     duration=6.0, warmup=0.5, replications=2)  # fmt: skip
    assert_same_requests(des, fast)
    # The switches happened: with no interval the same requests end otherwise.
    held = simlab.simulate("thread-pool", w, p.with_(gil_interval_us=0.0),
                           Architecture(workers=16), engine="fast", duration=6.0,
                           warmup=0.5, replications=2)  # fmt: skip
    assert not held.requests["end"].equals(fast.requests["end"])


def test_hand_off_uniforms_drawn_again_when_they_run_out(monkeypatch):
    """Long CPU phases in 5 ms slices hand the GIL over many times a request:
    with one uniform per request drawn ahead (batches of 4), the event loop
    runs out, draws more from the same stream and runs again, and still
    picks the DES's threads."""
    import simlab.fast  # noqa: PLC0415 - the module whose draws are counted
    import simlab.streams  # noqa: PLC0415

    monkeypatch.setattr(simlab.streams, "HAND_OFF_BATCH", 4)
    calls = []
    draw = simlab.fast.hand_off_draws

    def counted(rng, at_least):
        calls.append(at_least)
        return draw(rng, at_least)

    monkeypatch.setattr(simlab.fast, "hand_off_draws", counted)
    cpy = simlab.load_platform("cpython").with_(gil_interval_us=5000.0, gil_fifo_share=0.0)
    w = Workload(connections=10_000, rate=30.0, cpu=Exponential(0.025), io=Fixed(0.01), calls=1)
    des, fast = both("reactor-pool", w, cpy, Architecture(workers=8), duration=8.0, warmup=0.0,
                     replications=1)  # fmt: skip
    assert_same_requests(des, fast)
    assert len(calls) >= 2, "the first draws sufficed: the test does not run out"


def test_event_buffers_are_reused_across_replications_with_the_same_record():
    """The event loop writes its columns and the CPU's busy intervals into
    the caller's ``EventBuffers``: a second replication given the same
    buffers writes them in place (no new allocation), and its record is the
    one fresh buffers give, to the bit."""
    from simlab.fast import EventBuffers, run_fast_replication  # noqa: PLC0415

    w = Workload(connections=200, rate=150.0, cpu=Exponential(0.002), io=Exponential(0.01))
    p = simlab.load_platform("cpython")

    def run(r, buffers):
        # A replication spawns its streams from its seed sequence: a new one each run.
        seq = np.random.SeedSequence(3).spawn(2)[r]
        return run_fast_replication("reactor-pool", w, p, Architecture(workers=8),
                                    duration=4.0, warmup=0.0, seed=3, replication=r,
                                    seed_seq=seq, horizon=5.0, buffers=buffers)  # fmt: skip

    def arrays(rec):
        return [*rec.columns.values(), *rec.intervals["cpu"], *rec.intervals["connections"]]

    fresh = [arrays(run(r, None)) for r in range(2)]
    kept = EventBuffers()
    for a, b in zip(arrays(run(0, kept)), fresh[0], strict=True):
        np.testing.assert_array_equal(a, b)
    floats, starts = kept.floats, kept.starts
    second = run(1, kept)
    # Long enough: kept, not allocated again, and written in place.
    assert kept.floats is floats and kept.starts is starts
    assert np.shares_memory(second.columns["end"], floats) and len(second.columns["end"]) > 100
    assert np.shares_memory(second.intervals["cpu"][0], starts)
    for a, b in zip(arrays(second), fresh[1], strict=True):
        np.testing.assert_array_equal(a, b)
    cpu = fresh[0][len(second.columns)], fresh[0][len(second.columns) + 1]
    # The ends are each phase's start plus its length, as the DES records them.
    des = simlab.simulate("reactor-pool", w, p, Architecture(workers=8), duration=4.0,
                          warmup=0.0, replications=1, seed=3, engine="des").records[0]  # fmt: skip
    np.testing.assert_array_equal(cpu[0], des.intervals["cpu"][0])
    np.testing.assert_array_equal(cpu[1], des.intervals["cpu"][1])


@pytest.mark.parametrize(
    ("workload", "arch", "cores"),
    [
        # Sequential calls, one loop: its reply's passes, then the next call.
        (Workload(connections=400, rate=300.0, cpu=Exponential(0.002), io=Exponential(0.02),
                  calls=2), Architecture(), 2),
        # Parallel calls gathered (a pass more), two loops on one core.
        (Workload(connections=300, rate=250.0, cpu=Exponential(0.002), io=Fixed(0.01),
                  calls=3, fanout="parallel"), Architecture(processes=2), 1),
        # No calls, past one core's worth, short connections.
        (Workload(connections=200, rate=600.0, cpu=Exponential(0.002), io=Fixed(0.0),
                  calls=0, requests_per_connection=3), Architecture(), 2),
    ],
)  # fmt: skip
def test_loops_run_in_passes_match_the_des(workload, arch, cores):
    """An event loop run in passes (``loop_passes``, ``Async``'s ``Passes``):
    the compiled loop's driver reproduces the DES's, request for request, on
    the calibrated profile (wake-ups, a loop's own costs); and the passes
    move the answers (an answer waits for the rest of its pass)."""
    cpy = simlab.load_platform("cpython").with_(loop_passes=3.0, cores=cores)
    run = {"duration": 6.0, "warmup": 1.0, "replications": 2}
    des, fast = both("async", workload, cpy, arch, **run)
    assert_same_requests(des, fast)
    # The CPU's busy phases too (the busy cores), and a reply handed on at once.
    assert des.summary.cpu_busy_cores == fast.summary.cpu_busy_cores
    assert_same_requests(*both("async", workload, cpy.with_(loop_passes=1.0), arch, **run))
    queue = simlab.simulate("async", workload, cpy.with_(loop_passes=0.0), arch, engine="fast",
                            **run)  # fmt: skip
    assert not queue.requests["end"].equals(fast.requests["end"])
    assert fast.summary.latency_ms.p99 > queue.summary.latency_ms.p99


@pytest.mark.exact
@pytest.mark.parametrize("arch", [Architecture(), Architecture(processes=2)])
@pytest.mark.parametrize(("cpu", "calls"), [(0.0, 0), (0.5, 1), (0.5, 2)])
def test_passes_break_ties_as_the_des(arch, cpu, calls):
    """Requests at the same instant on loops run in passes, phases ending as
    others arrive: the driver's wake-ups and hand-offs keep SimPy's order."""
    p = IDEAL.with_(cores=1, gil=True, loop_passes=2.0)
    w = Workload(connections=6, trace=TIES, cpu=Fixed(cpu), io=Fixed(0.25 if calls else 0.0),
                 calls=calls)  # fmt: skip
    des, fast = both("async", w, p, arch, duration=3.0, warmup=0.0, replications=1)
    assert_same_requests(des, fast)


# Past saturation the acceptor, queued for the GIL behind the handlers (or,
# forking, for the cores), has not made every connection's owner when the
# window opens (or ever): a connection's requests wait for it, and a forked
# child's first request pays the child's own start (``Dedicated.forks_at_start``).
RAMPS = [
    ("thread-per-connection",
     Workload(connections=600, rate=420.0, cpu=Fixed(0.0025), io=Fixed(0.01)), Architecture()),
    ("thread-per-connection",
     Workload(connections=900, rate=800.0, cpu=Exponential(0.0025), io=Fixed(0.01), calls=2),
     Architecture(processes=2)),
    ("process-per-connection",
     Workload(connections=3000, rate=1500.0, cpu=Exponential(0.002), io=Fixed(0.01)),
     Architecture(processes=2)),
]  # fmt: skip


@pytest.mark.parametrize(("model", "workload", "arch"), RAMPS)
def test_owners_made_as_the_run_starts_match_the_des(model, workload, arch):
    """The accepting thread that makes persistent connections' threads (or
    forks their children) as the run starts, on its process's GIL: an entity
    of the event loop (``fast_events``' acceptors), request for request and
    level for level, a child's own start on its first request included."""
    cpy = simlab.load_platform("cpython").with_(fork_child_us=1500.0)
    assert simlab.MODELS[model].forks_at_start(workload, cpy)
    run = {"duration": 4.0, "warmup": 0.5, "replications": 2}
    fast = fast_as_des(model, workload, cpy, arch, **run)
    # The ramp acts on what was compared: owners still being made in the
    # window, and with every owner there from the start, other requests.
    steady = simlab.MODELS[model].steady_platform(workload, cpy)
    made = simlab.simulate(model, workload, steady, arch, engine="fast", **run)
    assert fast.summary.threads.peak < workload.connections < made.summary.threads.peak
    assert not made.requests["start"].equals(fast.requests["start"])
    # ``--engine auto`` runs it fast.
    auto = simlab.simulate(model, workload, cpy, arch, engine="auto", duration=1.0, warmup=0.5,
                           replications=1)  # fmt: skip
    assert auto.summary.engine == "fast"


def test_owners_made_as_the_run_starts_that_fast_does_not_run():
    """Copies racing for their connections, and a platform whose phases never
    queue (the recursion, which has no acceptors), stay with the DES, which
    says why."""
    w = Workload(connections=100, rate=10.0)
    cpy = simlab.load_platform("cpython").with_(fork_child_us=1000.0)
    race = Architecture(processes=2, accept="race", first_read="worker")
    assert "racing" in (reason_not_fast("thread-per-connection", w, cpy, race) or "")
    assert reason_not_fast("thread-per-connection", w, cpy, Architecture(processes=2)) is None
    free = IDEAL.with_(fork_child_us=1000.0, fork_us=2000.0)
    assert simlab.MODELS["process-per-connection"].forks_at_start(w, free)
    why = reason_not_fast("process-per-connection", w, free, Architecture())
    assert "event loop" in (why or "")
