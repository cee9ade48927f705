"""The spread of the wall-clock overheads, fitted through the model.

Calibration prices two overheads that hold no server resource by their means
(``simlab.calibrate.fit_path``): ``rtt_us``, the client and loopback path of
a request, and ``call_latency_us``, what a backend call adds to its requested
delay. Their spread sets the latency's tail at light load. It is fitted here
from the same light runs' measured latency p50 and p99, *through the model*:

1. Each light run is simulated as it ran (the lab's neighbours on the cores,
   every fitted cost in place, the run's seed) once for each candidate cv of
   the call latency (``CVS``), with no client path. The client path is drawn
   after the run (``simlab.metrics.client_path``: it holds no server
   resource), so each candidate cv of it is added to the same simulated
   requests. That gives a table of simulated p50 and p99 per run, per call
   cv, per path cv (``SpreadTable``), with common random numbers across cvs
   (a lognormal's draws are the same normals whatever its cv).
2. The cvs chosen minimise, over the runs, a soft-L1 loss of the log
   ratios of simulated to measured p50 and p99: a run whose p99 rests on a
   few slow requests (600 requests in a run) counts linearly, not
   quadratically, beyond the noise scale (the residuals' MAD at the
   least-squares choice).
3. Their 95% intervals come from a bootstrap over runs, which only sums
   rows of the table: no run is simulated again.

Each overhead's shape is its cv around its fitted mean (a lognormal; 0,
fixed). A cv whose interval reaches 0 or the top of the grid is not
identified: it is held at the preset's (0, a fixed overhead), labelled an
assumption with no interval shown, and the other is fitted again.

A shape with a floor (a fixed share of the mean, a lognormal rest) was
tried the same way and the runs did not identify its share for either
overhead (CHANGELOG, 2026-12-01): it is not a parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from simlab.params import Platform
from simlab.real.grids import Run
from simlab.real.peers import RESEMBLES, as_designed

__all__ = [
    "CVS",
    "PARAMETERS",
    "SpreadFit",
    "SpreadTable",
    "choose",
    "fit_spread_table",
    "spread_parameters",
    "spread_summary",
    "spread_table",
]


# The cvs tried for each overhead (0: fixed).
CVS = (0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
# The parameters, in the order of a choice's tuple (the path's, the call's).
PARAMETERS = ("rtt_cv", "call_latency_cv")
BOOTSTRAPS = 400
REPLICATIONS = 4
# The client path's draws in the fit: a generator of their own per run and
# replication, the same for every shape (common random numbers).
PATH_STREAM = 0x5D7
METHOD = (
    "through the model: each light run simulated as it ran at every cv on a grid, "
    "the cvs whose simulated latency p50 and p99 best match the measured ones "
    "(soft-L1 on log ratios) over the runs; 95% bootstrap interval over runs"
)


@dataclass(frozen=True)
class SpreadTable:
    """Simulated latency p50 and p99 (ms) of each light run at each pair of cvs.

    ``predicted[r, c, t]`` is run ``r`` with the call latency's cv ``call[c]``
    and the client path's ``rtt[t]``: (p50, p99). ``measured[r]`` is the
    run's own (p50, p99)."""

    labels: tuple[str, ...]
    calls: tuple[int, ...]
    measured: np.ndarray
    predicted: np.ndarray
    rtt: tuple[float, ...] = CVS
    call: tuple[float, ...] = CVS

    def residuals(self) -> np.ndarray:
        """Log ratio of simulated to measured, (runs, call cvs, path cvs, 2)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            out: np.ndarray = np.log(self.predicted / self.measured[:, None, None, :])
        return out


def spread_table(
    light: Sequence[tuple[int, Run, dict[str, Any]]],
    platform: Platform,
    *,
    rtt: tuple[float, ...] = CVS,
    call: tuple[float, ...] = CVS,
) -> SpreadTable:
    """Simulate each light run (``(k, run, summary)``, seeded ``k + 1`` as the
    path fit seeds it) at every call cv, and add every path cv's draws.

    ``platform`` holds every fitted cost and the overheads' means; the runs
    with no backend call are simulated once (no call cv touches them). The
    fast engine runs where it applies (``engine="auto"``; not beside the
    lab's neighbours)."""
    from simlab.simulation import simulate  # noqa: PLC0415 - heavy, and only here

    bare = platform.with_(rtt_us=0.0, rtt_cv=0.0)
    measured = np.array(
        [[s["latency_ms"]["p50"], s["latency_ms"]["p99"]] for _, _, s in light], dtype=float
    )
    predicted = np.empty((len(light), len(call), len(rtt), 2))
    for r, (k, run, _) in enumerate(light):
        model = RESEMBLES.get(run.target, run.target)
        cvs = call if run.workload.calls > 0 else call[:1]
        for c, cv in enumerate(cvs):
            result = simulate(
                model, run.workload, bare.with_(call_latency_cv=cv),
                as_designed(run.target, run.arch), duration=run.duration, warmup=run.warmup,
                replications=REPLICATIONS, seed=k + 1, engine="auto", tables=False,
            )  # fmt: skip
            latencies = [rep["latency"] for rep in result.numbers]
            predicted[r, c] = _with_paths(latencies, platform, rtt, k)
        if len(cvs) == 1:
            predicted[r, 1:] = predicted[r, 0]
    return SpreadTable(
        labels=tuple(run.label() for _, run, _ in light),
        calls=tuple(run.workload.calls for _, run, _ in light),
        measured=measured,
        predicted=predicted,
        rtt=rtt,
        call=call,
    )


def _with_paths(
    latencies: list[np.ndarray], platform: Platform, cvs: tuple[float, ...], k: int
) -> np.ndarray:
    """(p50, p99) in ms of the pooled replications' latencies with each path
    cv's draws added, as the summary pools them."""
    out = np.empty((len(cvs), 2))
    for t, cv in enumerate(cvs):
        dist = platform.with_(rtt_cv=cv).rtt()
        pooled = np.concatenate(
            [
                lat + dist.sample(np.random.default_rng([k, rep, PATH_STREAM]), len(lat))
                for rep, lat in enumerate(latencies)
            ]
        )
        out[t] = np.percentile(pooled, [50, 99]) * 1e3
    return out


def _soft_l1(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 2.0 * (np.sqrt(1.0 + z * z) - 1.0)
    return out


@dataclass(frozen=True)
class SpreadFit:
    """The chosen cvs, their bootstrap intervals and which are identified.

    A cv held at the preset's keeps, in ``estimates`` and ``ci95``, what the
    last fit that had it free found."""

    values: tuple[float, ...]  # in the order of ``PARAMETERS``; held ones at 0
    estimates: tuple[float, ...]
    ci95: tuple[tuple[float, float], ...]
    identified: tuple[bool, ...]
    seen: bool  # some light run makes a backend call
    scale: float
    rows: tuple[dict[str, Any], ...]

    def value(self, name: str) -> float:
        return self.values[PARAMETERS.index(name)]


def _loss(table: SpreadTable, scale: float) -> np.ndarray:
    """Each run's soft-L1 loss at each (call cv, path cv)."""
    loss = _soft_l1(table.residuals() / scale).sum(axis=-1)
    return np.where(np.isfinite(loss), loss, np.inf)


def _allowed(cvs: tuple[float, ...], free: bool) -> np.ndarray:
    return np.array([free or cv == 0 for cv in cvs], dtype=bool)


def choose(loss: np.ndarray, pick: np.ndarray, call_ok: np.ndarray, rtt_ok: np.ndarray) -> int:
    """The flat index (call cv, path cv) of the least total loss over the runs
    ``pick``, among the allowed cvs (the first on a tie)."""
    total = loss[pick].sum(axis=0)
    total = np.where(call_ok[:, None] & rtt_ok[None, :], total, np.inf)
    return int(np.argmin(total))


def _params_of(table: SpreadTable, flat: int) -> tuple[float, float]:
    c, t = divmod(flat, len(table.rtt))
    return table.rtt[t], table.call[c]


def _scale(table: SpreadTable, call_ok: np.ndarray, rtt_ok: np.ndarray) -> float:
    """The noise scale: the MAD of the log residuals at the least-squares
    choice, and never under 1% (a ratio the report would not show)."""
    e = table.residuals()
    sq = np.where(np.isfinite(e), e * e, np.inf).sum(axis=-1)
    flat = choose(sq, np.arange(len(table.labels)), call_ok, rtt_ok)
    c, t = divmod(flat, len(table.rtt))
    at = e[:, c, t, :].ravel()
    at = at[np.isfinite(at)]
    mad = float(np.median(np.abs(at - np.median(at)))) * 1.4826 if len(at) else 0.0
    return max(mad, 0.01)


def fit_spread_table(table: SpreadTable, *, boots: int = BOOTSTRAPS, seed: int = 0) -> SpreadFit:
    """Choose the cvs and say which the runs identify.

    Both start free. A cv whose bootstrap interval reaches 0 or the top of
    the grid is held at 0 (a fixed overhead, the preset's) and the other is
    fitted again, until every free cv is identified."""
    n = len(table.labels)
    seen = any(table.calls)
    # A call latency no run pays (no backend call) is not fitted.
    free = [True, seen]
    tops = (table.rtt[-1], table.call[-1])
    rng = np.random.default_rng(seed)
    picks = [rng.integers(0, n, n) for _ in range(boots)]
    estimates = [0.0, 0.0]
    ci = [(0.0, 0.0), (0.0, 0.0)]
    while True:
        rtt_ok, call_ok = _allowed(table.rtt, free[0]), _allowed(table.call, free[1])
        scale = _scale(table, call_ok, rtt_ok)
        loss = _loss(table, scale)
        flat = choose(loss, np.arange(n), call_ok, rtt_ok)
        best = _params_of(table, flat)
        draws = np.array([_params_of(table, choose(loss, p, call_ok, rtt_ok)) for p in picks])
        lo, hi = np.percentile(draws, [2.5, 97.5], axis=0)
        ok = [free[j] and 0 < best[j] < tops[j] and lo[j] > 0 and hi[j] < tops[j] for j in (0, 1)]
        for j in (0, 1):
            if free[j]:
                estimates[j], ci[j] = best[j], (float(lo[j]), float(hi[j]))
        drop = [j for j in (0, 1) if free[j] and not ok[j]]
        if not drop:
            break
        for j in drop:
            free[j] = False
    c, t = divmod(flat, len(table.rtt))
    rows = tuple(
        {
            "run": table.labels[r],
            "calls": table.calls[r],
            "measured_p50_ms": float(table.measured[r, 0]),
            "measured_p99_ms": float(table.measured[r, 1]),
            "simulated_p50_ms": float(table.predicted[r, c, t, 0]),
            "simulated_p99_ms": float(table.predicted[r, c, t, 1]),
        }
        for r in range(n)
    )
    return SpreadFit(
        values=tuple(float(v) for v in best),
        estimates=tuple(float(v) for v in estimates),
        ci95=tuple(ci),
        identified=tuple(ok),
        seen=seen,
        scale=scale,
        rows=rows,
    )


def spread_parameters(fit: SpreadFit, preset: Platform) -> dict[str, dict[str, Any]]:
    """How a profile records each cv: the estimate with its interval where
    identified, else the preset's value as an assumption."""
    out: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(PARAMETERS):
        if fit.identified[j]:
            out[name] = {
                "value": fit.values[j],
                "ci95": list(fit.ci95[j]),
                "identified": True,
                "method": METHOD,
            }
            continue
        lo, hi = fit.ci95[j]
        if j == 1 and not fit.seen:
            why = "no light run makes a backend call"
        elif lo <= 0:
            why = f"its bootstrap interval [{lo:.3g}, {hi:.3g}] includes 0"
        else:
            why = f"its bootstrap interval [{lo:.3g}, {hi:.3g}] reaches the top of the grid"
        out[name] = {
            "value": getattr(preset, name),
            "identified": False,
            "assumption": f"not identified by these runs ({why}); the preset's cv "
            "(0: a fixed overhead)",
            "estimate": fit.estimates[j],
            "method": METHOD,
        }
    return out


def spread_summary(fit: SpreadFit) -> dict[str, Any]:
    """What the profile keeps of the fit: its noise scale and each run's match."""
    return {"scale_log": fit.scale, "rows": list(fit.rows)}
