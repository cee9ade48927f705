"""Exact tier for the overload options: replayed traces with fixed service, whose
answers are worked out by hand. Times are in seconds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import simlab
from simlab import Architecture, Trace, Workload
from simlab.distributions import Fixed
from simlab.overload import Backend, Clients, Limits, Mix
from simlab.simulation import Result

pytestmark = pytest.mark.exact

IDEAL = simlab.load_platform("ideal")


def replay(
    model: str,
    times: list[float],
    *,
    conns: list[int] | None = None,
    arch: Architecture | None = None,
    cpu: float = 0.0,
    io: float = 1.0,
    calls: int = 1,
    k: int | None = 1,
    duration: float = 100.0,
    **overload: Any,
) -> Result:
    """One replication of a trace (each request on its own client by default)."""
    conns = conns if conns is not None else list(range(len(times)))
    w = Workload(
        connections=max(conns) + 1,
        trace=Trace(tuple(times), tuple(conns)),
        cpu=Fixed(cpu),
        io=Fixed(io),
        calls=calls,
        requests_per_connection=k,
        **overload,
    )
    return simlab.simulate(
        model, w, IDEAL, arch or Architecture(workers=1), duration=duration, warmup=0.0,
        replications=1,
    )  # fmt: skip


def col(r: Result, name: str) -> list[Any]:
    values = r.requests.sort_values("request")[name].tolist()
    return [round(v, 9) if isinstance(v, float) else v for v in values]


def test_a_client_gives_up_and_the_server_does_the_work_anyway() -> None:
    # One worker, 1 s each. Request 1 waits from 0.1 to 1 and ends at 2, but its
    # client gave up at 0.1 + 1.5 = 1.6: answered, wasted, not goodput.
    r = replay("thread-pool", [0.0, 0.1], clients=Clients(timeout=1.5))
    assert col(r, "end") == [1.0, 2.0]
    assert col(r, "gave_up")[1] == 1.6 and np.isnan(col(r, "gave_up")[0])
    o = r.summary.overload
    assert o is not None
    assert r.summary.completed == 1 and r.summary.incomplete == 1
    assert o.timeouts == 1 and o.wasted_share == 0.5 and o.users_served == 0.5


def test_a_retry_goes_out_on_a_new_connection_at_once() -> None:
    # The retry (backoff 0) leaves at 1.6 on a new connection, waits for the
    # worker (busy with the abandoned one until 2) and ends at 3: 1.4 s < 1.5.
    r = replay("thread-pool", [0.0, 0.1], clients=Clients(timeout=1.5, retries=1, backoff=0.0))
    assert col(r, "arrival") == [0.0, 0.1, 1.6]
    assert col(r, "attempt") == [0, 0, 1] and col(r, "origin") == [0, 1, 1]
    assert col(r, "end") == [1.0, 2.0, 3.0]
    o = r.summary.overload
    assert o is not None and o.users_served == 1.0 and o.retries == 1


def test_a_timed_out_request_still_queued_at_its_client_is_withdrawn() -> None:
    # A thread owns the persistent connection: request 1 waits behind request 0
    # on the same client (one at a time) until its timeout at 0.5: never sent.
    # Request 0 times out too, but its thread finishes it (wasted).
    r = replay("thread-pool", [0.0, 0.0], conns=[0, 0], k=None, clients=Clients(timeout=0.5))
    assert col(r, "outcome") == ["completed", "dropped"]
    assert col(r, "reason") == [0, 5]  # abandoned
    assert col(r, "end") == [1.0, 0.5]
    assert r.summary.dropped == 0 and r.summary.incomplete == 2


def test_a_timed_out_client_takes_what_it_still_had_to_send_to_a_new_connection() -> None:
    # On a loop, request 0's timeout at 0.5 moves request 1 (queued behind it on
    # the same client) to a new connection, where it is sent at once and served
    # beside the abandoned one: 0.5-1.5 (its client gave up at 0.8).
    r = replay("async", [0.0, 0.3], conns=[0, 0], k=None, clients=Clients(timeout=0.5))
    assert col(r, "end") == [1.0, 1.5]
    assert col(r, "sent") == [0.0, 0.5]
    assert col(r, "gave_up") == [0.5, 0.8]


def test_the_concurrency_limit_answers_503_at_once() -> None:
    r = replay(
        "reactor-pool", [0.0, 0.0, 0.0], arch=Architecture(workers=1, limits=Limits(max_inflight=2))
    )
    assert col(r, "outcome") == ["completed", "completed", "dropped"]
    assert col(r, "end") == [1.0, 2.0, 0.0]
    o = r.summary.overload
    assert o is not None and o.dropped_by == {"shed": 1}


def test_a_request_past_the_queue_deadline_is_dropped_unserved() -> None:
    # The second waits from 0.1 to 1 for the only worker: 0.9 > 0.5.
    r = replay(
        "thread-pool",
        [0.0, 0.1, 1.2],
        arch=Architecture(workers=1, limits=Limits(queue_deadline=0.5)),
    )
    assert col(r, "outcome") == ["completed", "dropped", "completed"]
    assert col(r, "end") == [1.0, 1.0, 2.2]
    assert np.isnan(col(r, "start")[1])


def test_a_full_backlog_drops_the_syn_and_the_client_retransmits() -> None:
    # Backlog 0: the second's SYN is dropped at 0.2 and sent again at 1.2, when
    # the worker is free (served 1.2-2.2). The third's at 0.3 and again at 1.3
    # (busy again: dropped), then at 0.3 + 1 + 2 = 3.3: served 3.3-4.3.
    r = replay(
        "thread-pool",
        [0.0, 0.2, 0.3],
        arch=Architecture(workers=1, backlog=0),
        clients=Clients(syn_retries=2),
    )
    assert col(r, "end") == [1.0, 2.2, 4.3]
    # With one retransmit only, the third gives up 1 + 2 s after its first SYN.
    r = replay(
        "thread-pool",
        [0.0, 0.2, 0.3],
        arch=Architecture(workers=1, backlog=0),
        clients=Clients(syn_retries=1),
    )
    assert col(r, "outcome") == ["completed", "completed", "dropped"]
    assert col(r, "end")[2] == 3.3 and col(r, "reason")[2] == 4  # connect failed


def test_backend_calls_beyond_the_pool_wait_in_turn() -> None:
    r = replay("async", [0.0, 0.0, 0.0], backend=Backend(pool=2))
    assert col(r, "end") == [1.0, 1.0, 2.0]


def test_a_fan_out_deadline_keeps_the_answers_it_has() -> None:
    # Three sequential 1 s calls, a 2.5 s deadline: two answers, cut at 2.5.
    r = replay("async", [0.0], calls=3, backend=Backend(deadline=2.5))
    assert col(r, "end") == [2.5] and col(r, "bids") == [pytest.approx(2 / 3)]
    o = r.summary.overload
    assert o is not None and o.bids_share == pytest.approx(2 / 3)


def test_a_hedged_call_takes_the_first_answer() -> None:
    # The hedge goes at 0.5 and, with the same fixed latency, answers at 1.5:
    # the first call's answer at 1 wins; one hedged call was sent.
    r = replay("async", [0.0], backend=Backend(hedge=0.5))
    assert col(r, "end") == [1.0]
    o = r.summary.overload
    assert o is not None and o.hedged_calls_per_request == 1.0


def test_a_blocking_call_holds_the_loop_unless_offloaded() -> None:
    mix = Mix(blocking_share=1.0, blocking=1.0)
    # Each blocks the loop for 1 s, then its 1 s call: 0-1-2, and 1-2-3.
    r = replay("async", [0.0, 0.0], mix=mix)
    assert col(r, "end") == [2.0, 3.0]
    # Offloaded to 2 threads, both block at once.
    r = replay(
        "async", [0.0, 0.0], mix=mix, arch=Architecture(workers=2, limits=Limits(offload=True))
    )
    assert col(r, "end") == [2.0, 2.0]
    # On a thread pool it blocks only its own thread.
    r = replay("reactor-pool", [0.0, 0.0], mix=mix, arch=Architecture(workers=2))
    assert col(r, "end") == [2.0, 2.0]


def test_heavy_requests_take_their_cpu() -> None:
    r = replay("async", [0.0, 0.0], io=0.0, calls=0, mix=Mix(heavy_share=1.0, heavy_cpu=0.5))
    assert col(r, "end") == [0.5, 1.0]


def test_the_timeline_counts_each_second() -> None:
    r = replay("thread-pool", [0.0, 0.1], clients=Clients(timeout=1.5), duration=3.0)
    frame = pd.DataFrame([w.to_dict() for w in r.summary.timeline or ()])
    assert frame["t_s"].tolist() == [0.0, 1.0, 2.0]
    assert frame["offered_rps"].tolist() == [2.0, 0.0, 0.0]
    assert frame["goodput_rps"].tolist() == [0.0, 1.0, 0.0]  # answered at 1
    assert frame["throughput_rps"].tolist() == [0.0, 1.0, 1.0]  # and the wasted one at 2
    assert frame["timeouts_rps"].tolist() == [0.0, 1.0, 0.0]  # gave up at 1.6
