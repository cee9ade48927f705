"""What each mechanism of issue 12 part 5 does in the DES, on small exact cases.

The both-ways tests against the committed validation are in
``test_mechanisms.py``; here each mechanism's own rule is checked on traces
small enough to compute by hand: who pays a loop's wake-up, what a loop pays
per event, what a child's first backend call adds to memory, and how the
GIL's hand-off out of order widens waits without moving their mean.
"""

from __future__ import annotations

import numpy as np
import pytest

from simlab import validate
from simlab.distributions import Exponential, Fixed
from simlab.errors import UserError
from simlab.fast import reason_not_fast, uses_events
from simlab.params import Architecture, Platform, Trace, Workload
from simlab.simulation import simulate

US = 1e-6
# No overhead but the ones a test sets: one core, no GIL contention to speak of.
BARE = Platform(
    name="bare",
    cores=None,
    gil=True,
    context_switch_us=0.0,
    switch_contention=0.0,
    spawn_us=0.0,
    fork_us=0.0,
    dispatch_us=0.0,
    task_us=0.0,
    parse_us=0.0,
    call_us=0.0,
)


def _cpu_times(model: str, workload: Workload, platform: Platform) -> np.ndarray:
    result = simulate(model, workload, platform, Architecture(), duration=1.0, warmup=0.0,
                      replications=1, seed=3)  # fmt: skip
    return np.asarray(result.records[0].columns["cpu_time"])


def _burst(n: int, at: float = 0.01) -> Workload:
    """n clients that send at the same instant, 1 ms of CPU each, no calls."""
    trace = Trace(times=(at,) * n, connections=tuple(range(n)))
    return Workload(connections=n, trace=trace, cpu=Fixed(0.001), calls=0)


def test_only_the_request_that_wakes_a_loop_pays_its_wake_up() -> None:
    # Four requests ready at once: the loop wakes for the first and runs the
    # other three before it sleeps again, so they share its wake-up.
    p = BARE.with_(wake_us=50.0, loop_wake_us=400.0, parse_us=100.0)
    cpu = _cpu_times("async", _burst(4), p)
    assert cpu[0] == pytest.approx(0.001 + (100 + 50 + 400) * US)
    assert cpu[1:] == pytest.approx([0.001 + 100 * US] * 3)


def test_a_loop_that_sleeps_between_requests_pays_every_wake_up() -> None:
    # Requests far apart: the loop sleeps between them and each one wakes it.
    trace = Trace(times=(0.01, 0.2, 0.4), connections=(0, 1, 2))
    w = Workload(connections=3, trace=trace, cpu=Fixed(0.001), calls=0)
    cpu = _cpu_times("async", w, BARE.with_(wake_us=50.0, loop_wake_us=400.0))
    assert cpu == pytest.approx([0.001 + 450 * US] * 3)


def test_a_thread_pays_no_loop_wake_up() -> None:
    p = BARE.with_(wake_us=50.0, loop_wake_us=400.0)
    cpu = _cpu_times("thread-per-connection", _burst(1), p)
    assert cpu == pytest.approx([0.001 + 50 * US])


def test_a_loop_parses_at_its_own_cost_and_a_thread_at_parse_us() -> None:
    p = BARE.with_(parse_us=500.0, loop_event_us=300.0)
    assert _cpu_times("async", _burst(1), p) == pytest.approx([0.001 + 300 * US])
    assert _cpu_times("thread-per-connection", _burst(1), p) == pytest.approx([0.001 + 500 * US])
    # 0 (every preset) means a loop parses at parse_us, as it always did.
    assert _cpu_times("async", _burst(1), p.with_(loop_event_us=0.0)) == pytest.approx(
        [0.001 + 500 * US]
    )


def test_a_childs_first_backend_call_adds_its_copy_on_write() -> None:
    # 20 persistent connections, each served: every child has called the backend.
    w = Workload(connections=20, rate=200.0, cpu=Fixed(0.0005), io=Fixed(0.002), calls=1)
    platform = Platform(name="p", fork_touched_kib=1000.0)

    def user_mib(p: Platform, workload: Workload) -> float:
        s = simulate("process-per-connection", workload, p, Architecture(), duration=2.0,
                     warmup=0.5, replications=1, seed=1).summary  # fmt: skip
        assert s.memory_mib.user_peak is not None
        return s.memory_mib.user_peak

    base = user_mib(platform, w)
    called = user_mib(platform.with_(fork_call_kib=2048.0), w)
    assert called - base == pytest.approx(20 * 2.0, rel=1e-9)
    # Without backend calls no child makes one: nothing added.
    quiet = w.with_(calls=0)
    assert user_mib(platform.with_(fork_call_kib=2048.0), quiet) == user_mib(platform, quiet)


