"""How long a blocking server's thread waits for a short connection's close.

A client that sends one request a connection reads its answer and closes.
The server's thread (a pool's worker, an iterative server's only thread) does
not know the connection is over until it reads that close: after its answer
it goes back to ``recv``, which returns the end only once the answer has
reached the client, the client has read it and closed, and the FIN has come
back over loopback. Until then the thread cannot take another connection, so
at high load this wait is part of what a connection holds its thread for
(``Platform.close_wait_us``).

``measure_close_wait`` runs the real ``iterative`` server with its record of
these waits on (``ServerOptions.close_waits``: from the answer's ``sendall``
to the end read, per connection), under simlab's load generator with one
request a connection at a light load, a few times, and gives the mean of
the runs' mean waits: a measurement, not a fit. At a light load: the wait
is the client's and loopback's, not the server's queue; near saturation the
validation's cases waited somewhat longer (89 to 155 us on 3 December,
against 77 from this benchmark), so the model's constant is an assumption
there.
"""

from __future__ import annotations

import glob
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from simlab.distributions import Fixed
from simlab.params import Architecture, Workload

__all__ = ["RATE", "RUNS", "measure_close_wait", "read_close_waits"]

# Light enough that the server's one thread is mostly free (rho about 0.2):
# the wait is the client's and loopback's, not a queue's.
RATE = 30.0
CONNECTIONS = 100
RUNS = 3
SECONDS = 4.0
WARMUP = 1.0
# Fewer closes than this in a run and its mean says little.
MIN_CLOSES = 50


def read_close_waits(stem: Path) -> list[float]:
    """Every wait (seconds) the server's processes wrote under ``stem``'s name."""
    waits: list[float] = []
    for path in sorted(stem.parent.glob(f"{glob.escape(stem.name)}.*")):
        # One file a process, ``stem.<pid>``, each written whole (nothing else
        # the glob may find: a write's temporary file starts with a dot).
        if path.name.removeprefix(f"{stem.name}.").isdigit():
            waits += [float(x) for x in path.read_text().split()]
    return waits


def measure_close_wait(runs: int = RUNS, seconds: float = SECONDS, seed: int = 1) -> dict[str, Any]:
    """The mean time (us) the ``iterative`` server's thread waited for a
    connection's close after its answer, over ``runs`` real runs of
    ``seconds``, with the runs' means as its ``range``; ``identified`` is
    False (``wait_us`` None) unless every run recorded at least ``MIN_CLOSES``
    closes."""
    from simlab.real.measure import MeasureOptions, measure  # noqa: PLC0415 - the lab loads on use

    if runs < 1:
        raise ValueError(f"runs(={runs!r}) must be >= 1")
    if not seconds > 0:
        raise ValueError(f"seconds(={seconds!r}) must be > 0")
    workload = Workload(
        connections=CONNECTIONS,
        rate=RATE,
        cpu=Fixed(0.001),
        io=Fixed(0.005),
        requests_per_connection=1,
    )
    records: list[dict[str, Any]] = []
    for r in range(runs):
        with tempfile.TemporaryDirectory(prefix="simlab-close-") as tmp:
            stem = Path(tmp) / "waits"
            measure(
                MeasureOptions(
                    "iterative",
                    workload,
                    Architecture(),
                    duration=seconds,
                    warmup=WARMUP,
                    seed=seed + r,
                    save=False,
                    close_waits=stem,
                )
            )
            waits = np.asarray(read_close_waits(stem)) * 1e6
        records.append(
            {
                "closes": len(waits),
                "mean_us": float(waits.mean()) if len(waits) else None,
                "p50_us": float(np.percentile(waits, 50)) if len(waits) else None,
                "p90_us": float(np.percentile(waits, 90)) if len(waits) else None,
            }
        )
    identified = all(rec["closes"] >= MIN_CLOSES for rec in records)
    means = [float(rec["mean_us"]) for rec in records if rec["mean_us"] is not None]
    return {
        "wait_us": statistics.mean(means) if identified else None,
        "range_us": [min(means), max(means)] if identified else None,
        "identified": identified,
        "runs": records,
        "method": (
            f"{runs} real runs of the iterative server, {CONNECTIONS} clients at {RATE:g}/s "
            f"with one request a connection for {seconds:g} s each: the server's own record of "
            "each connection's time from its answer's sendall to the client's close read; "
            "the mean of the runs' means"
        ),
    }
