"""The fast engine's event loop, compiled with numba, for contended CPUs.

Where CPU phases queue (a GIL per process, a few cores) or pay to wake an
idle process, a request's timing depends on everything else in flight, and
no recursion gives it. This kernel is then the DES itself, compiled: the
same processes (``ReactorPool.session``, ``Async.session``,
``ConnectionBound.serve``, ``Model.on_thread``, ``Cpu.run`` and its GIL
slices) written as state machines, and an event queue ordered exactly as
SimPy orders its own: by time, then priority (a process's start is urgent),
then creation order. Same events, same order, same floating-point sums, so
the same requests.

Each connection with a request in flight is an *entity* (a slot in two
tables of integer and float fields) whose program counter says where its
session resumes. A process blocks on one thing at a time, so a waiter needs
only a link in its pool's FIFO. Pools (the cores, each process's GIL, loop
and workers) hand a freed server to their oldest waiter through an event at
the current time, as ``simlab.models.pool.Pool`` does. A loop run in passes
(``Async``'s ``Passes``) has an entity of its own, its driver, after the
connections' slots: it takes each pass's items (a session's read, its
task's step, a reply's passes, its answer) off its loop's lists, in the
order the DES's callbacks run.

``simlab.fast`` prepares the arrays and reads the results; this module only
holds the loop, so that its compile cache stays valid while the rest changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

__all__ = ["run_events"]

# The modes of ``simlab.models.base.FastMode``, as the compiled loop sees them.
POOL_OWNS_CONNECTION, LOOP_THEN_POOL, THREAD_PER_CONNECTION, LOOP, TWO_TIER = 0, 1, 2, 3, 4

# SimPy's priorities (a process's Initialize is urgent), above the event ids.
# An event's payload is an entity (-1: the arrival process) and a value (the
# server a pool hands over); an entity whose program counter is -1 starts.
URGENT, NORMAL = 0, 1
PRIO = 1 << 62

# Integer fields of an entity.
# The request it serves now, its connection, process and worker; where it
# resumes (PC), where ``Cpu.run`` and ``on_thread`` return to; the phase's GIL,
# lock (pool ids, -1 none), process, switches, wake-up and core; the rounds of
# calls left; its connection's interval; the next waiter in its pool's queue.
I_REQ, I_CONN, I_PROC, I_WORKER, I_PC, I_RET, I_OTRET, I_RGIL = range(8)
I_RLOCK, I_RPROC, I_RSW, I_RWOKE, I_RCORE, I_ROUNDS, I_HANDLE, I_WNEXT = range(8, 16)
I_RLOOP = 16  # the phase runs on an event loop (``Cpu.run``'s ``loop``)
# A loop run in passes (``simlab.models.async_.Passes``). A session's item in
# its loop's lists (at most one at a time): its kind, the passes left before
# its task resumes, the next item in the same list. A loop's driver: asleep
# (the next step to run pays the wake-up), waiting for its wake-up, woken
# already, the item it runs, the rest of its pass, and whether it held its
# process awake for the step it runs.
I_ITEM, I_HOPN, I_INEXT, I_ASLEEP, I_WAITING, I_KICKED, I_CUR, I_BATCH, I_AWAKE = range(17, 26)
NI = 26
# Float fields of an entity.
F_RDEMAND, F_RDUR, F_RSTART, F_RLEFT, F_STEP, F_CPU, F_LASTDUR, F_LASTSTART, F_FRONT = range(9)
# When a thread began waiting for its GIL, and when a sliced phase last took it
# (the forced switch's timers, ``Cpu._drop_at``).
F_WSINCE, F_ACQ = 9, 10
NF = 11
# ``simlab.models.pool.DROP_SLACK``: a step cut to a waiter's timer drops.
DROP_SLACK = 1e-12

# Program counters. Sessions:
RP_TOP, RP_AFTER_LOOP, RP_GOT, RP_AFTER_THREAD = 0, 1, 2, 3
A_TOP, A_RAN, A_AFTER, A_FIN, LOOP_NEXT = 10, 11, 12, 13, 14
A_TIMER = 15  # a backend call answered: its reply is read in the next pass
T_TOP, T_GOT, T_SERVED = 20, 21, 22
D_TOP, D_SERVED = 30, 31
D_FORKED = 32  # its owner made: a forked child's own start first
TT_TOP, TT_FRONT_RAN, TT_HOP, TT_BACK, TT_GOT, TT_AFTER_THREAD, TT_OUT, TT_OUT_RAN = range(70, 78)
TT_FIN = 78
# ``Model.on_thread``:
OT_START, OT_FIRST_RAN, OT_AFTER_FIRST, OT_ROUND, OT_ROUND_RUN, OT_ROUND_RAN = range(40, 46)
OT_DONE = 46
# ``Cpu.run`` and ``Cpu._sliced``:
R_START, R_GIL, R_CORE, R_GOTCORE, R_RUN, R_END = 50, 51, 52, 53, 54, 55
S_STEP, S_AFTER, S_REGIL, S_RECORE = 60, 61, 62, 63
# After a wait for the GIL: its hand-off (``Cpu.run``'s ``handoff``).
R_HANDOFF, S_HANDOFF = 56, 64
# And where the kernel woke it: on a core another copy's GIL holder runs on
# (``Cpu._beside_sibling``), and that core handed over (or -1: none).
R_PLACE, R_PLACED, S_PLACE, S_PLACED = 57, 58, 65, 66
# A loop's driver (``Passes._run``), and the kinds of its items:
DRV_WOKE, DRV_PASS, DRV_ITEM, DRV_RAN, DRV_THEN = 80, 81, 82, 83, 84
K_READ, K_STEP, K_HOP, K_DONE = 0, 1, 2, 3
# The accepting thread that makes persistent connections' threads as the run
# starts (``Dedicated._fork_all``), one entity a process after the drivers.
ACC_NEXT, ACC_RAN = 90, 91
DONE = 99

NAN = np.nan


@njit(cache=True, inline="always")
def _push(  # noqa: PLR0917 - a compiled helper takes its arrays positionally
    ht: Any, hq: Any, size: int, t: float, k: int, x: int, v: int
) -> int:  # pragma: no cover - compiled
    """Push (t, k) with payload (x, v) on the event queue; returns its new size.

    The queue is two arrays, the times ``ht`` and the keys and payloads ``hq``
    (a row each: k, x, v), not four: every array a compiled helper takes
    costs a reference count in and out of it. Row 0 is the *front*: the
    earliest event, when it is outside the heap (key -1: empty); rows 1 to
    the heap's count are a binary heap of the rest (children of row j: 2j
    and 2j + 1). ``size`` counts both. Most events a phase schedules are the
    next to come (a CPU phase of microseconds among backend calls of
    milliseconds): such an event waits in the front and is taken from it,
    where the heap sifted it up to its root and down again. Every event in
    the heap is later than the front, so the queue gives the events in the
    same order as one heap would."""
    occupied = hq[0, 0] >= 0
    m = size - 1 if occupied else size  # the heap's count
    if occupied:
        if t < ht[0] or (t == ht[0] and k < hq[0, 0]):
            # The new one is the earliest: the front moves into the heap.
            ft, fk, fx, fv = ht[0], hq[0, 0], hq[0, 1], hq[0, 2]
            ht[0] = t
            hq[0, 0], hq[0, 1], hq[0, 2] = k, x, v
            t, k, x, v = ft, fk, fx, fv
    elif m == 0 or t < ht[1] or (t == ht[1] and k < hq[1, 0]):
        ht[0] = t
        hq[0, 0], hq[0, 1], hq[0, 2] = k, x, v
        return size + 1
    j = m + 1
    while j > 1:
        parent = j >> 1
        if ht[parent] < t or (ht[parent] == t and hq[parent, 0] < k):
            break
        ht[j] = ht[parent]
        hq[j, 0], hq[j, 1], hq[j, 2] = hq[parent, 0], hq[parent, 1], hq[parent, 2]
        j = parent
    ht[j] = t
    hq[j, 0], hq[j, 1], hq[j, 2] = k, x, v
    return size + 1


# The mechanisms the loop repeats, each written once, and inlined in numba's
# own IR (``inline="always"``), where its pass that prunes reference counts
# sees them. A helper with a loop can still leave two atomic reference counts
# per array per call (the heap's pop did: about a third of the loop's time on
# the default platform, by perf), so the pop is written out in the loop, and
# the helpers take few arrays: the heap is two, a pool's line one. Helpers
# that take or give back a pool's free server (``fstack``/``ftop``) made it
# about twice as slow, so that stays inline.
@njit(cache=True, inline="always")
def _at(  # noqa: PLR0917 - a compiled helper takes its arrays positionally
    ht: Any, hq: Any, size: int, eid: int, t: float, ent: int, v: int
) -> tuple[int, int]:  # pragma: no cover - compiled
    """Resume ``ent`` at ``t`` with value ``v`` (a normal event: a timeout, or a
    pool's hand-over); returns the new size and event id."""
    return _push(ht, hq, size, t, NORMAL * PRIO + eid, ent, v), eid + 1


@njit(cache=True, inline="always")
def _wait(ei: Any, qs: Any, q: int, ent: int) -> None:  # pragma: no cover - compiled
    """Queue ``ent`` last among pool ``q``'s waiters."""
    ei[ent, I_WNEXT] = -1
    if qs[q, 1] >= 0:
        ei[qs[q, 1], I_WNEXT] = ent
    else:
        qs[q, 0] = ent
    qs[q, 1] = ent
    qs[q, 2] += 1


@njit(cache=True, inline="always")
def _phase(  # noqa: PLR0917 - a compiled helper takes its arrays positionally
    ei: Any,
    ef: Any,
    ent: int,
    gil_q: int,
    lock_q: int,
    on_loop: int,
    proc: int,
    switches: int,
    cpu: float,
    ret: int,
) -> None:  # pragma: no cover - compiled
    """Set up ``Cpu.run``'s arguments for ``ent``, to return to ``ret``."""
    ei[ent, I_RGIL] = gil_q
    ei[ent, I_RLOCK] = lock_q
    ei[ent, I_RLOOP] = on_loop
    ei[ent, I_RPROC] = proc
    ei[ent, I_RSW] = switches
    ef[ent, F_RDEMAND] = cpu
    ei[ent, I_RET] = ret


@njit(cache=True, inline="always")
def _enqueue(  # noqa: PLR0917 - a compiled helper takes its arrays positionally
    ei: Any, pl: Any, p: int, col: int, x: int, kind: int, hops: int
) -> None:  # pragma: no cover - compiled
    """Put session ``x``'s item last in loop ``p``'s list ``col`` (0: the
    callbacks for the next pass, 2: the I/O ready; ``Passes.call_soon`` and
    ``ready_io``)."""
    ei[x, I_ITEM] = kind
    ei[x, I_HOPN] = hops
    ei[x, I_INEXT] = -1
    if pl[p, col + 1] >= 0:
        ei[pl[p, col + 1], I_INEXT] = x
    else:
        pl[p, col] = x
    pl[p, col + 1] = x


@njit(cache=True, inline="always")
def _open(  # noqa: PLR0917 - a compiled helper takes its arrays positionally
    copen_h: Any, canswered: Any, copen: Any, cclose: Any, nc: int, c: int, now: float
) -> int:  # pragma: no cover - compiled
    """Open a short connection on ``c`` if none is open; returns the new count."""
    if copen_h[c] < 0:
        copen_h[c] = nc
        canswered[c] = 0
        copen[nc] = now
        cclose[nc] = np.inf
        nc += 1
    return nc


@njit(cache=True, inline="always")
def _idle(
    chead: Any, free_slots: Any, nfree: int, c: int, ent: int
) -> int:  # pragma: no cover - compiled
    """Connection ``c`` goes idle and ``ent``'s slot is freed; returns the free count."""
    chead[c] = -2
    free_slots[nfree] = ent
    return nfree + 1


@njit(cache=True, inline="always")
def _drop_at(  # noqa: PLR0917 - a compiled helper takes its arrays positionally
    ei: Any, ef: Any, qs: Any, q: int, acquired: float, interval: float
) -> float:  # pragma: no cover - compiled
    """``Cpu._drop_at``: when the waiters of GIL ``q`` ask its holder, which
    took it at ``acquired``, to drop it."""
    drop = np.inf
    w = qs[q, 0]
    while w >= 0:
        began = ef[w, F_WSINCE]
        if began < acquired:
            began += interval * (np.floor((acquired - began) / interval) + 1)
        drop = min(drop, began + interval)
        w = ei[w, I_WNEXT]
    return drop


@njit(cache=True, inline="always")
def _next(ei: Any, qs: Any, q: int) -> int:  # pragma: no cover - compiled
    """Take pool ``q``'s oldest waiter off its FIFO (it has one)."""
    w: int = qs[q, 0]
    qs[q, 0] = ei[w, I_WNEXT]
    if qs[q, 0] < 0:
        qs[q, 1] = -1
    qs[q, 2] -= 1
    return w


@njit(cache=True, inline="always")
def _hand_over(  # noqa: PLR0917 - a compiled helper takes its arrays positionally
    ei: Any, qs: Any, q: int, draws: Any, gu: int, fifo: float
) -> tuple[int, int]:  # pragma: no cover - compiled
    """Take the waiter a GIL goes to off pool ``q``'s line (it has one): with
    two or more waiting and ``fifo`` < 1, the one ``HandOffs.pick`` picks with
    the next uniform ``draws[gu]``, else the oldest. Returns it and the next ``gu``."""
    waiting = qs[q, 2]
    if fifo >= 1.0 or waiting < 2:
        return _next(ei, qs, q), gu
    u = draws[gu]
    gu += 1
    k = 0
    if u >= fifo:
        # ``simlab.streams.HandOffs.pick``'s arithmetic, operation for operation.
        k = min(int((u - fifo) / (1.0 - fifo) * waiting), waiting - 1)
    if k == 0:
        return _next(ei, qs, q), gu
    prev = qs[q, 0]
    for _ in range(k - 1):
        prev = ei[prev, I_WNEXT]
    w: int = ei[prev, I_WNEXT]
    ei[prev, I_WNEXT] = ei[w, I_WNEXT]
    if qs[q, 1] == w:
        qs[q, 1] = prev
    qs[q, 2] -= 1
    return w, gu


@njit(cache=True, inline="always")
def _placed_on(  # noqa: PLR0917 - a compiled helper takes its arrays positionally
    core_proc: Any, cores: int, p: int, pdraws: Any, pu: int, sibling: float
) -> tuple[int, int]:  # pragma: no cover - compiled
    """``Cpu._beside_sibling``'s choice for a waiter of process ``p`` just
    handed its GIL: the core another copy's holder runs on that it was woken
    on (-1: none), and the next ``pu``. A uniform only where such a core
    exists, a second only where two or more do, as the DES reads them."""
    held = 0
    for c in range(cores):
        if core_proc[c] >= 0 and core_proc[c] != p:
            held += 1
    if held == 0:
        return -1, pu
    u = pdraws[pu]
    pu += 1
    if u >= sibling:
        return -1, pu
    pick = 0
    if held > 1:
        pick = min(int(pdraws[pu] * held), held - 1)
        pu += 1
    for c in range(cores):
        if core_proc[c] >= 0 and core_proc[c] != p:
            if pick == 0:
                return c, pu
            pick -= 1
    return -1, pu


@njit(cache=True, inline="always")
def _to_placed(  # noqa: PLR0917 - a compiled helper takes its arrays positionally
    ei: Any, qs: Any, q: int, ht: Any, hq: Any, hsize: int, eid: int, now: float, core: int
) -> tuple[int, int]:  # pragma: no cover - compiled
    """A core given up with waiters woken on it (line ``q``): to the first,
    and -1 to each other, which then queues for a core (``Cpu._give_core``)."""
    w = _next(ei, qs, q)
    hsize, eid = _at(ht, hq, hsize, eid, now, w, core)
    while qs[q, 2] > 0:
        w = _next(ei, qs, q)
        hsize, eid = _at(ht, hq, hsize, eid, now, w, -1)
    return hsize, eid


# One compiled loop, on purpose: the state machines share the event queue, the
# pools and the tables, which numba keeps in registers and local arrays.
@njit(cache=True)
def run_events(  # noqa: PLR0912, PLR0915, PLR0917 - one compiled loop
    mode: int,
    times: Any,
    is_trace: bool,
    stop: float,
    horizon: float,
    conn: Any,
    dense: Any,
    n_conns: int,
    fbuf: Any,
    ibuf: Any,
    obuf: Any,
    bstart: Any,
    bend: Any,
    demand: Any,
    io: Any,
    processes: int,
    workers: int,
    by_accept: Any,
    by_conn: Any,
    cores: int,
    gil: bool,
    cs: float,
    contention: float,
    poll: float,
    gil_wake: float,
    wake: float,
    interval: float,
    call_cpu: float,
    calls: int,
    sequential: bool,
    paid: bool,
    loop_cost: float,
    fixed: float,
    k_per_conn: int,
    max_requests: int,
    max_in_system: int,
    owner: Any,
    owner_proc: Any,
    own_process: bool,
    fronts: int,
    front_in: float,
    front_out: float,
    hop_in: float,
    hop_out: float,
    loop_wake: float,
    fifo: float,
    draws: Any,
    passes: int,
    handoff: float,
    acc_cost: float,
    acc_order: Any,
    acc_bounds: Any,
    acc_procs: Any,
    made: Any,
    child_start: float,
    sibling: float,
    pdraws: Any,
) -> tuple[Any, ...]:  # pragma: no cover - compiled; checked against the DES in tests
    n_in = times.shape[0]
    # The columns, the connections' intervals, the per-connection tables and
    # the CPU's busy intervals live in the caller's buffers
    # (``simlab.fast.EventBuffers``), kept from one replication to the next:
    # allocated here, each replication's were fresh 4 KiB pages (at 5
    # replications of a million requests, 55,000 page faults in this loop
    # against 9,000, at about 2.6 us a fault). Rows of ``fbuf`` (n_in + 1
    # long at least): the six time columns, let_go, then the connections'
    # opens and closes; rows of ``ibuf`` (max(n_in, n_conns) long at least):
    # worker, process, then the connection tables ``chead``, ``copen_h`` and
    # ``canswered``, then ``ended``.
    if fbuf.shape[0] < 9 or fbuf.shape[1] < n_in + 1:
        raise ValueError("run_events: fbuf is too small")
    if ibuf.shape[0] < 6 or ibuf.shape[1] < max(n_in, n_conns) or obuf.shape[0] < n_in:
        raise ValueError("run_events: ibuf or obuf is too small")
    arrival = fbuf[0][:n_in]
    admit = fbuf[1][:n_in]
    start = fbuf[2][:n_in]
    end = fbuf[3][:n_in]
    service = fbuf[4][:n_in]
    cpu_time = fbuf[5][:n_in]
    let_go = fbuf[6][:n_in]
    for k in range(n_in):
        arrival[k] = NAN
        admit[k] = NAN
        start[k] = NAN
        end[k] = NAN
        service[k] = NAN
        cpu_time[k] = NAN
        let_go[k] = NAN
    worker = ibuf[0][:n_in]
    process = ibuf[1][:n_in]
    outcome = obuf[:n_in]
    worker[:] = -1
    process[:] = -1
    outcome[:] = 2  # PENDING
    # The requests answered, in the order their ends are written: the events
    # come in time order, so their ends are in order along it, which the
    # summary reads instead of sorting the ends (``Record.end_order``).
    ended = ibuf[5][:n_in]
    n_ended = 0
    # The CPU's busy intervals: each phase's start and end (the end written
    # here, the same float as start + duration), and the GIL's waiters' CPU
    # beside a phase (``gil_wake``). Fixed capacities, never
    # grown: an array reassigned in the loop would cost numba a reference
    # count per use. CPU phases beyond their length stop the run (``full``)
    # and the caller runs it again with more room.
    full = False
    bcap = min(bstart.shape[0], bend.shape[0])
    nb = 0
    copen = fbuf[7][: n_in + 1]  # at most one connection opened per request
    cclose = fbuf[8][: n_in + 1]
    nc = 0

    # Pools: the cores, then per process its GIL, its loop and its workers.
    # Two-tier's front loops are processes after the back's, and its back is
    # one pool of every back thread (the shared listen queue).
    nproc = processes + fronts
    # A GIL hand-off woken on another copy's core (``sibling`` > 0): which
    # process's GIL holder runs on each core (-1: none, or a phase without a
    # GIL), and a line of the waiters woken on each core, pools after the
    # others (``Cpu.core_process``, ``Cpu.core_placed``).
    sib = sibling > 0.0 and gil and cores > 0 and nproc > 1
    pl0 = 1 + 3 * nproc
    nq = pl0 + (cores if sib else 0)
    core_proc = np.full(max(cores, 1), -1, np.int64)
    n_pdraws = pdraws.shape[0]
    pu = 0
    fbase = np.zeros(nq, np.int64)
    ftop = np.zeros(nq, np.int64)
    # Each pool's line of waiters: its first, its last and how many (one array
    # of three columns, so that a helper takes one array, not three).
    qs = np.zeros((nq, 3), np.int64)
    qs[:, 0] = -1
    qs[:, 1] = -1
    caps = np.zeros(nq, np.int64)
    firsts = np.zeros(nq, np.int64)
    caps[0] = cores
    for p in range(nproc):
        caps[1 + p] = 1 if gil else 0
        caps[1 + nproc + p] = 1
        firsts[1 + nproc + p] = p
        if mode != TWO_TIER and p < processes:
            caps[1 + 2 * nproc + p] = workers
            firsts[1 + 2 * nproc + p] = p * workers
    if mode == TWO_TIER:
        caps[1 + 2 * nproc] = processes * workers
    total = 0
    for q in range(nq):
        fbase[q] = total
        total += caps[q]
    fstack = np.empty(max(total, 1), np.int64)
    for q in range(nq):
        # Reversed, so that the lowest id is handed out first (``Pool``).
        for j in range(caps[q]):
            fstack[fbase[q] + j] = firsts[q] + caps[q] - 1 - j
        ftop[q] = caps[q]
    has_cores = cores > 0
    active_p = np.zeros(nproc, np.int64)
    free_running = (not has_cores) and (not gil) and wake == 0.0
    # Holders owning persistent connections for the whole run (``owner``).
    held = mode == POOL_OWNS_CONNECTION and k_per_conn == 0
    # A forked child per connection runs under its own GIL, asleep between requests.
    thread_gil = gil and not own_process
    # A GIL handed out of order reads one uniform per contended hand-off;
    # when they run out the run stops (``full``) and is run again with more.
    random_gil = gil and fifo < 1.0
    n_draws = draws.shape[0]
    gu = 0

    # Entities.
    # Entities: at most one per connection with a request in flight. Each has
    # at most one pending event, so the queue holds at most one more (arrivals).
    # Room for one per connection, but only the slots in use are ever
    # written: a slot is zeroed when first taken (``fresh``: the slots from it
    # on never were), freed slots are taken again last-freed first. Zeroing
    # every slot up front wrote (and faulted in) about 110 MiB at 500,000
    # connections, for the hundred or so a run has in flight.
    ecap = min(n_in, n_conns) + 1
    # A loop run in passes has a driver, an entity after the sessions' slots.
    in_passes = mode == LOOP and passes > 0
    drivers = nproc if in_passes else 0
    # Persistent connections whose owners (threads, children) are made as the
    # run starts (``acc_cost`` > 0): an acceptor a process, after the drivers,
    # going through its connections (``acc_order``, dense ids, -1 for one
    # that never sends, between ``acc_bounds``), each one's owner made when
    # its ``Cpu.run`` ends (``made``: when, in that order). A made owner is a
    # signal event (``Dedicated._forked``'s), an entity id from ``sig_base``
    # on: when it is processed it marks its connection (``cmade``) and resumes
    # the session waiting for it (``cwait``); a session that starts before
    # then waits, as the DES's does for an event not yet processed.
    n_acc = acc_procs.shape[0] if acc_cost > 0.0 else 0
    acc0 = ecap + drivers
    sig_base = acc0 + n_acc
    n_made = 0
    cmade = np.zeros(n_conns if n_acc > 0 else 0, np.int8)
    # A child forked as the run starts pays its own start (``child_start``)
    # with its connection's first request (``Dedicated._unstarted``).
    cunstarted = np.zeros(n_conns if n_acc > 0 else 0, np.int8)
    cwait = np.full(n_conns if n_acc > 0 else 0, -1, np.int64)
    ei = np.empty((ecap + drivers + n_acc, NI), np.int64)
    ef = np.empty((ecap + drivers + n_acc, NF))
    for k in range(n_acc):
        for f in range(NI):
            ei[acc0 + k, f] = 0
        for f in range(NF):
            ef[acc0 + k, f] = 0.0
        ei[acc0 + k, I_PROC] = acc_procs[k]
        ei[acc0 + k, I_ROUNDS] = acc_bounds[k]  # its next connection
        ei[acc0 + k, I_HANDLE] = acc_bounds[k + 1]  # past its last
        ei[acc0 + k, I_PC] = ACC_NEXT
    for dr in range(drivers):
        for f in range(NI):
            ei[ecap + dr, f] = 0
        for f in range(NF):
            ef[ecap + dr, f] = 0.0
        # Asleep from the start, waiting for its wake-up (``Passes.__init__``).
        ei[ecap + dr, I_PROC] = dr
        ei[ecap + dr, I_PC] = DRV_WOKE
        ei[ecap + dr, I_ASLEEP] = 1
        ei[ecap + dr, I_WAITING] = 1
    # Each loop's lists of items: the callbacks' first and last, the I/O's.
    pl = np.full((max(drivers, 1), 4), -1, np.int64)
    parallel = (not sequential) and calls > 1
    pass_rounds = 1 if parallel or calls == 0 else calls
    reply_hops = passes + (1 if parallel else 0)
    free_slots = np.empty(ecap, np.int64)
    nfree = 0
    fresh = 0

    # Connections (dense ids): -2 while idle, else the first request queued
    # behind the one in flight (-1: none), the last one, and for a loop's
    # short connections its interval and the requests answered on it.
    chead = ibuf[2][:n_conns]
    chead[:] = -2
    # Read only behind a queued request, so written only then.
    ctail = np.empty(n_conns, np.int64)
    next_on_conn = np.empty(n_in, np.int64)
    copen_h = ibuf[3][:n_conns]
    copen_h[:] = -1
    canswered = ibuf[4][:n_conns]
    canswered[:] = 0

    # The event queue.
    # An acceptor has its phase's event and at most one signal pending.
    hcap = ecap + drivers + 2 + 2 * n_acc
    ht = np.empty(hcap + 1)  # row 0: the front (``_push``)
    hq = np.empty((hcap + 1, 3), np.int64)
    hq[0, 0] = -1
    hsize = 0
    eid = 0

    n = 0
    nxt_arrival = 0
    in_system = 0
    overloaded = False
    truncated = False
    accepted = 0
    now = 0.0

    # The arrival process starts at time 0 (a trace's requests at 0 go at once,
    # with nothing else yet to happen).
    # The next arrival's event waits in a slot of its own (key -1: none), not
    # in the queue: it is one event a request, and its time is known when it
    # is made, so a comparison with the queue's earliest puts it in SimPy's
    # order without a push and a pop.
    a_t = 0.0
    a_k = -1

    # Sessions started and not yet run: a start is urgent and made at the
    # current instant, so it comes before every event in the heap (those are
    # normal, or later) and the starts come in the order they were made: a
    # FIFO of them is SimPy's order without a push and a pop per request.
    squeue = ecap + n_acc
    starts_q = np.empty(squeue, np.int64)
    s_head = 0
    s_count = 0
    # The acceptors start first (``Dedicated.start_arrivals`` makes their
    # processes before the arrivals'), so the first arrival's event is made
    # after theirs: it waits until they have run (``a_wait``).
    for k in range(n_acc):
        starts_q[s_count] = acc0 + k
        s_count += 1
        eid += 1
    a_wait = n_in > 0

    while hsize > 0 or s_count > 0 or a_k >= 0 or a_wait:
        if a_wait and s_count == 0:
            a_wait = False
            a_t = times[0] if times[0] > 0.0 else 0.0
            a_k = NORMAL * PRIO + eid
            eid += 1
        if s_count > 0:
            ent = starts_q[s_head]
            s_head = s_head + 1 if s_head + 1 < squeue else 0
            s_count -= 1
            val = 0
        elif a_k >= 0 and (
            hsize == 0
            or (
                (a_t < ht[0] or (a_t == ht[0] and a_k < hq[0, 0]))
                if hq[0, 0] >= 0
                else (a_t < ht[1] or (a_t == ht[1] and a_k < hq[1, 0]))
            )
        ):
            # The next arrival comes before anything queued.
            t = a_t
            if t >= horizon:
                break
            ent = -1
            val = 0
            a_k = -1
            now = t
        elif hq[0, 0] >= 0:
            # The front: the earliest event, outside the heap (``_push``).
            t = ht[0]
            if t >= horizon:
                break
            ent = hq[0, 1]
            val = hq[0, 2]
            hq[0, 0] = -1
            hsize -= 1
            now = t
        else:
            t = ht[1]
            if t >= horizon:
                break
            ent = hq[1, 1]
            val = hq[1, 2]
            # ``_pop``, written out: the one call made for every event, and a
            # helper's arrays cost atomic reference counts that LLVM keeps.
            # The heap's rows are 1 to hsize (no front now): the last moves
            # to the root and sifts down.
            hsize -= 1
            if hsize > 0:
                last = hsize + 1
                pt, pk, px, pv = ht[last], hq[last, 0], hq[last, 1], hq[last, 2]
                pj = 1
                while True:
                    pc_ = 2 * pj
                    if pc_ > hsize:
                        break
                    if pc_ < hsize and (
                        ht[pc_ + 1] < ht[pc_]
                        or (ht[pc_ + 1] == ht[pc_] and hq[pc_ + 1, 0] < hq[pc_, 0])
                    ):
                        pc_ += 1
                    if pt < ht[pc_] or (pt == ht[pc_] and pk < hq[pc_, 0]):
                        break
                    ht[pj] = ht[pc_]
                    hq[pj, 0], hq[pj, 1], hq[pj, 2] = hq[pc_, 0], hq[pc_, 1], hq[pc_, 2]
                    pj = pc_
                ht[pj] = pt
                hq[pj, 0], hq[pj, 1], hq[pj, 2] = pk, px, pv
            now = t
        if ent < 0:
            # --------------------------------------------------- arrivals
            while True:
                if overloaded:
                    break
                i = nxt_arrival
                c = conn[i]
                nxt_arrival += 1
                # ``Model.send``
                if i >= max_requests:
                    truncated = True
                    overloaded = True
                    break
                n = i + 1
                arrival[i] = now
                in_system += 1
                if in_system > max_in_system:
                    overloaded = True
                # ``Model.route``
                dc = dense[i]
                if chead[dc] == -2 and held and owner[i] < 0:
                    # A persistent connection no holder owns: never read.
                    chead[dc] = -1
                elif chead[dc] == -2:
                    chead[dc] = -1
                    if nfree > 0:
                        nfree -= 1
                        e = free_slots[nfree]
                    else:
                        e = fresh
                        fresh += 1
                        for f in range(NI):
                            ei[e, f] = 0
                        for f in range(NF):
                            ef[e, f] = 0.0
                    ei[e, I_REQ] = i
                    ei[e, I_CONN] = dc
                    ei[e, I_PC] = -1  # set at its start
                    # Its start: urgent, at once (``starts_q``).
                    tail = s_head + s_count
                    starts_q[tail if tail < squeue else tail - squeue] = e
                    s_count += 1
                    eid += 1
                else:
                    next_on_conn[i] = -1
                    if chead[dc] < 0:
                        chead[dc] = i
                    else:
                        next_on_conn[ctail[dc]] = i
                    ctail[dc] = i
                if nxt_arrival >= n_in:
                    break
                if not is_trace:
                    at = times[nxt_arrival]
                elif times[nxt_arrival] > now:
                    at = now + (times[nxt_arrival] - now)
                else:
                    continue  # the same instant: sent in the same step
                a_t = at
                a_k = NORMAL * PRIO + eid
                eid += 1
                break
            continue

        if ent >= sig_base:
            # A connection's thread made (``_forked[conn]`` processed): the
            # session waiting for it, if any, goes on.
            d = ent - sig_base
            cmade[d] = 1
            ent = cwait[d]
            if ent < 0:
                continue
            cwait[d] = -1

        # ------------------------------------------------------- a process
        pc = ei[ent, I_PC]
        if pc == -1:
            # Its session starts (``env.process(session(i, conn))``).
            i = ei[ent, I_REQ]
            if held:
                ei[ent, I_PROC] = owner_proc[i]
                ei[ent, I_WORKER] = owner[i]
                pc = D_TOP
            elif mode == POOL_OWNS_CONNECTION:
                pc = T_TOP
            elif mode == LOOP_THEN_POOL:
                ei[ent, I_PROC] = by_conn[i]
                pc = RP_TOP
            elif mode == LOOP:
                ei[ent, I_PROC] = by_conn[i]
                pc = A_TOP
            elif mode == TWO_TIER:
                ei[ent, I_HANDLE] = processes + by_conn[i]  # its front loop's process
                pc = TT_TOP
            else:
                ei[ent, I_PROC] = by_conn[i]
                ei[ent, I_WORKER] = conn[i]  # a thread of its own: named by its connection
                pc = D_TOP
                if n_acc > 0:
                    pc = D_FORKED
                    if cmade[ei[ent, I_CONN]] == 0:
                        # Its requests wait, unread in the socket, for their owner.
                        cwait[ei[ent, I_CONN]] = ent
                        ei[ent, I_PC] = D_FORKED
                        continue
        while True:
            if nb + 2 > bcap or (random_gil and gu >= n_draws) or (sib and pu + 2 > n_pdraws):
                full = True
                break
            i = ei[ent, I_REQ]
            # ============================================ Cpu.run and slices
            if pc == R_START:
                p = ei[ent, I_RPROC]
                if p < 0:
                    woke = wake > 0
                else:
                    woke = active_p[p] == 0
                    active_p[p] += 1
                ei[ent, I_RWOKE] = 1 if woke else 0
                q = ei[ent, I_RLOCK]
                if q >= 0:
                    if ftop[q] > 0:
                        ftop[q] -= 1
                    else:
                        _wait(ei, qs, q, ent)
                        ei[ent, I_PC] = R_GIL
                        break
                pc = R_GIL
            elif pc == R_GIL:
                q = ei[ent, I_RGIL]
                if q >= 0:
                    if ftop[q] > 0:
                        ftop[q] -= 1
                    else:
                        ef[ent, F_WSINCE] = now
                        _wait(ei, qs, q, ent)
                        ei[ent, I_PC] = R_HANDOFF if handoff > 0 else R_PLACE if sib else R_CORE
                        break
                pc = R_CORE
            elif pc == R_HANDOFF:
                # Taken after a wait: the waiter's wake-up holds it idle.
                hsize, eid = _at(ht, hq, hsize, eid, now + handoff, ent, 0)
                ei[ent, I_PC] = R_PLACE if sib else R_CORE
                break
            elif pc == R_CORE:
                if has_cores:
                    if ftop[0] > 0:
                        ftop[0] -= 1
                        ei[ent, I_RCORE] = fstack[fbase[0] + ftop[0]]
                    else:
                        _wait(ei, qs, 0, ent)
                        ei[ent, I_PC] = R_GOTCORE
                        break
                pc = R_RUN
            elif pc == R_GOTCORE:
                ei[ent, I_RCORE] = val
                pc = R_RUN
            elif pc == R_RUN:
                if sib:
                    rp = ei[ent, I_RPROC]
                    core_proc[ei[ent, I_RCORE]] = rp if ei[ent, I_RGIL] >= 0 and rp >= 0 else -1
                duration = ef[ent, F_RDEMAND]
                sw = ei[ent, I_RSW]
                qg = ei[ent, I_RGIL]
                if sw:
                    runnable = (qs[qg, 2] if qg >= 0 else 0) + (qs[0, 2] if has_cores else 0)
                    duration += sw * cs * (1.0 + contention * runnable)
                if ei[ent, I_RWOKE] == 1:
                    # A loop's wake-up from its poll costs more (``loop_wake``).
                    duration += wake + loop_wake if ei[ent, I_RLOOP] == 1 else wake
                if (poll > 0 or gil_wake > 0) and qg >= 0 and qs[qg, 2] > 0:
                    # The GIL's waiters' timed wake-ups slow its holder, and
                    # take a free core's time or, with none free, the
                    # holder's too (``Cpu.run``).
                    waiters = qs[qg, 2]
                    share = gil_wake * waiters  # in ``Cpu.run``'s order, bit for bit
                    if gil_wake > 0 and has_cores and ftop[0] == 0:
                        duration *= 1.0 + (poll + gil_wake) * waiters
                    else:
                        duration *= 1.0 + poll * waiters
                        if gil_wake > 0:
                            bstart[nb] = now
                            bend[nb] = now + duration * share
                            nb += 1
                ef[ent, F_RDUR] = duration
                ef[ent, F_RSTART] = now
                if interval > 0 and qg >= 0 and duration > interval:
                    ef[ent, F_RLEFT] = duration
                    ef[ent, F_ACQ] = now
                    pc = S_STEP
                else:
                    bstart[nb] = now
                    bend[nb] = now + duration
                    nb += 1
                    if duration > 0:
                        hsize, eid = _at(ht, hq, hsize, eid, now + duration, ent, 0)
                        ei[ent, I_PC] = R_END
                        break
                    pc = R_END
            elif pc == S_STEP:
                left = ef[ent, F_RLEFT]
                step = interval if interval < left else left
                qg = ei[ent, I_RGIL]
                if qs[qg, 2] > 0:
                    step = min(step, _drop_at(ei, ef, qs, qg, ef[ent, F_ACQ], interval) - now)
                ef[ent, F_STEP] = step
                bstart[nb] = now
                bend[nb] = now + step
                nb += 1
                hsize, eid = _at(ht, hq, hsize, eid, now + step, ent, 0)
                ei[ent, I_PC] = S_AFTER
                break
            elif pc == S_AFTER:
                left = ef[ent, F_RLEFT] - ef[ent, F_STEP]
                ef[ent, F_RLEFT] = left
                if left <= 0:
                    pc = R_END
                    continue
                qg = ei[ent, I_RGIL]
                if (
                    qs[qg, 2] > 0
                    and _drop_at(ei, ef, qs, qg, ef[ent, F_ACQ], interval) - now <= DROP_SLACK
                ):
                    # Hand the GIL (and the core) over, and queue behind.
                    if has_cores:
                        core = ei[ent, I_RCORE]
                        if sib:
                            core_proc[core] = -1
                        if sib and qs[pl0 + core, 2] > 0:
                            hsize, eid = _to_placed(
                                ei, qs, pl0 + core, ht, hq, hsize, eid, now, core
                            )
                        elif qs[0, 2] > 0:
                            w = _next(ei, qs, 0)
                            hsize, eid = _at(ht, hq, hsize, eid, now, w, core)
                        else:
                            fstack[fbase[0] + ftop[0]] = core
                            ftop[0] += 1
                    w, gu = _hand_over(ei, qs, qg, draws, gu, fifo)
                    hsize, eid = _at(ht, hq, hsize, eid, now, w, 0)
                    ef[ent, F_WSINCE] = now
                    _wait(ei, qs, qg, ent)
                    ei[ent, I_PC] = S_HANDOFF if handoff > 0 else S_PLACE if sib else S_REGIL
                    break
                pc = S_STEP
            elif pc == S_HANDOFF:
                hsize, eid = _at(ht, hq, hsize, eid, now + handoff, ent, 0)
                ei[ent, I_PC] = S_PLACE if sib else S_REGIL
                break
            elif pc == S_REGIL:
                if has_cores:
                    if ftop[0] > 0:
                        ftop[0] -= 1
                        ei[ent, I_RCORE] = fstack[fbase[0] + ftop[0]]
                    else:
                        _wait(ei, qs, 0, ent)
                        ei[ent, I_PC] = S_RECORE
                        break
                    if sib and ei[ent, I_RPROC] >= 0:
                        core_proc[ei[ent, I_RCORE]] = ei[ent, I_RPROC]
                ef[ent, F_ACQ] = now
                pc = S_STEP
            elif pc == S_RECORE:
                ei[ent, I_RCORE] = val
                if sib and ei[ent, I_RPROC] >= 0:
                    core_proc[val] = ei[ent, I_RPROC]
                ef[ent, F_ACQ] = now
                pc = S_STEP
            elif pc == R_END:
                # Give back the core, the GIL and the lock, in that order.
                if has_cores:
                    core = ei[ent, I_RCORE]
                    if sib:
                        core_proc[core] = -1
                    if sib and qs[pl0 + core, 2] > 0:
                        hsize, eid = _to_placed(ei, qs, pl0 + core, ht, hq, hsize, eid, now, core)
                    elif qs[0, 2] > 0:
                        w = _next(ei, qs, 0)
                        hsize, eid = _at(ht, hq, hsize, eid, now, w, core)
                    else:
                        fstack[fbase[0] + ftop[0]] = core
                        ftop[0] += 1
                q = ei[ent, I_RGIL]
                if q >= 0:
                    if qs[q, 2] > 0:
                        w, gu = _hand_over(ei, qs, q, draws, gu, fifo)
                        hsize, eid = _at(ht, hq, hsize, eid, now, w, 0)
                    else:
                        ftop[q] += 1
                q = ei[ent, I_RLOCK]
                if q >= 0:
                    if qs[q, 2] > 0:
                        w = _next(ei, qs, q)
                        hsize, eid = _at(ht, hq, hsize, eid, now, w, 0)
                    else:
                        ftop[q] += 1
                p = ei[ent, I_RPROC]
                if p >= 0:
                    active_p[p] -= 1
                ef[ent, F_LASTDUR] = ef[ent, F_RDUR]
                ef[ent, F_LASTSTART] = ef[ent, F_RSTART]
                pc = ei[ent, I_RET]
            # ============================================== Model.on_thread
            elif pc == OT_START:
                ef[ent, F_CPU] = 0.0
                p = -1 if own_process else ei[ent, I_PROC]
                qg = (1 + p) if thread_gil else -1
                split = thread_gil and calls > 0
                d = demand[i] + fixed
                if not split and free_running:
                    cpu = 0.0
                    if d > 0 or paid:
                        sw = 1 + calls
                        cpu = d + sw * cs if sw else d
                        bstart[nb] = now
                        bend[nb] = now + cpu
                        nb += 1
                    ef[ent, F_CPU] = cpu
                    if cpu + io[i] > 0:
                        hsize, eid = _at(ht, hq, hsize, eid, now + (cpu + io[i]), ent, 0)
                        ei[ent, I_PC] = OT_DONE
                        break
                    pc = OT_DONE
                    continue
                first = d - calls * call_cpu if split else d
                if first > 0 or paid or wake > 0:
                    _phase(
                        ei, ef, ent, qg, -1, 0, p, 1 if split else 1 + calls, first, OT_FIRST_RAN
                    )
                    pc = R_START
                else:
                    pc = OT_AFTER_FIRST
            elif pc == OT_FIRST_RAN:
                ef[ent, F_CPU] += ef[ent, F_LASTDUR]
                pc = OT_AFTER_FIRST
            elif pc == OT_AFTER_FIRST:
                split = thread_gil and calls > 0
                if not split:
                    if io[i] > 0:
                        hsize, eid = _at(ht, hq, hsize, eid, now + io[i], ent, 0)
                        ei[ent, I_PC] = OT_DONE
                        break
                    pc = OT_DONE
                    continue
                ei[ent, I_ROUNDS] = calls if sequential else 1
                pc = OT_ROUND
            elif pc == OT_ROUND:
                if ei[ent, I_ROUNDS] == 0:
                    pc = OT_DONE
                    continue
                ei[ent, I_ROUNDS] -= 1
                rounds = calls if sequential else 1
                per_round = io[i] / rounds
                hsize, eid = _at(ht, hq, hsize, eid, now + per_round, ent, 0)
                ei[ent, I_PC] = OT_ROUND_RUN
                break
            elif pc == OT_ROUND_RUN:
                rounds = calls if sequential else 1
                p = ei[ent, I_PROC]
                # Only a split phase comes here: under a thread's GIL.
                _phase(ei, ef, ent, 1 + p, -1, 0, p, 1, call_cpu * calls / rounds, OT_ROUND_RAN)
                pc = R_START
            elif pc == OT_ROUND_RAN:
                ef[ent, F_CPU] += ef[ent, F_LASTDUR]
                pc = OT_ROUND
            elif pc == OT_DONE:
                pc = ei[ent, I_OTRET]
            # ============================================ ReactorPool.session
            elif pc == RP_TOP:
                c = ei[ent, I_CONN]
                p = ei[ent, I_PROC]
                if k_per_conn > 0:
                    nc = _open(copen_h, canswered, copen, cclose, nc, c, now)
                admit[i] = now
                if loop_cost > 0:
                    _phase(
                        ei,
                        ef,
                        ent,
                        (1 + p) if gil else -1,
                        1 + nproc + p,
                        1,
                        p,
                        0,
                        loop_cost,
                        RP_AFTER_LOOP,
                    )
                    pc = R_START
                else:
                    pc = RP_AFTER_LOOP
            elif pc == RP_AFTER_LOOP:
                q = 1 + 2 * nproc + ei[ent, I_PROC]
                if ftop[q] > 0:
                    ftop[q] -= 1
                    val = fstack[fbase[q] + ftop[q]]
                    pc = RP_GOT
                else:
                    _wait(ei, qs, q, ent)
                    ei[ent, I_PC] = RP_GOT
                    break
            elif pc == RP_GOT:
                ei[ent, I_WORKER] = val
                start[i] = now
                worker[i] = val
                process[i] = ei[ent, I_PROC]
                ei[ent, I_OTRET] = RP_AFTER_THREAD
                pc = OT_START
            elif pc == RP_AFTER_THREAD:
                cpu = ef[ent, F_CPU]
                cpu_time[i] = cpu
                q = 1 + 2 * nproc + ei[ent, I_PROC]
                wk = ei[ent, I_WORKER]
                if qs[q, 2] > 0:
                    w = _next(ei, qs, q)
                    hsize, eid = _at(ht, hq, hsize, eid, now, w, wk)
                else:
                    fstack[fbase[q] + ftop[q]] = wk
                    ftop[q] += 1
                end[i] = now
                ended[n_ended] = i
                n_ended += 1
                service[i] = 0.0 + loop_cost + cpu + io[i] + 0.0
                outcome[i] = 0
                in_system -= 1
                pc = LOOP_NEXT  # answered, then the next request
            # ================================================ Async.session
            elif pc == A_TOP:
                c = ei[ent, I_CONN]
                p = ei[ent, I_PROC]
                if k_per_conn > 0:
                    nc = _open(copen_h, canswered, copen, cclose, nc, c, now)
                admit[i] = now
                if in_passes:
                    # ``Async._in_passes``: its bytes are I/O for its loop's
                    # next pass; the loop answers it (``A_FIN``) or wakes it
                    # when a backend call returns (``A_TIMER``).
                    worker[i] = p
                    process[i] = p
                    _enqueue(ei, pl, p, 2, ent, K_READ, 0)
                    dv = ecap + p
                    if ei[dv, I_WAITING] == 1 and ei[dv, I_KICKED] == 0:
                        ei[dv, I_KICKED] = 1
                        hsize, eid = _at(ht, hq, hsize, eid, now, dv, 0)
                    break
                d = demand[i] + fixed
                if d > 0:
                    _phase(ei, ef, ent, -1, 1 + nproc + p, 1, p, 0, d, A_RAN)
                    pc = R_START
                else:
                    ef[ent, F_CPU] = 0.0
                    start[i] = now
                    pc = A_AFTER
            elif pc == A_RAN:
                ef[ent, F_CPU] = ef[ent, F_LASTDUR]
                start[i] = ef[ent, F_LASTSTART]
                pc = A_AFTER
            elif pc == A_AFTER:
                p = ei[ent, I_PROC]
                worker[i] = p
                process[i] = p
                cpu_time[i] = ef[ent, F_CPU]
                if io[i] > 0:
                    hsize, eid = _at(ht, hq, hsize, eid, now + io[i], ent, 0)
                    ei[ent, I_PC] = A_FIN
                    break
                pc = A_FIN
            elif pc == A_FIN:
                end[i] = now
                ended[n_ended] = i
                n_ended += 1
                service[i] = 0.0 + ef[ent, F_CPU] + io[i] + 0.0
                outcome[i] = 0
                in_system -= 1
                pc = LOOP_NEXT
            elif pc == A_TIMER:
                # A call's reply is I/O for the loop (``Passes._call``).
                p = ei[ent, I_PROC]
                _enqueue(ei, pl, p, 2, ent, K_HOP, reply_hops)
                dv = ecap + p
                if ei[dv, I_WAITING] == 1 and ei[dv, I_KICKED] == 0:
                    ei[dv, I_KICKED] = 1
                    hsize, eid = _at(ht, hq, hsize, eid, now, dv, 0)
                break
            # ======================================== Passes._run, a loop's driver
            elif pc == DRV_WOKE:
                ei[ent, I_WAITING] = 0
                pc = DRV_PASS
            elif pc == DRV_PASS:
                p = ei[ent, I_PROC]
                if pl[p, 0] < 0 and pl[p, 2] < 0:
                    # Nothing ready: asleep until an item comes.
                    ei[ent, I_ASLEEP] = 1
                    ei[ent, I_WAITING] = 1
                    ei[ent, I_KICKED] = 0
                    ei[ent, I_PC] = DRV_WOKE
                    break
                # The pass: the callbacks scheduled, then the I/O ready.
                head = pl[p, 0]
                if head >= 0:
                    ei[pl[p, 1], I_INEXT] = pl[p, 2]
                else:
                    head = pl[p, 2]
                ei[ent, I_BATCH] = head
                pl[p, 0] = -1
                pl[p, 1] = -1
                pl[p, 2] = -1
                pl[p, 3] = -1
                pc = DRV_ITEM
            elif pc == DRV_ITEM:
                x = ei[ent, I_BATCH]
                if x < 0:
                    pc = DRV_PASS
                    continue
                ei[ent, I_BATCH] = ei[x, I_INEXT]
                ei[ent, I_CUR] = x
                ef[ent, F_LASTSTART] = now
                ef[ent, F_LASTDUR] = 0.0
                if ei[x, I_ITEM] == K_STEP:
                    d = demand[ei[x, I_REQ]] + fixed
                    if d > 0:
                        p = ei[ent, I_PROC]
                        # Awake, the loop holds its process active meanwhile.
                        ei[ent, I_AWAKE] = 1 - ei[ent, I_ASLEEP]
                        active_p[p] += ei[ent, I_AWAKE]
                        _phase(ei, ef, ent, -1, -1, 1, p, 0, d, DRV_RAN)
                        pc = R_START
                        continue
                pc = DRV_THEN
            elif pc == DRV_RAN:
                active_p[ei[ent, I_PROC]] -= ei[ent, I_AWAKE]
                ei[ent, I_ASLEEP] = 0
                pc = DRV_THEN
            elif pc == DRV_THEN:
                # What the item does (``Passes.request``'s callbacks).
                x = ei[ent, I_CUR]
                xi = ei[x, I_REQ]
                p = ei[ent, I_PROC]
                kind = ei[x, I_ITEM]
                if kind == K_READ:
                    _enqueue(ei, pl, p, 0, x, K_STEP, 0)
                elif kind == K_STEP:
                    start[xi] = ef[ent, F_LASTSTART]
                    cpu_time[xi] = ef[ent, F_LASTDUR]
                    ef[x, F_CPU] = ef[ent, F_LASTDUR]
                    if io[xi] > 0:
                        ei[x, I_ROUNDS] = pass_rounds
                        ei[x, I_PC] = A_TIMER
                        hsize, eid = _at(ht, hq, hsize, eid, now + io[xi] / pass_rounds, x, 0)
                    else:
                        _enqueue(ei, pl, p, 0, x, K_DONE, 0)
                elif kind == K_HOP:
                    if ei[x, I_HOPN] > 1:
                        _enqueue(ei, pl, p, 0, x, K_HOP, ei[x, I_HOPN] - 1)
                    else:
                        # The task resumes: its next call, or its answer.
                        ei[x, I_ROUNDS] -= 1
                        if ei[x, I_ROUNDS] > 0:
                            ei[x, I_PC] = A_TIMER
                            hsize, eid = _at(ht, hq, hsize, eid, now + io[xi] / pass_rounds, x, 0)
                        else:
                            _enqueue(ei, pl, p, 0, x, K_DONE, 0)
                else:
                    # The done callback writes the answer: the session goes on.
                    ei[x, I_PC] = A_FIN
                    hsize, eid = _at(ht, hq, hsize, eid, now, x, 0)
                pc = DRV_ITEM
            elif pc == LOOP_NEXT:
                # ``Model.answered`` and ``next_on_slot`` for the loop models.
                c = ei[ent, I_CONN]
                if k_per_conn > 0:
                    canswered[c] += 1
                    if canswered[c] == k_per_conn:
                        cclose[copen_h[c]] = now
                        copen_h[c] = -1
                h = chead[c]
                if h >= 0:
                    following = next_on_conn[h]
                    chead[c] = following
                    ei[ent, I_REQ] = h
                    if mode == LOOP_THEN_POOL:
                        pc = RP_TOP
                    elif mode == TWO_TIER:
                        pc = TT_TOP
                    else:
                        pc = A_TOP
                else:
                    nfree = _idle(chead, free_slots, nfree, c, ent)
                    break
            # =========================== thread-pool, one request a connection
            elif pc == T_TOP:
                ei[ent, I_HANDLE] = nc
                copen[nc] = now
                cclose[nc] = np.inf
                nc += 1
                p = by_accept[accepted]
                accepted += 1
                ei[ent, I_PROC] = p
                q = 1 + 2 * nproc + p
                if ftop[q] > 0:
                    ftop[q] -= 1
                    val = fstack[fbase[q] + ftop[q]]
                    pc = T_GOT
                else:
                    _wait(ei, qs, q, ent)
                    ei[ent, I_PC] = T_GOT
                    break
            elif pc == T_GOT:
                ei[ent, I_WORKER] = val
                # Accepted now: the backlog holds none of the server's memory.
                copen[ei[ent, I_HANDLE]] = now
                admit[i] = now
                start[i] = now
                worker[i] = val
                process[i] = ei[ent, I_PROC]
                ei[ent, I_OTRET] = T_SERVED
                pc = OT_START
            elif pc == T_SERVED:
                cpu = ef[ent, F_CPU]
                cpu_time[i] = cpu
                end[i] = now
                ended[n_ended] = i
                n_ended += 1
                service[i] = cpu + io[i]
                outcome[i] = 0
                in_system -= 1
                c = ei[ent, I_CONN]
                h = chead[c]
                if h >= 0:
                    chead[c] = next_on_conn[h]
                # ``release``: the worker goes back to its pool, then the connection closes.
                wk = ei[ent, I_WORKER]
                q = 1 + 2 * nproc + wk // workers
                if qs[q, 2] > 0:
                    w = _next(ei, qs, q)
                    hsize, eid = _at(ht, hq, hsize, eid, now, w, wk)
                else:
                    fstack[fbase[q] + ftop[q]] = wk
                    ftop[q] += 1
                cclose[ei[ent, I_HANDLE]] = now
                if h >= 0:
                    ei[ent, I_REQ] = h
                    pc = T_TOP
                else:
                    nfree = _idle(chead, free_slots, nfree, c, ent)
                    break
            # ========================================= Dedicated._fork_all
            elif pc == ACC_NEXT:
                if ei[ent, I_ROUNDS] >= ei[ent, I_HANDLE]:
                    ei[ent, I_PC] = DONE
                    break
                p = ei[ent, I_PROC]
                _phase(ei, ef, ent, (1 + p) if gil else -1, -1, 0, p, 0, acc_cost, ACC_RAN)
                pc = R_START
            elif pc == ACC_RAN:
                d = acc_order[ei[ent, I_ROUNDS]]
                ei[ent, I_ROUNDS] += 1
                made[n_made] = now
                n_made += 1
                if d >= 0:
                    if child_start > 0.0:
                        cunstarted[d] = 1
                    hsize, eid = _at(ht, hq, hsize, eid, now, sig_base + d, 0)
                else:
                    eid += 1  # its event, with nobody to resume
                pc = ACC_NEXT
            elif pc == D_FORKED:
                pc = D_TOP
                dc = ei[ent, I_CONN]
                if cunstarted[dc] == 1:
                    # The child's own start, on a core, a process of its own.
                    cunstarted[dc] = 0
                    _phase(ei, ef, ent, -1, -1, 0, -1, 0, child_start, D_TOP)
                    pc = R_START
            # ====================== thread-per-connection, persistent clients
            elif pc == D_TOP:
                admit[i] = now
                start[i] = now
                worker[i] = ei[ent, I_WORKER]
                process[i] = ei[ent, I_PROC]
                ei[ent, I_OTRET] = D_SERVED
                pc = OT_START
            elif pc == D_SERVED:
                cpu = ef[ent, F_CPU]
                cpu_time[i] = cpu
                end[i] = now
                ended[n_ended] = i
                n_ended += 1
                service[i] = cpu + io[i]
                outcome[i] = 0
                in_system -= 1
                c = ei[ent, I_CONN]
                h = chead[c]
                if h >= 0:
                    chead[c] = next_on_conn[h]
                    ei[ent, I_REQ] = h
                    pc = D_TOP
                else:
                    nfree = _idle(chead, free_slots, nfree, c, ent)
                    break
            # ================================================ TwoTier.session
            elif pc == TT_TOP:
                c = ei[ent, I_CONN]
                if k_per_conn > 0:
                    nc = _open(copen_h, canswered, copen, cclose, nc, c, now)
                admit[i] = now
                ef[ent, F_FRONT] = 0.0
                if front_in > 0:
                    fp = ei[ent, I_HANDLE]
                    _phase(ei, ef, ent, -1, 1 + nproc + fp, 0, fp, 0, front_in, TT_FRONT_RAN)
                    pc = R_START
                else:
                    pc = TT_HOP
            elif pc == TT_FRONT_RAN:
                ef[ent, F_FRONT] += ef[ent, F_LASTDUR]
                pc = TT_HOP
            elif pc == TT_HOP:
                if hop_in > 0:
                    hsize, eid = _at(ht, hq, hsize, eid, now + hop_in, ent, 0)
                    ei[ent, I_PC] = TT_BACK
                    break
                pc = TT_BACK
            elif pc == TT_BACK:
                q = 1 + 2 * nproc
                if ftop[q] > 0:
                    ftop[q] -= 1
                    val = fstack[fbase[q] + ftop[q]]
                    pc = TT_GOT
                else:
                    _wait(ei, qs, q, ent)
                    ei[ent, I_PC] = TT_GOT
                    break
            elif pc == TT_GOT:
                ei[ent, I_WORKER] = val
                ei[ent, I_PROC] = val // workers  # the back process, for on_thread
                start[i] = now
                worker[i] = val
                process[i] = val // workers
                ei[ent, I_OTRET] = TT_AFTER_THREAD
                pc = OT_START
            elif pc == TT_AFTER_THREAD:
                cpu_time[i] = ef[ent, F_CPU]
                q = 1 + 2 * nproc
                wk = ei[ent, I_WORKER]
                if qs[q, 2] > 0:
                    w = _next(ei, qs, q)
                    hsize, eid = _at(ht, hq, hsize, eid, now, w, wk)
                else:
                    fstack[fbase[q] + ftop[q]] = wk
                    ftop[q] += 1
                let_go[i] = now
                if hop_out > 0:
                    hsize, eid = _at(ht, hq, hsize, eid, now + hop_out, ent, 0)
                    ei[ent, I_PC] = TT_OUT
                    break
                pc = TT_OUT
            elif pc == TT_OUT:
                if front_out > 0:
                    fp = ei[ent, I_HANDLE]
                    _phase(ei, ef, ent, -1, 1 + nproc + fp, 0, fp, 0, front_out, TT_OUT_RAN)
                    pc = R_START
                else:
                    pc = TT_FIN
            elif pc == TT_OUT_RAN:
                ef[ent, F_FRONT] += ef[ent, F_LASTDUR]
                pc = TT_FIN
            elif pc == TT_FIN:
                end[i] = now
                ended[n_ended] = i
                n_ended += 1
                hops = hop_in + hop_out
                service[i] = 0.0 + ef[ent, F_FRONT] + hops + ef[ent, F_CPU] + io[i] + 0.0
                outcome[i] = 0
                in_system -= 1
                pc = LOOP_NEXT
            # Last in the chain: taken only with copies woken on each other's
            # cores (``sibling``). Before the states above, they cost every
            # hotter state two comparisons: the default platform's loop took
            # about 7% longer (8 interleaved pairs of benchmarks/bench_summary.py).
            elif pc in (R_PLACE, S_PLACE):
                # Taken after a wait: woken on a core another copy's holder
                # runs on, with probability ``sibling`` (``Cpu._beside_sibling``).
                pc = R_CORE if pc == R_PLACE else S_REGIL
                p = ei[ent, I_RPROC]
                if p >= 0:
                    c, pu = _placed_on(core_proc, cores, p, pdraws, pu, sibling)
                    if c >= 0:
                        _wait(ei, qs, pl0 + c, ent)
                        ei[ent, I_PC] = R_PLACED if pc == R_CORE else S_PLACED
                        break
            elif pc in (R_PLACED, S_PLACED):
                if val < 0:
                    # Another was woken there first: queue for a core as usual.
                    pc = R_CORE if pc == R_PLACED else S_REGIL
                else:
                    ei[ent, I_RCORE] = val
                    if pc == R_PLACED:
                        pc = R_RUN
                    else:
                        core_proc[val] = ei[ent, I_RPROC]
                        ef[ent, F_ACQ] = now
                        pc = S_STEP
            else:
                raise AssertionError("unknown program counter")
        if full:
            break
    return (
        n,
        arrival[:n],
        admit[:n],
        start[:n],
        end[:n],
        service[:n],
        cpu_time[:n],
        worker[:n],
        process[:n],
        outcome[:n],
        let_go[:n],
        ended[:n_ended],
        bstart[:nb],
        bend[:nb],
        copen[:nc],
        cclose[:nc],
        overloaded,
        truncated,
        full,
        n_made,
    )