def test_gil_hand_off_out_of_order_keeps_the_mean_and_widens_the_tail() -> None:
    # 64 threads share one GIL at 80% load (exponential CPU, no calls): handing
    # it to any waiter rather than the oldest is still work-conserving, so the
    # mean latency stays within the replications' noise, while waits that keep
    # being passed over stretch the tail beyond the in-order run's interval.
    w = Workload(connections=64, rate=400.0, cpu=Exponential(0.002), calls=0)
    arch = Architecture(workers=64)
    p = BARE.with_(cores=2)

    def run(share: float) -> tuple[float, list[float], float, list[float]]:
        lat = simulate("thread-pool", w, p.with_(gil_fifo_share=share), arch, duration=20.0,
                       warmup=2.0, replications=4, seed=5).summary.latency_ms  # fmt: skip
        assert lat.mean is not None and lat.mean_ci95 is not None
        assert lat.p99 is not None and lat.p99_ci95 is not None
        return lat.mean, lat.mean_ci95, lat.p99, lat.p99_ci95

    fifo_mean, fifo_ci, fifo_p99, fifo_p99_ci = run(1.0)
    any_mean, any_ci, any_p99, _ = run(0.0)
    half = (fifo_ci[1] - fifo_ci[0]) / 2 + (any_ci[1] - any_ci[0]) / 2
    assert abs(any_mean - fifo_mean) <= half
    assert any_p99 > fifo_p99_ci[1] > fifo_p99


def test_the_fast_engine_covers_the_mechanisms() -> None:
    w = Workload(connections=100, rate=50.0)
    ideal = Platform(name="i", cores=None, gil=False, wake_us=0.0)
    assert reason_not_fast("async", w, ideal, Architecture()) is None
    # A loop's wake-up from its poll: the fast engine's event loop charges it as
    # the DES does (tests/test_fast.py compares them request for request).
    assert reason_not_fast("async", w, ideal.with_(loop_wake_us=100.0), Architecture()) is None
    # A loop's own cost per event is a constant the recursion charges.
    assert reason_not_fast("async", w, ideal.with_(loop_event_us=100.0), Architecture()) is None
    # A GIL handed out of order: the event loop reads the DES's hand-off
    # uniforms in the same order (tests/test_fast.py compares them too).
    gil = ideal.with_(gil=True, gil_fifo_share=0.0)
    assert reason_not_fast("thread-pool", w, gil, Architecture()) is None
    assert uses_events("thread-pool", w, gil, Architecture())


def test_a_phase_runs_slower_for_each_thread_queued_for_the_cores() -> None:
    # One core, three threads ready at once: the first finds nobody queued
    # for the core when it starts, the second one (the third), the third
    # none; only the second's phase runs (1 + crowding) times as long. The
    # GIL's waiters are not the kernel's: with a GIL nobody is slowed.
    p = BARE.with_(gil=False, cores=1, crowding=0.25)
    cpu = _cpu_times("thread-per-connection", _burst(3), p)
    assert sorted(cpu) == pytest.approx([0.001, 0.001, 0.001 * 1.25])
    off = _cpu_times("thread-per-connection", _burst(3), p.with_(crowding=0.0))
    assert off == pytest.approx([0.001] * 3)
    gil = _cpu_times("thread-per-connection", _burst(3), p.with_(gil=True, cores=None))
    assert gil == pytest.approx([0.001] * 3)


def test_a_platform_describes_a_mechanism_only_when_it_is_on() -> None:
    off = Platform().describe()
    for key in ("loop_event_us", "loop_wake_us", "fork_call_kib", "gil_fifo_share"):
        assert key not in off
    on = Platform(loop_wake_us=1.0, gil_fifo_share=0.5).describe()
    assert on["loop_wake_us"] == 1.0
    assert on["gil_fifo_share"] == 0.5


def test_gil_fifo_share_must_be_a_share() -> None:
    with pytest.raises(ValueError, match="gil_fifo_share"):
        Platform(gil_fifo_share=1.5)


def test_only_reactor_pool_reads_a_first_request_on_a_worker() -> None:
    w = Workload(connections=10, rate=10.0)
    with pytest.raises(UserError, match="first_read"):
        simulate("async", w, BARE, Architecture(first_read="worker"), duration=1.0)
    with pytest.raises(ValueError, match="first_read"):
        Architecture(first_read="thread")  # type: ignore[arg-type]


