"""The fast engine's inner loop, compiled with numba.

One pass over the requests in the order the server sees them (send time, or
the previous answer's time for a client that was still waiting), with:

- per process, a stack of free servers (the most recently freed on top, as
  ``Pool`` hands them out) and a binary heap of busy ones by free time;
- per process, the time its single-threaded loop is next free (Lindley);
- per connection, the time of its latest answer and a linked list of the
  requests queued behind it (a client sends one request at a time), in
  arrays by the connection's dense id (typed dicts cost a hash and reference
  counts per request);
- a binary heap of the requests waiting for their client's previous answer,
  by (time, order).

``simlab.fast`` prepares the arrays and reads the results; this module only
holds the loop, so that its compile cache stays valid while the rest changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

__all__ = ["dense_ids", "recurse"]

# The modes of ``simlab.models.base.FastMode``, as the compiled loop sees them.
POOL_OWNS_CONNECTION, LOOP_THEN_POOL, THREAD_PER_CONNECTION, LOOP = 0, 1, 2, 3


@njit(cache=True, forceinline=True)
def _push(  # noqa: PLR0917 - a compiled helper takes its arrays positionally
    bt: Any, bo: Any, bs: Any, size: Any, p: Any, t: Any, o: Any, s: Any
) -> None:  # pragma: no cover
    k = size[p]
    size[p] = k + 1
    while k > 0:
        parent = (k - 1) >> 1
        if bt[p, parent] < t or (bt[p, parent] == t and bo[p, parent] < o):
            break
        bt[p, k], bo[p, k], bs[p, k] = bt[p, parent], bo[p, parent], bs[p, parent]
        k = parent
    bt[p, k], bo[p, k], bs[p, k] = t, o, s


@njit(cache=True, forceinline=True)
def _pop(bt: Any, bo: Any, bs: Any, size: Any, p: Any) -> Any:  # pragma: no cover
    t0, s0 = bt[p, 0], bs[p, 0]
    n = size[p] - 1
    size[p] = n
    if n > 0:
        t, o, s = bt[p, n], bo[p, n], bs[p, n]
        k = 0
        while True:
            c = 2 * k + 1
            if c >= n:
                break
            if c + 1 < n and (
                bt[p, c + 1] < bt[p, c] or (bt[p, c + 1] == bt[p, c] and bo[p, c + 1] < bo[p, c])
            ):
                c += 1
            if t < bt[p, c] or (t == bt[p, c] and o < bo[p, c]):
                break
            bt[p, k], bo[p, k], bs[p, k] = bt[p, c], bo[p, c], bs[p, c]
            k = c
        bt[p, k], bo[p, k], bs[p, k] = t, o, s
    return t0, s0


@njit(cache=True, forceinline=True)
def _ready_push(  # noqa: PLR0917 - a compiled helper takes its arrays positionally
    rt: Any, rk: Any, size: int, t: float, o: int, i: int
) -> int:  # pragma: no cover
    """Push request ``i`` at (t, o) on the heap of waiting requests; returns its size."""
    k = size
    while k > 0:
        parent = (k - 1) >> 1
        if rt[parent] < t or (rt[parent] == t and rk[parent, 0] < o):
            break
        rt[k], rk[k, 0], rk[k, 1] = rt[parent], rk[parent, 0], rk[parent, 1]
        k = parent
    rt[k], rk[k, 0], rk[k, 1] = t, o, i
    return size + 1


@njit(cache=True, forceinline=True)
def _ready_pop(rt: Any, rk: Any, size: int) -> int:  # pragma: no cover
    """Remove the root of the heap of waiting requests (read it first); returns its size."""
    n = size - 1
    if n > 0:
        t, o, i = rt[n], rk[n, 0], rk[n, 1]
        k = 0
        while True:
            c = 2 * k + 1
            if c >= n:
                break
            if c + 1 < n and (
                rt[c + 1] < rt[c] or (rt[c + 1] == rt[c] and rk[c + 1, 0] < rk[c, 0])
            ):
                c += 1
            if t < rt[c] or (t == rt[c] and o < rk[c, 0]):
                break
            rt[k], rk[k, 0], rk[k, 1] = rt[c], rk[c, 0], rk[c, 1]
            k = c
        rt[k], rk[k, 0], rk[k, 1] = t, o, i
    return n


# One compiled loop, on purpose: numba compiles it to straight machine code, and
# splitting it into helpers would pass a dozen arrays around per request.
@njit(cache=True)
def recurse(  # noqa: PLR0912, PLR0915, PLR0917 - one compiled loop takes its arrays positionally
    mode: int,
    arrival: Any,
    conn: Any,
    dense: Any,
    n_conns: int,
    own: Any,
    io: Any,
    processes: int,
    workers: int,
    by_accept: Any,
    by_conn: Any,
    switch_cost: float,
    pays_switch: bool,
    loop_cost: float,
    k_per_conn: int,
) -> tuple[Any, ...]:  # pragma: no cover - compiled; checked against the DES in tests
    n = arrival.shape[0]
    admit = np.full(n, np.nan)
    start = np.full(n, np.nan)
    end = np.full(n, np.nan)
    service = np.full(n, np.nan)
    cpu = np.zeros(n)
    worker = np.full(n, -1, np.int64)
    process = np.full(n, -1, np.int64)
    cpu_start = np.empty(2 * n)
    cpu_dur = np.empty(2 * n)
    n_cpu = 0
    conn_open = np.empty(n)
    conn_close = np.empty(n)
    n_conn = 0
    w = max(workers, 1)
    free = np.empty((processes, w), np.int64)
    top = np.zeros(processes, np.int64)
    bt = np.empty((processes, w))
    bo = np.empty((processes, w), np.int64)
    bs = np.empty((processes, w), np.int64)
    size = np.zeros(processes, np.int64)
    if workers > 0:
        for p in range(processes):
            for j in range(workers):
                # Reversed, so that the lowest id is handed out first.
                free[p, j] = p * workers + workers - 1 - j
            top[p] = workers
    loops = np.zeros(processes)
    # Per connection (dense ids): its latest answer, its request waiting in
    # ``ready`` for it (-1: none), the requests queued behind that one (a
    # linked list), and a loop's short connection's interval and answers.
    last_end = np.full(n_conns, -np.inf)
    scheduled = np.full(n_conns, -1, np.int64)
    qhead = np.full(n_conns, -1, np.int64)
    qtail = np.full(n_conns, -1, np.int64)
    next_on_conn = np.full(n, -1, np.int64)
    open_handle = np.full(n_conns, -1, np.int64)
    answered = np.zeros(n_conns, np.int64)
    # At most one request per connection waits in ``ready``.
    rt = np.empty(n_conns + 1)
    rk = np.empty((n_conns + 1, 2), np.int64)
    n_ready = 0
    accepted = 0
    order = 0
    nxt = 0
    while nxt < n or n_ready > 0:
        if n_ready > 0 and (nxt >= n or rt[0] < arrival[nxt]):
            t, i = rt[0], rk[0, 1]
            n_ready = _ready_pop(rt, rk, n_ready)
            c = conn[i]
            d = dense[i]
            scheduled[d] = -1
        else:
            i = nxt
            t = arrival[nxt]
            nxt += 1
            c = conn[i]
            d = dense[i]
            if scheduled[d] >= 0:
                # Behind a request that is already waiting for its client.
                if qtail[d] >= 0:
                    next_on_conn[qtail[d]] = i
                else:
                    qhead[d] = i
                qtail[d] = i
                continue
            if last_end[d] > t:
                n_ready = _ready_push(rt, rk, n_ready, last_end[d], order, i)
                scheduled[d] = i
                order += 1
                continue
        if mode == POOL_OWNS_CONNECTION:
            proc = by_accept[accepted]
            accepted += 1
        else:
            proc = by_conn[i]
        process[i] = proc
        demand = own[i]
        began = t
        server = proc
        loop_model = mode == LOOP_THEN_POOL or mode == LOOP  # noqa: PLR1714 - numba: no tuple `in`
        if loop_model and k_per_conn > 0 and open_handle[d] < 0:
            # A loop model opens a short-lived connection at its first request.
            open_handle[d] = n_conn
            answered[d] = 0
            conn_open[n_conn] = t
            conn_close[n_conn] = np.inf
            n_conn += 1
        pooled = mode == POOL_OWNS_CONNECTION or mode == LOOP_THEN_POOL  # noqa: PLR1714
        if pooled:
            if mode == POOL_OWNS_CONNECTION:
                conn_open[n_conn] = t
                conn_close[n_conn] = np.inf
                n_conn += 1
            else:
                admit[i] = t
                if loop_cost > 0:
                    at = max(t, loops[proc])
                    cpu_start[n_cpu] = at
                    cpu_dur[n_cpu] = loop_cost
                    n_cpu += 1
                    loops[proc] = at + loop_cost
                    t = at + loop_cost
            # Servers free by t go back on the stack, in the order they freed.
            while size[proc] > 0 and bt[proc, 0] <= t:
                _, s = _pop(bt, bo, bs, size, proc)
                free[proc, top[proc]] = s
                top[proc] += 1
            if top[proc] > 0:
                top[proc] -= 1
                server = free[proc, top[proc]]
                began = t
            else:
                began, server = _pop(bt, bo, bs, size, proc)
            if mode == POOL_OWNS_CONNECTION:
                admit[i] = began
                # Accepted when a thread takes it: the listen backlog holds
                # none of the server's memory (``ConnectionBound._short_session``).
                conn_open[n_conn - 1] = began
        else:
            admit[i] = t
            if mode == THREAD_PER_CONNECTION:
                server = c
        if mode == LOOP:
            cpu_time = 0.0
            if demand > 0:
                began = max(t, loops[proc])
                loops[proc] = began + demand
                cpu_start[n_cpu] = began
                cpu_dur[n_cpu] = demand
                n_cpu += 1
                cpu_time = demand
            finish = began + cpu_time + io[i]
            svc = cpu_time + io[i]
        else:
            cpu_time = 0.0
            if demand > 0 or pays_switch:
                cpu_time = demand + switch_cost
                cpu_start[n_cpu] = began
                cpu_dur[n_cpu] = cpu_time
                n_cpu += 1
            # The DES runs an uncontended CPU phase and the backend wait as one
            # timeout: the same sum, in the same order, gives the same float.
            finish = began + (cpu_time + io[i])
            svc = (loop_cost + cpu_time + io[i]) if mode == LOOP_THEN_POOL else (cpu_time + io[i])
        start[i] = began
        end[i] = finish
        service[i] = svc
        cpu[i] = cpu_time
        worker[i] = server
        order += 1
        if pooled:
            _push(bt, bo, bs, size, proc, finish, order, server)
        if mode == POOL_OWNS_CONNECTION:
            conn_close[n_conn - 1] = finish
        elif mode != THREAD_PER_CONNECTION and k_per_conn > 0:
            answered[d] += 1
            if answered[d] == k_per_conn:
                conn_close[open_handle[d]] = finish
                open_handle[d] = -1
                answered[d] = 0
        last_end[d] = finish
        h = qhead[d]
        if h >= 0:
            following = next_on_conn[h]
            if following >= 0:
                qhead[d] = following
            else:
                qhead[d] = -1
                qtail[d] = -1
            n_ready = _ready_push(rt, rk, n_ready, finish, order, h)
            scheduled[d] = h
            order += 1
    return (
        admit,
        start,
        end,
        service,
        cpu,
        worker,
        process,
        cpu_start[:n_cpu],
        cpu_dur[:n_cpu],
        conn_open[:n_conn],
        conn_close[:n_conn],
    )


# Fibonacci hashing's multiplier (2^64 over the golden ratio, odd): the top
# bits of id * this spread consecutive or clustered ids over the table.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True)
def dense_ids(ids: Any) -> Any:  # pragma: no cover - compiled; tested through simlab.fast
    """How many distinct ids, and each id's number in the order the ids first
    appear (0 for the first id seen, 1 for the next new one, ...).

    One pass with an open-addressing hash table (linear probing, at most two
    thirds full) that holds, for each id seen, the index of its first request
    plus one (0: an empty slot), so the table is a single int64 array and an
    id's number is read back from that first request's. A sort of the ids
    (as ``np.unique`` does) costs five times as much for distinct ids, and
    ten to fifty times with repeats.
    """
    n = ids.shape[0]
    bits = 1
    while (1 << bits) < n + n // 2:
        bits += 1
    shift = np.uint64(64 - bits)
    mask = (1 << bits) - 1
    first = np.zeros(1 << bits, np.int64)
    dense = np.empty(n, np.int64)
    count = 0
    for i in range(n):
        key = ids[i]
        h = np.int64((np.uint64(key) * _GOLDEN) >> shift)
        while True:
            f = first[h]
            if f == 0:
                first[h] = i + 1
                dense[i] = count
                count += 1
                break
            if ids[f - 1] == key:
                dense[i] = dense[f - 1]
                break
            h = (h + 1) & mask
    return count, dense
