"""Exact tier: replayed traces with fixed service, whose answers are worked out by hand.

Each test states the timeline it expects; times are in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest

import simlab
from simlab import Architecture
from simlab.distributions import Fixed
from simlab.params import Trace, Workload
from simlab.streams import deal
from tests.conftest import run_trace

pytestmark = pytest.mark.exact

IDEAL = simlab.load_platform("ideal")


def ends(df):
    return df["end"].round(9).tolist()


def test_iterative_serves_one_connection_at_a_time():
    # One thread, a new connection per request, 1 s each: 0-1, then 1-2, then 2-3.
    df = run_trace("iterative", [0.0, 0.5, 0.6], [0, 1, 2], requests_per_connection=1)
    assert ends(df) == [1.0, 2.0, 3.0]
    assert df["wait"].round(9).tolist() == [0.0, 0.5, 1.4]
    assert set(df["worker"]) == {0}


def test_iterative_copies_share_one_listen_queue():
    # Two copies, a new connection per request, 1 s each, arriving in pairs
    # 0.1 s apart. Each copy accepts only while free, so the second of a pair
    # goes to the idle copy and nobody waits: dealt to copies in turn, the
    # fifth (3.1) would land on the copy still serving the fourth and wait
    # for it until 4.0.
    df = run_trace(
        "iterative",
        [0.0, 1.5, 1.6, 3.0, 3.1],
        [0, 1, 2, 3, 4],
        arch=Architecture(processes=2),
        requests_per_connection=1,
    )
    assert ends(df) == [1.0, 2.5, 2.6, 4.0, 4.1]
    assert df["wait"].round(9).tolist() == [0.0] * 5
    assert df.loc[1, "process"] != df.loc[2, "process"]
    assert df.loc[3, "process"] != df.loc[4, "process"]


def test_iterative_persistent_starves_other_clients_and_refuses_past_backlog():
    # Connection 0 owns the only thread for ever; connection 1 waits in a
    # backlog of 1 for ever; connection 2 is refused.
    df = run_trace("iterative", [0.0, 0.1, 0.2, 1.5], [0, 1, 2, 0], arch=Architecture(backlog=1))
    assert df["outcome"].tolist() == ["completed", "pending", "dropped", "completed"]
    assert df.loc[3, "end"] == pytest.approx(2.5)


def test_thread_pool_queues_the_third_connection():
    df = run_trace(
        "thread-pool",
        [0.0, 0.0, 0.0],
        [0, 1, 2],
        arch=Architecture(workers=2),
        requests_per_connection=1,
    )
    assert ends(df) == [1.0, 1.0, 2.0]
    assert sorted(df["worker"].tolist()) == [0, 0, 1]


def test_thread_pool_keep_alive_holds_workers_idle():
    # k = 2 requests per connection and two workers. Connection 1 sends once
    # and its worker then sits in recv for ever. Connection 0's second
    # request at t=3 closes it at 4, which is the first moment connection 2
    # gets a worker: it sent at 0.1 and finishes at 5.
    df = run_trace(
        "thread-pool",
        [0.0, 0.0, 0.1, 3.0],
        [0, 1, 2, 0],
        arch=Architecture(workers=2),
        requests_per_connection=2,
    )
    assert ends(df) == [1.0, 1.0, 5.0, 4.0]
    assert df.loc[2, "wait"] == pytest.approx(3.9)


def test_thread_per_connection_pays_spawn_serially_and_overheads():
    # Spawning costs 1 ms on the single accepting thread, so the second
    # connection's thread starts at 2 ms. Each request then pays parse (0.1 ms)
    # and two wake-ups (request + one call) of 10 us, then 1 s of I/O.
    platform = IDEAL.with_(spawn_us=1000.0, parse_us=100.0, context_switch_us=10.0)
    df = run_trace(
        "thread-per-connection",
        [0.0, 0.0],
        [0, 1],
        platform=platform,
        requests_per_connection=1,
    )
    cpu = 100e-6 + 2 * 10e-6
    assert df["end"].tolist() == pytest.approx([0.001 + cpu + 1.0, 0.002 + cpu + 1.0], abs=1e-12)
    assert df["service"].tolist() == pytest.approx([cpu + 1.0] * 2, abs=1e-12)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        # One GIL in the process: three 0.1 s CPU phases run one after another.
        ("thread-per-connection", [0.1, 0.2, 0.3]),
        # Each forked child has its own GIL: all three run at once.
        ("process-per-connection", [0.1, 0.1, 0.1]),
    ],
)
def test_gil_serialises_threads_but_not_processes(model, expected):
    platform = IDEAL.with_(gil=True)
    df = run_trace(model, [0.0, 0.0, 0.0], [0, 1, 2], platform=platform, cpu=0.1, io=0.0, calls=0)
    assert ends(df) == expected


def test_cores_bound_parallel_cpu():
    platform = IDEAL.with_(cores=2)
    df = run_trace(
        "thread-per-connection",
        [0.0, 0.0, 0.0],
        [0, 1, 2],
        platform=platform,
        cpu=0.1,
        io=0.0,
        calls=0,
    )
    assert ends(df) == [0.1, 0.1, 0.2]


def test_switch_contention_grows_with_runnable_threads():
    # Three threads want one core, sent 1 ms apart. The first starts alone:
    # its switch costs cs. When the second starts, the third is runnable behind
    # it: cs * (1 + 0.5 * 1) = 1.5 cs. The third starts alone again: cs.
    cs = 1e-3
    platform = IDEAL.with_(cores=1, context_switch_us=cs * 1e6, switch_contention=0.5)
    df = run_trace(
        "thread-per-connection",
        [0.0, 0.001, 0.002],
        [0, 1, 2],
        platform=platform,
        cpu=0.1,
        io=0.0,
        calls=0,
    )
    first = 0.1 + cs
    second = first + 0.1 + 1.5 * cs
    third = second + 0.1 + cs
    assert df["end"].tolist() == pytest.approx([first, second, third], abs=1e-12)


def test_reactor_pool_loop_then_worker():
    # The loop parses and dispatches each request in 10 ms, one at a time;
    # a single worker then holds each request for its 1 s call. The second
    # request waits 10 ms for the loop, then 0.99 s for the worker.
    platform = IDEAL.with_(parse_us=6000.0, dispatch_us=4000.0)
    df = run_trace(
        "reactor-pool", [0.0, 0.0], [0, 1], platform=platform, arch=Architecture(workers=1)
    )
    assert df["start"].tolist() == pytest.approx([0.01, 1.01])
    assert df["end"].tolist() == pytest.approx([1.01, 2.01])
    assert df["wait"].tolist() == pytest.approx([0.0, 1.0])


def test_reactor_pool_full_work_queue_drops():
    df = run_trace(
        "reactor-pool", [0.0, 0.0, 0.0], [0, 1, 2], arch=Architecture(workers=1, backlog=1)
    )
    assert df["outcome"].tolist() == ["completed", "completed", "dropped"]
    assert ends(df) == [1.0, 2.0, 0.0]


def test_async_loop_runs_cpu_only_and_overlaps_io():
    # 0.1 s of CPU each on one loop, then 1 s of I/O that holds nothing.
    df = run_trace("async", [0.0, 0.0, 0.0], [0, 1, 2], cpu=0.1, io=1.0)
    assert df["start"].round(9).tolist() == [0.0, 0.1, 0.2]
    assert ends(df) == [1.1, 1.2, 1.3]


def test_async_in_flight_bound_drops():
    # At most two requests in flight per loop (uvicorn's --limit-concurrency).
    df = run_trace(
        "async", [0.0, 0.0, 0.0, 1.5], [0, 1, 2, 3], cpu=0.1, io=1.0, arch=Architecture(backlog=2)
    )
    assert df["outcome"].tolist() == ["completed", "completed", "dropped", "completed"]


def test_parallel_fanout_waits_for_the_slowest_call_only():
    df = run_trace("async", [0.0], [0], io=0.1, calls=60)
    assert ends(df) == [6.0]
    workload = simlab.Workload(
        connections=1,
        trace=simlab.Trace((0.0,), (0,)),
        cpu=simlab.Fixed(0.0),
        io=simlab.Fixed(0.1),
        calls=60,
        fanout="parallel",
    )
    r = simlab.simulate("async", workload, IDEAL, duration=10, warmup=0, replications=1)
    assert r.requests["end"].tolist() == pytest.approx([0.1])


def test_a_client_sends_one_request_at_a_time():
    # The second request on connection 0 waits at the client for the first answer.
    for model in simlab.MODELS:
        df = run_trace(model, [0.0, 0.05], [0, 0], requests_per_connection=None)
        assert ends(df) == [1.0, 2.0], model
        assert df.loc[1, "wait"] == pytest.approx(0.95), model


def test_closed_loop_thinks_between_answers():
    workload = simlab.Workload(
        connections=1, think=simlab.Fixed(1.0), cpu=simlab.Fixed(0.0), io=simlab.Fixed(0.5)
    )
    r = simlab.simulate(
        "thread-per-connection", workload, IDEAL, duration=6.0, warmup=0, replications=1
    )
    assert r.requests["arrival"].tolist() == pytest.approx([1.0, 2.5, 4.0, 5.5])


def test_memory_and_threads_are_exact_levels():
    # thread-per-connection, 10 persistent idle connections, one request of 1 s:
    # threads = 10 + 1 acceptor; resident adds one task while it runs.
    p = IDEAL
    df_result = simlab.simulate(
        "thread-per-connection",
        simlab.Workload(
            connections=10,
            trace=simlab.Trace((1.0,), (3,)),
            cpu=simlab.Fixed(0.0),
            io=simlab.Fixed(1.0),
        ),
        p,
        duration=4.0,
        warmup=0.0,
        replications=1,
    )
    s = df_result.summary
    base_kib = p.process_kib + 11 * p.thread_kib + 10 * p.connection_kib
    # The thread that served opened its own backend connection: one more socket.
    kernel_kib = 11 * p.thread_kernel_kib + 11 * p.connection_kernel_kib
    assert s.threads.peak == 11
    assert s.memory_mib.user_peak == pytest.approx((base_kib + p.task_kib) / 1024)
    assert s.memory_mib.user_mean == pytest.approx((base_kib + p.task_kib / 4) / 1024)
    assert s.memory_mib.kernel_peak == pytest.approx(kernel_kib / 1024)
    assert s.memory_mib.peak == pytest.approx((base_kib + p.task_kib + kernel_kib) / 1024)
    assert s.memory_mib.virtual_peak == pytest.approx(11 * p.stack_kib / 1024)
    assert s.threads.busy_mean == pytest.approx(0.25)


def test_short_connections_spawn_and_retire_threads():
    # k = 1: each request's thread lives from accept to answer.
    r = simlab.simulate(
        "process-per-connection",
        simlab.Workload(
            connections=5,
            trace=simlab.Trace((0.0, 0.0, 2.0), (0, 1, 2)),
            cpu=simlab.Fixed(0.0),
            io=simlab.Fixed(1.0),
            requests_per_connection=1,
        ),
        IDEAL,
        duration=4.0,
        warmup=0.0,
        replications=1,
    )
    s = r.summary
    assert s.threads.peak == 3  # acceptor + two children
    assert s.threads.mean == pytest.approx(1 + 3 / 4)
    # A child is its fork_kib (its one thread included), its connection and the task.
    fork = IDEAL.fork_kib + IDEAL.connection_kib + IDEAL.task_kib
    assert s.memory_mib.user_peak == pytest.approx(
        (IDEAL.process_kib + IDEAL.thread_kib + 2 * fork) / 1024
    )
    # Each child: its kernel share, its client socket and its backend socket.
    kernel = IDEAL.thread_kernel_kib + 2 * (IDEAL.fork_kernel_kib + 2 * IDEAL.connection_kernel_kib)
    assert s.memory_mib.kernel_peak == pytest.approx(kernel / 1024)
    assert np.all(r.requests["outcome"] == "completed")


def _deal(conns: int, processes: int) -> list[int]:
    """Where simulate(seed=1, replications=1) deals each connection."""
    salt = int(np.random.SeedSequence(1).spawn(1)[0].generate_state(1, np.uint64)[0])
    return deal(np.arange(conns), processes, salt).tolist()


def test_preforked_holders_own_the_first_connections_dealt_to_them():
    # Two processes with one worker each. Each process's worker owns the first
    # connection dealt to it, for ever; later ones on that process wait.
    deal = _deal(4, 2)
    first = {p: deal.index(p) for p in set(deal)}
    df = run_trace(
        "thread-pool",
        [0.0, 0.0, 0.0, 0.0],
        [0, 1, 2, 3],
        arch=Architecture(workers=1, processes=2),
    )
    expected = ["completed" if first[p] == c else "pending" for c, p in enumerate(deal)]
    assert df["outcome"].tolist() == expected
    served = df[df["outcome"] == "completed"]
    assert served["process"].tolist() == [deal[c] for c in served.index]


def test_preforked_pools_take_short_connections_as_dealt():
    # k = 1, two processes of one worker, 1 s requests sent 0.1 s apart. A
    # request whose connection lands on a busy process waits for it even if
    # the other process is idle.
    deal = _deal(3, 2)
    df = run_trace(
        "thread-pool",
        [0.0, 0.1, 0.2],
        [0, 1, 2],
        arch=Architecture(workers=1, processes=2),
        requests_per_connection=1,
    )
    assert df["process"].tolist() == deal
    free = {0: 0.0, 1: 0.0}
    expected = []
    for t, p in zip([0.0, 0.1, 0.2], deal, strict=True):
        free[p] = max(free[p], t) + 1.0
        expected.append(round(free[p], 9))
    assert ends(df) == expected


def test_under_a_gil_a_thread_waits_for_it_after_each_backend_call():
    # Two requests of 200 ms CPU, then one 50 ms call whose answer takes 10 ms
    # of CPU to read (call_us); the second is sent at 10 ms. Under a GIL:
    # A runs 0-200 ms; B waits, runs 200-400; A's answer arrives at 250 but A
    # cannot read it until B lets the GIL go: 400-410. B's arrives at 450: 460.
    p = IDEAL.with_(gil=True, call_us=10_000.0)
    w = simlab.Workload(
        connections=2,
        trace=simlab.Trace((0.0, 0.01), (0, 1)),
        cpu=simlab.Fixed(0.2),
        io=simlab.Fixed(0.05),
        calls=1,
    )
    r = simlab.simulate("thread-per-connection", w, p, duration=2.0, warmup=0.0, replications=1)
    assert r.requests["end"].tolist() == pytest.approx([0.41, 0.46])
    # Without a GIL (and cores to spare) nobody waits: 200 + 10 + 50 ms each.
    r = simlab.simulate(
        "thread-per-connection",
        w,
        IDEAL.with_(call_us=10_000.0),
        duration=2.0,
        warmup=0.0,
        replications=1,
    )
    assert r.requests["end"].tolist() == pytest.approx([0.26, 0.27])


def test_waking_an_idle_process_costs_only_when_it_was_idle():
    # async, one loop, 100 ms of CPU per request and a 10 ms wake-up cost.
    # Sent at 0 and 1 s, each finds the loop asleep: 110 ms each. Sent at 2.0
    # and 2.05 s, the second finds the loop busy and pays no wake-up.
    p = IDEAL.with_(wake_us=10_000.0)
    df = run_trace(
        "async", [0.0, 1.0, 2.0, 2.05], [0, 1, 2, 3], platform=p, cpu=0.1, io=0.0, calls=0
    )
    assert df["end"].tolist() == pytest.approx([0.11, 1.11, 2.11, 2.21])


def test_two_tier_front_hop_then_back_pool():
    # The front parses in 10 ms, one request at a time; a per-request hop is a
    # connect and a request, 5 ms each, and 5 ms back. One back thread holds
    # each request for its 1 s call. The second request waits 10 ms for the
    # front, then 0.99 s for the back thread.
    platform = IDEAL.with_(front_us=10_000.0, hop_latency_us=5_000.0)
    df = run_trace("two-tier", [0.0, 0.0], [0, 1], platform=platform, arch=Architecture(workers=1))
    assert df["start"].tolist() == pytest.approx([0.02, 1.02])
    assert df["end"].tolist() == pytest.approx([1.025, 2.025])
    assert df["wait"].tolist() == pytest.approx([0.0, 1.0])


def test_two_tier_kept_alive_hop_skips_the_connect():
    platform = IDEAL.with_(hop_latency_us=5_000.0)
    df = run_trace("two-tier", [0.0], [0], platform=platform, arch=Architecture(hop="kept-alive"))
    assert ends(df) == [1.01]


def test_two_tier_full_listen_queue_is_a_502():
    # P x T = 2 x 1 back threads and a listen queue of one: the fourth
    # request at once finds it full and is dropped.
    df = run_trace(
        "two-tier",
        [0.0, 0.0, 0.0, 0.0],
        [0, 1, 2, 3],
        arch=Architecture(workers=1, processes=2, backlog=1),
    )
    assert df["outcome"].tolist() == ["completed", "completed", "completed", "dropped"]
    assert ends(df) == [1.0, 1.0, 2.0, 0.0]


def _slow(model, send, recv, response_kib=4.0, **arch):
    workload = Workload(
        connections=2,
        trace=Trace((0.0, 0.0), (0, 1)),
        cpu=Fixed(0.0),
        io=Fixed(1.0),
        client_send=Fixed(send),
        client_recv=Fixed(recv),
        response_kib=response_kib,
        requests_per_connection=1,
    )
    platform = IDEAL.with_(socket_buffer_kib=24.0)
    result = simlab.simulate(
        model, workload, platform, Architecture(**arch), duration=100.0, warmup=0.0, replications=1
    )
    return result.requests.set_index("request")


@pytest.mark.parametrize(("send", "recv"), [(0.5, 0.0), (0.0, 0.5), (0.5, 0.5)])
def test_a_slow_client_holds_a_blocking_worker(send, recv):
    # One worker reads the request as it trickles in and writes the answer as
    # the client reads it. The 48 KiB answer is twice what the socket buffers
    # take (24 KiB): the writer is held for the first half of the read and the
    # buffers carry the rest. The second client started sending when it
    # connected, so its request is in the kernel's buffer by the time the
    # worker accepts it: it waits for the first one's hold only.
    held = send + 1.0 + recv / 2
    df = _slow("thread-pool", send, recv, response_kib=48.0, workers=1)
    assert ends(df) == pytest.approx([send + 1.0 + recv, held + 1.0 + recv])
    assert df["wait"].tolist() == pytest.approx([0.0, held - send])


def test_a_small_answer_never_blocks_its_writer():
    # 4 KiB fits the socket buffers: a slow reader holds no thread.
    df = _slow("thread-pool", 0.0, 0.5, workers=1)
    assert ends(df) == pytest.approx([1.5, 2.5])
    assert df["wait"].tolist() == pytest.approx([0.0, 1.0])


@pytest.mark.parametrize("model", ["reactor-pool", "two-tier"])
@pytest.mark.parametrize(("send", "recv"), [(0.5, 0.0), (0.0, 0.5), (0.5, 0.5)])
def test_a_loop_absorbs_a_slow_client(model, send, recv):
    # Both requests arrive whole at `send`; the one worker holds each for its
    # 1 s call only, and the loop (or front) writes the answer out meanwhile.
    df = _slow(model, send, recv, workers=1)
    assert df["start"].tolist() == pytest.approx([send, send + 1.0])
    assert ends(df) == pytest.approx([send + 1.0 + recv, send + 2.0 + recv])
    assert df["wait"].tolist() == pytest.approx([0.0, 1.0])


def test_slow_clients_hold_threads_or_only_buffers():
    # Clients at 10 req/s, each taking 1 s to send and 1 s to read: a blocking
    # pool keeps its workers busy through the transfers, a two-tier back only
    # for lam x 50 ms; the front holds the bytes in buffers instead.
    w = Workload(
        connections=100_000,
        rate=10.0,
        cpu=Fixed(0.0),
        io=Fixed(0.05),
        client_send=Fixed(1.0),
        client_recv=Fixed(1.0),
        request_kib=64.0,
        response_kib=64.0,
        requests_per_connection=1,
    )
    kw = {"duration": 200.0, "warmup": 10.0, "replications": 2, "seed": 3}
    ideal = IDEAL.with_(socket_buffer_kib=24.0)
    pool = simlab.simulate("thread-pool", w, ideal, Architecture(workers=200), **kw)
    two = simlab.simulate("two-tier", w, ideal, Architecture(workers=1, processes=4), **kw)
    plain = simlab.simulate(
        "two-tier",
        w.with_(client_send=Fixed(0.0), client_recv=Fixed(0.0)),
        ideal,
        Architecture(workers=1, processes=4),
        **kw,
    )
    busy_pool = pool.summary.threads.busy_mean
    busy_two = two.summary.threads.busy_mean
    # Little's law: busy = lam x hold, within the replications' noise (a few %);
    # the 64 KiB answer holds the writer for the part beyond the 24 KiB of
    # socket buffers, 40/64 of the read.
    assert busy_pool == pytest.approx(10.0 * (1.0 + 0.05 + 40 / 64), rel=0.1)
    assert busy_two == pytest.approx(10.0 * 0.05, rel=0.1)
    # 2 x 64 KiB in transfer for ~ lam x 1 s each: ~ 1.25 MiB more kernel memory.
    extra = two.summary.memory_mib.mean - plain.summary.memory_mib.mean
    assert extra == pytest.approx(10.0 * 2 * 64 / 1024, rel=0.15)