def test_a_worker_holds_a_new_connection_until_its_first_request() -> None:
    # gthread's first read: 4 persistent connections, 1 worker. The worker takes
    # connection 0 at time 0 and waits for its first request (sent at 0.1 s);
    # connection 1's request, sent at 0.01 s, waits for that worker meanwhile.
    trace = Trace(times=(0.01, 0.1), connections=(1, 0))
    w = Workload(connections=4, trace=trace, cpu=Fixed(0.001), calls=0)
    arch = Architecture(workers=1, first_read="worker")
    rec = simulate("reactor-pool", w, BARE, arch, duration=1.0, warmup=0.0,
                   replications=1, seed=1).records[0]  # fmt: skip
    start = rec.columns["start"]
    assert start[1] == pytest.approx(0.1)  # connection 0's request: read at once
    assert start[0] == pytest.approx(0.101)  # connection 1's: after it, on the freed worker
    on_loop = simulate("reactor-pool", w, BARE, Architecture(workers=1), duration=1.0,
                       warmup=0.0, replications=1, seed=1).records[0]  # fmt: skip
    assert on_loop.columns["start"][0] == pytest.approx(0.01)


def test_a_worker_gives_a_silent_new_connection_back_after_gunicorns_wait() -> None:
    # gunicorn 27's gthread waits 5 s for a new connection's first bytes on a
    # worker, then hands it to the poller. One worker, 2 connections:
    # connection 0 (accepted first) is silent until 6 s; connection 1's
    # request, sent at 1 s, gets the worker when it gives up on 0 at 5 s, not
    # after 0's first request is served (7 s), and 0's request then goes
    # through the loop as any other.
    from simlab.models import reactor_pool  # noqa: PLC0415 - its constant only

    assert reactor_pool.FIRST_READ_WAIT_S == 5.0
    trace = Trace(times=(1.0, 6.0), connections=(1, 0))
    w = Workload(connections=2, trace=trace, cpu=Fixed(0.0), io=Fixed(1.0), calls=1)
    arch = Architecture(workers=1, first_read="worker")
    rec = simulate("reactor-pool", w, BARE, arch, duration=10.0, warmup=0.0,
                   replications=1, seed=1).records[0]  # fmt: skip
    start, end = rec.columns["start"], rec.columns["end"]
    assert start[0] == pytest.approx(5.0) and end[0] == pytest.approx(6.0)
    assert start[1] == pytest.approx(6.0) and end[1] == pytest.approx(7.0)


def test_racing_copies_take_random_shares_of_the_connections() -> None:
    # gthread's workers race for the connections that open together: each
    # run's shares are Dirichlet(1, 1), so the larger of two is uniform on
    # [1/2, 1] (mean 3/4), where a hashed deal keeps it near 1/2. Measured
    # (the workers' sockets at the kernel peak, N=60 P=2, 10 runs): 0.63 to
    # 0.93, median 0.8.
    from simlab.streams import Dealer, RacingDealer, run_salts  # noqa: PLC0415

    def larger(dealer: Dealer | RacingDealer) -> float:
        counts = np.bincount([dealer(k) for k in range(60)], minlength=2)
        return counts.max() / 60

    salts = run_salts(5, 200)
    race = np.array([larger(RacingDealer(2, s)) for s in salts])
    dealt = np.array([larger(Dealer(2, s)) for s in salts])
    # The mean of 200 uniforms on [1/2, 1] (sd 0.144) plus the binomial spread
    # of 60 connections: 0.75 to 0.77; 4 standard errors either side.
    assert 0.75 - 0.04 < race.mean() < 0.77 + 0.04
    assert dealt.mean() < 0.6
    assert 0.2 < np.mean(race > 0.85) < 0.4  # P(U[1/2, 1] > 0.85) = 0.3
    assert RacingDealer(2, salts[0]).bounds == RacingDealer(2, salts[0]).bounds
    # It is gthread's design, and modelled only with its first read.
    with pytest.raises(ValueError, match="accept"):
        Architecture(processes=2, accept="race")
    designed = validate.as_designed("gunicorn-gthread", Architecture(processes=2))
    assert (designed.first_read, designed.accept) == ("worker", "race")


