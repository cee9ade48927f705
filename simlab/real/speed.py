"""A speed reference for the machine, measured beside every real run.

Near saturation a few per cent of CPU speed moves the offered load a lot,
and this machine is a VM whose speed (host load, frequency) can differ from
one session to the next. The servers' handlers spin their work in *thread
CPU time* (``simlab.real.work.burn_cpu``), which hides such a change, but
everything else a server and the lab do (parse, dispatch, switch, send,
load, probe) runs faster or slower with the machine. The reference measures
that part's speed: a fixed, deterministic pure-Python workload that resembles
a server's own overheads, timed on the wall clock, so that two runs' (or two
sessions') references can be compared.

One *op* is one keep-alive HTTP/1.1 exchange through the servers' own h11
code (``simlab.real.protocol.Exchange``: feed a fixed ``GET /work?...``,
parse it and its query, frame the 200 with its ``x-service-us`` header) plus
the dictionary and string work a server does around it (a per-connection
record updated, a log line formatted). The ops are run in ``BATCHES``
batches of ``OPS_PER_BATCH`` each (about 40 ms in all on this machine), and
the rate is ``OPS_PER_BATCH`` over the *fastest* batch's wall time (min of
k): a batch that a preemption or an interrupt slowed down says little about
the machine's speed, the fastest one says what the machine could do. The
median batch's rate is kept too: where it falls well below the best, the
core was shared while the reference ran.

The work is the same in every call (``work`` returns a checksum of it, the
same every time); only its time differs.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from simlab.real.protocol import Exchange, WorkRequest

__all__ = [
    "BATCHES",
    "OPS_PER_BATCH",
    "REPEATABILITY",
    "WORK",
    "SpeedSample",
    "SpeedWatch",
    "measure_speed",
    "session_speed",
    "work",
]

OPS_PER_BATCH = 40
BATCHES = 7
# The workload's name: a reference is comparable only with one of the same
# work, so a change of the work below must change this name.
WORK = "h11-exchange-v1"
# How far two references of the machine at one speed can differ (relative):
# below this, a ratio between sessions says nothing. Medians of 20 references
# repeated within 0.9-1.7% (half-range over blocks) while the machine's speed
# held, with or without a niced hog on either core (docs/real-lab.md, "The
# speed reference").
REPEATABILITY = 0.03
_REQUEST = (
    b"GET /work?cpu_ms=1.000&io_ms=20.000&calls=1&fanout=sequential HTTP/1.1\r\n"
    b"host: 127.0.0.1:8080\r\n"
    b"user-agent: simlab-loadgen\r\n"
    b"accept: */*\r\n"
    b"\r\n"
)


@dataclass(frozen=True)
class SpeedSample:
    """One measurement of the reference: its best and median batch rates (ops/s)."""

    ops_s: float
    median_ops_s: float
    batches: int = BATCHES
    ops_per_batch: int = OPS_PER_BATCH


def _batch(n: int) -> int:
    """``n`` ops on one keep-alive connection; a checksum of what they produced."""
    exchange = Exchange()
    record: dict[str, float] = {"requests": 0.0, "cpu_ms": 0.0, "io_ms": 0.0}
    total = 0
    for k in range(n):
        exchange.feed(_REQUEST)
        request = exchange.next()
        if not isinstance(request, WorkRequest):  # the fixed request always parses
            raise RuntimeError(f"speed reference: the fixed request parsed as {request!r}")
        record["requests"] += 1
        record["cpu_ms"] += request.cpu_ms
        record["io_ms"] += sum(request.io_ms)
        answer = exchange.respond(1000 + k % 7, request.headers())
        line = f"{k} GET /work 200 {len(answer)} cpu={request.cpu_ms:.3f} {request.fanout}"
        total += len(answer) + len(line) + len(record)
    return total + int(record["requests"] + record["cpu_ms"] + record["io_ms"])


def work(n: int = OPS_PER_BATCH) -> int:
    """Run one batch of ``n`` ops untimed; returns its checksum (the same every call)."""
    return _batch(n)


def measure_speed(batches: int = BATCHES, ops_per_batch: int = OPS_PER_BATCH) -> SpeedSample:
    """Time ``batches`` batches of the reference's ops and return their rates."""
    if batches < 1 or ops_per_batch < 1:
        raise ValueError(f"batches(={batches}) and ops_per_batch(={ops_per_batch}) must be >= 1")
    _batch(ops_per_batch // 10 + 1)  # warm the code paths and caches, untimed
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        _batch(ops_per_batch)
        times.append(time.perf_counter() - start)
    return SpeedSample(
        ops_s=ops_per_batch / min(times),
        median_ops_s=ops_per_batch / statistics.median(times),
        batches=batches,
        ops_per_batch=ops_per_batch,
    )


# The watch inside a run: one batch of WATCH_OPS every WATCH_INTERVAL_S
# (about 2.5 ms of a core each: 0.5% of one core), and the best of each
# WATCH_GROUP batches in a row as one reading of the speed. The speed's
# bands change within a second or two (docs/real-lab.md), so the ends of a
# run alone say little about the run. But in a run the machine is busy: a
# batch shares its core with the run's own processes, so the watch's speed
# mixes the host's speed with the run's contention (measured: about 7,400
# ops/s at 50 requests/s, 4,800-5,400 at saturation, minutes apart). It is
# a record, not a gate; the stalls are the gate's (simlab.gate).
WATCH_OPS = OPS_PER_BATCH // 2
WATCH_INTERVAL_S = 0.5
WATCH_GROUP = 4
# A wake-up of the watch this late (ms) is a stall of the machine, not a
# busy core: its thread asks for the highest priority a thread can have
# without a real-time class (``WATCH_NICE``) and wants 0.5% of a core. At
# the measuring process's priority instead, a server of 200 busy processes
# (process-per-connection at 700/s: every run's watch 0.5-2.6 s late, 07:21
# UTC validation of 2 December) held it back as a stall would: where the
# thread cannot have that priority (not root), its stalls are recorded and
# not gated on (``watch_nice``).
STALL_MS = 250.0
WATCH_NICE = -20


def _steal_s() -> float | None:
    """CPU time the hypervisor took from this VM, all cores (s), or None."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _raise_priority() -> int | None:
    """Give the calling thread ``WATCH_NICE`` if allowed; its nice after (None: unknown).

    On Linux a nice value is a thread's own: setpriority on the thread's id
    changes that thread alone."""
    tid = threading.get_native_id()
    # Not allowed (not root): the process's priority stays.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, tid, WATCH_NICE)
    try:
        return os.getpriority(os.PRIO_PROCESS, tid)
    except OSError:
        return None


class SpeedWatch(threading.Thread):
    """The machine's speed during a real run, and its stalls.

    Every ``WATCH_INTERVAL_S`` the thread times one batch of the reference's
    ops and reads the VM's steal time (``/proc/stat``); ``summary(window)``
    gives, over the window: the mean and the slowest of the groups' best
    rates (ops/s, in the same unit as ``measure_speed``'s ``ops_s``, but on a
    busy machine: see ``WATCH_OPS``),
    the cores' steal time per second, and the thread's latest wake-up after
    its due time (ms): a machine that stalled holds every thread back."""

    def __init__(self, interval_s: float = WATCH_INTERVAL_S) -> None:
        super().__init__(daemon=True, name="speed-watch")
        self.interval_s = interval_s
        self.nice: int | None = None  # the thread's nice, once it runs
        # (wall time, ops/s of one batch, lateness s, steal s)
        self.samples: list[tuple[float, float, float, float | None]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        self.nice = _raise_priority()
        _batch(OPS_PER_BATCH // 10 + 1)  # warm, untimed
        # A stall is the time the thread was away beyond the wait it asked
        # for, from the end of one batch to the start of the next: wherever
        # it falls in that stretch (the wait, or the bookkeeping around it).
        ended = time.perf_counter()
        asked = 0.0
        while not self._halt.is_set():
            start = time.perf_counter()
            late = max(0.0, start - ended - asked)
            _batch(WATCH_OPS)
            ended = time.perf_counter()
            self.samples.append((time.time(), WATCH_OPS / (ended - start), late, _steal_s()))
            asked = max(0.0, self.interval_s - (ended - start))
            self._halt.wait(asked)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def summary(self, window: tuple[float, float]) -> dict[str, float] | None:
        """``during_ops_s``, ``during_min_ops_s``, ``steal_cores``,
        ``stall_max_ms`` over ``window`` (wall time); None with too few reads."""
        inside = [s for s in self.samples if window[0] <= s[0] <= window[1]]
        if len(inside) < WATCH_GROUP:
            return None
        groups = [
            max(s[1] for s in inside[k : k + WATCH_GROUP])
            for k in range(0, len(inside) - WATCH_GROUP + 1, WATCH_GROUP)
        ]
        steal = None
        first, last = inside[0], inside[-1]
        if first[3] is not None and last[3] is not None and last[0] > first[0]:
            steal = (last[3] - first[3]) / (last[0] - first[0])
        out = {
            "during_ops_s": statistics.fmean(groups),
            "during_min_ops_s": min(groups),
            "stall_max_ms": max(s[2] for s in inside) * 1e3,
        }
        if self.nice is not None:
            out["watch_nice"] = float(self.nice)
        if steal is not None:
            out["steal_cores"] = steal
        return out


def session_speed(references: Sequence[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """The median of some runs' ``speed_reference`` (``MeasuredSummary``'s, as
    JSON), with its range and count: a session's speed. Only references of
    the current ``WORK`` count; None when there are none."""
    values = sorted(
        float(r["ops_s"])
        for r in references
        if r is not None and r.get("work") == WORK and r.get("ops_s") is not None
    )
    if not values:
        return None
    return {
        "median_ops_s": statistics.median(values),
        "min_ops_s": values[0],
        "max_ops_s": values[-1],
        "runs": len(values),
        "work": WORK,
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m simlab.real.speed [--repeat N]``: N references in a row,
    under the real-run lock, their spread printed as one JSON object (how
    repeatable the reference is on this machine, as it is now)."""
    import argparse  # noqa: PLC0415
    import json  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from simlab.real.lock import exclusive  # noqa: PLC0415

    p = argparse.ArgumentParser(prog="python -m simlab.real.speed", description=main.__doc__)
    p.add_argument("--repeat", type=int, default=20)
    a = p.parse_args(argv)
    if not 2 <= a.repeat <= 1000:
        print(f"simlab: error: --repeat(={a.repeat}) must be in [2, 1000]", file=sys.stderr)
        return 2
    with exclusive(lambda msg: print(msg, file=sys.stderr)):
        samples = [measure_speed() for _ in range(a.repeat)]
    best = sorted(s.ops_s for s in samples)
    centre = statistics.median(best)
    deciles = statistics.quantiles(best, n=10)
    out = {
        "work": WORK,
        "repeat": a.repeat,
        "median_ops_s": centre,
        "min_ops_s": best[0],
        "p10_ops_s": deciles[0],
        "p90_ops_s": deciles[-1],
        "max_ops_s": best[-1],
        # Half the 10-90% range, relative to the median: what REPEATABILITY bounds.
        "half_spread": (deciles[-1] - deciles[0]) / 2 / centre,
        "median_of_batch_medians_ops_s": statistics.median(s.median_ops_s for s in samples),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