def _gil_trace(phases: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Each (arrival, demand) phase of one process on a GIL with CPython's
    5 ms switch interval and two cores: (when it first ran, when it ended)."""
    import simpy  # noqa: PLC0415 - only these tests drive Cpu directly

    from simlab.models.pool import Cpu  # noqa: PLC0415

    env = simpy.Environment()
    cpu = Cpu(env, BARE.with_(cores=2, gil_interval_us=5000.0), 1, None)
    out: list[tuple[float, float]] = [(0.0, 0.0)] * len(phases)

    def phase(k: int, at: float, demand: float):
        yield env.timeout(at)
        _, started = yield from cpu.run(cpu.gil(0), demand, 0, 0)
        out[k] = (round(started, 9), round(env.now, 9))

    for k, (at, demand) in enumerate(phases):
        env.process(phase(k, at, demand))
    env.run()
    return out


def test_the_gils_forced_switch_is_timed_from_the_waiters_wait() -> None:
    # A 20 ms phase takes the GIL at 0; a 1 ms phase asks for it at 3 ms. In
    # CPython the waiter waits one interval (5 ms) from its own request, then
    # asks the holder to drop: it runs 8..9 ms, and the holder ends at 21 ms.
    # A timer from the holder's take would have handed over at 5 ms.
    long, short = _gil_trace([(0.0, 0.020), (0.003, 0.001)])
    assert short == (0.008, 0.009)
    assert long == (0.0, 0.021)


def test_a_waiter_whose_wait_spans_a_hand_off_waits_again() -> None:
    # A 2 ms phase holds the GIL from 0; a 20 ms phase waits from 0.5 ms and a
    # 1 ms one from 1 ms. At 2 ms the GIL passes to the long phase (the
    # oldest waiter). The short one's timed wait (1..6 ms) spans that switch,
    # so at 6 ms it waits a whole interval again: it runs 11..12 ms, not at
    # the long phase's 7 ms.
    first, long, short = _gil_trace([(0.0, 0.002), (0.0005, 0.020), (0.001, 0.001)])
    assert first == (0.0, 0.002)
    assert short == (0.011, 0.012)
    assert long[1] == pytest.approx(0.023)


def test_a_phase_within_the_interval_is_never_forced_off() -> None:
    # 4 ms of CPU, a waiter from 0.5 ms: no timed wait ends before it does.
    hold, waiter = _gil_trace([(0.0, 0.004), (0.0005, 0.001)])
    assert hold == (0.0, 0.004) and waiter == (0.004, 0.005)


def _kernel_peak(model: str, workload: Workload, platform: Platform, arch: Architecture) -> float:
    s = simulate(model, workload, platform, arch, duration=2.0, warmup=0.5, replications=1,
                 seed=1).summary  # fmt: skip
    assert s.memory_mib.kernel_peak_exact is not None
    return s.memory_mib.kernel_peak_exact


def test_a_child_per_connection_holds_its_own_kernel_memory() -> None:
    # 20 persistent connections hold 20 children all run: each is priced at
    # child_kernel_kib instead of fork_kernel_kib, 50 KiB less.
    platform = Platform(name="p", fork_kernel_kib=238.0)
    w = Workload(connections=20, rate=200.0, cpu=Fixed(0.0005), io=Fixed(0.002), calls=1)
    arch = Architecture()
    base = _kernel_peak("process-per-connection", w, platform, arch)
    child = _kernel_peak("process-per-connection", w, platform.with_(child_kernel_kib=188.0), arch)
    assert base - child == pytest.approx(20 * 50 / 1024, rel=1e-9)
    # Short connections: a child per request in flight, each fork interval
    # priced at the child's cost: the peak falls, by at most 50 KiB for each
    # child that can be alive at once.
    short = w.with_(requests_per_connection=1, connections=2000, rate=50.0)
    s_base = _kernel_peak("process-per-connection", short, platform, arch)
    s_child = _kernel_peak(
        "process-per-connection", short, platform.with_(child_kernel_kib=188.0), arch
    )
    threads = simulate("process-per-connection", short, platform, arch, duration=2.0,
                       warmup=0.5, replications=1, seed=1).summary.threads.peak_exact  # fmt: skip
    assert threads is not None
    assert 0 < (s_base - s_child) * 1024 <= 50 * threads + 1e-6
    # Pre-forked copies are not children per connection: unchanged.
    loop = Workload(connections=50, rate=100.0, cpu=Fixed(0.0005), io=Fixed(0.002), calls=1)
    copies = Architecture(workers=4, processes=2)
    assert _kernel_peak("reactor-pool", loop, platform, copies) == _kernel_peak(
        "reactor-pool", loop, platform.with_(child_kernel_kib=188.0), copies
    )


def test_the_planner_counts_a_childs_own_kernel_memory() -> None:
    from simlab.footprint import Units  # noqa: PLC0415 - only this test

    platform = Platform(name="p", fork_kernel_kib=238.0, child_kernel_kib=188.0)
    units = Units(fork=10, thread=11, child=10)
    plain = Units(fork=10, thread=11)
    gap = plain.footprint(platform).kernel_kib - units.footprint(platform).kernel_kib
    assert gap == pytest.approx(500.0)
    # 0 means a child costs what a fork does.
    assert units.footprint(platform.with_(child_kernel_kib=0.0)) == plain.footprint(platform)


def test_child_kernel_kib_must_hold_its_thread() -> None:
    with pytest.raises(ValueError, match="child_kernel_kib"):
        Platform(thread_kernel_kib=26.0, child_kernel_kib=10.0)


def test_every_fork_pays_its_parents_page_tables() -> None:
    # fork_kernel_per_mib: a fork costs fork_kernel_kib + per_mib * process_kib
    # / 1024. Two pre-forked copies of a parent 64 MiB larger hold 2 * 64 * 2
    # KiB more kernel memory; 20 children per connection, 20 * 64 * 2 more.
    law = Platform(name="p", fork_kernel_kib=150.0, fork_kernel_per_mib=2.0)
    big = law.with_(process_kib=law.process_kib + 64 * 1024)
    loop = Workload(connections=50, rate=100.0, cpu=Fixed(0.0005), io=Fixed(0.002), calls=1)
    copies = Architecture(workers=4, processes=2)
    small_k = _kernel_peak("reactor-pool", loop, law, copies)
    assert _kernel_peak("reactor-pool", loop, big, copies) - small_k == pytest.approx(
        2 * 64 * 2 / 1024, rel=1e-9
    )
    w = Workload(connections=20, rate=200.0, cpu=Fixed(0.0005), io=Fixed(0.002), calls=1)
    one = Architecture()
    gap = _kernel_peak("process-per-connection", w, big, one) - _kernel_peak(
        "process-per-connection", w, law, one
    )
    assert gap == pytest.approx(20 * 64 * 2 / 1024, rel=1e-9)
    # 0 (every preset): a fork costs fork_kernel_kib whatever its parent's size.
    flat = Platform(name="p", fork_kernel_kib=150.0)
    assert _kernel_peak("reactor-pool", loop, flat, copies) == _kernel_peak(
        "reactor-pool", loop, flat.with_(process_kib=flat.process_kib * 4), copies
    )
    # A child per connection priced apart (child_kernel_kib) ignores the law.
    fixed = law.with_(child_kernel_kib=188.0)
    assert _kernel_peak("process-per-connection", w, fixed, one) == _kernel_peak(
        "process-per-connection", w, fixed.with_(process_kib=law.process_kib + 64 * 1024), one
    )


def test_a_connection_in_the_backlog_holds_no_memory_of_the_server() -> None:
    # An iterative server past saturation (rho 2.5) with one request per
    # connection: most connections wait unaccepted in the listen backlog, but
    # only the one being served holds the server's memory, user or kernel.
    w = Workload(connections=500, rate=500.0, cpu=Fixed(0.002), io=Fixed(0.003), calls=1,
                 requests_per_connection=1)  # fmt: skip
    platform = BARE.with_(connection_kib=100.0, connection_kernel_kib=50.0)
    arch = Architecture()
    r = simulate("iterative", w, platform, arch, duration=2.0, warmup=0.5, replications=1, seed=1)
    s = r.summary
    assert s.queue_delay_ms.mean > 100  # many wait: the case tests something
    bare = simulate("iterative", w, BARE, arch, duration=2.0, warmup=0.5, replications=1,
                    seed=1).summary  # fmt: skip
    assert s.memory_mib.kernel_peak_exact is not None
    assert bare.memory_mib.kernel_peak_exact is not None
    extra = (s.memory_mib.kernel_peak_exact - bare.memory_mib.kernel_peak_exact) * 1024
    # The one accepted connection and the thread's own backend connection,
    # each 50 KiB where BARE charges connection_kernel_kib: tens more would
    # count if the backlog's connections were charged from their arrival.
    per = 50.0 - BARE.connection_kernel_kib
    assert extra == pytest.approx(2 * per)
    # Persistent connections beyond the server's one thread wait all run.
    persistent = w.with_(requests_per_connection=None, connections=5, rate=20.0)
    p = simulate("iterative", persistent, platform, arch, duration=2.0, warmup=0.5,
                 replications=1, seed=1).summary  # fmt: skip
    q = simulate("iterative", persistent, BARE, arch, duration=2.0, warmup=0.5,
                 replications=1, seed=1).summary  # fmt: skip
    assert p.memory_mib.kernel_peak_exact is not None
    assert q.memory_mib.kernel_peak_exact is not None
    assert (p.memory_mib.kernel_peak_exact - q.memory_mib.kernel_peak_exact) * 1024 == (
        pytest.approx(2 * per)
    )
