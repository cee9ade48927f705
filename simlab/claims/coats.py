"""The two coats, summarised from experiments/callbacks_vs_coroutines' results table.

The experiment measures, for each coat (``simlab.real.peers.coats``), its
program's memory holding N pending operations at two sizes, and its CPU
time over rounds of requests passing K times through the scheduler at two
values of K. ``summarise`` turns those raw rows into one row per coat:

- ``kib_per_pending``: the slope of resident (PSS) plus own kernel memory
  between the two sizes, the mean over repetitions (``kib_spread``: the
  largest minus the smallest repetition's slope);
- ``hop_us``: the slope of CPU microseconds per request against K, by least
  squares over every run, with its 95% confidence interval (``hop_ci95``);
  ``request_us`` is the intercept, a request with no hop (creating and
  finishing the operation); ``hop_identified`` is False when the interval
  reaches zero or cannot be computed (the slope is then not identified);
- ``cores_used``: CPU seconds per wall second over the hop runs.

Both the experiment's findings and the claims ledger read it, so that the
same table gives the same numbers in both.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["COAT_OF", "hop_relation", "slope_ci", "summarise"]

# The coat each program wears (the notes: "一件是异步回调，另一件是coroutine").
COAT_OF = {
    "node-callbacks": "callbacks",
    "node-promises": "coroutines",
    "asyncio": "coroutines",
    "go": "coroutines",
    "erlang": "coroutines",
    "kotlin": "coroutines",
}


def slope_ci(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> tuple[float, float, float, float]:
    """(slope, intercept, CI low, CI high) of y on x by least squares; the 95%
    interval from the slope's standard error and Student's t with n - 2 degrees
    of freedom (NaN when there are fewer than three points or one x)."""
    from scipy import stats  # noqa: PLC0415 - the ledger's other rows do not need it

    n = len(x)
    if n < 2 or np.unique(x).size < 2:
        return math.nan, math.nan, math.nan, math.nan
    fit = stats.linregress(x, y)
    if n < 3:
        return float(fit.slope), float(fit.intercept), math.nan, math.nan
    half = float(stats.t.ppf(0.975, n - 2)) * float(fit.stderr)
    return float(fit.slope), float(fit.intercept), fit.slope - half, fit.slope + half


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """One row per measured coat (see the module's docstring), in the table's order."""
    rows = []
    for coat in dict.fromkeys(df.loc[df["kind"].isin(["pending", "hops"]), "coat"]):
        mem = df[(df["kind"] == "pending") & (df["coat"] == coat)]
        hop = df[(df["kind"] == "hops") & (df["coat"] == coat)]
        slopes = []
        for _, rep in mem.groupby("rep"):
            by_n = rep.sort_values("n")
            if by_n["n"].nunique() < 2:
                continue
            lo, hi = by_n.iloc[0], by_n.iloc[-1]
            used = (hi["pss_kib"] + hi["kernel_kib"]) - (lo["pss_kib"] + lo["kernel_kib"])
            slopes.append(float(used) / float(hi["n"] - lo["n"]))
        hop_us, request_us, lo_ci, hi_ci = slope_ci(
            hop["hops"].to_numpy(float), hop["cpu_us_per_request"].to_numpy(float)
        )
        rows.append(
            {
                "coat": coat,
                "style": COAT_OF.get(str(coat), "coroutines"),
                "runtime": str(mem["runtime"].iloc[0] if len(mem) else hop["runtime"].iloc[0]),
                "kib_per_pending": float(np.mean(slopes)) if slopes else math.nan,
                "kib_spread": float(np.ptp(slopes)) if len(slopes) > 1 else math.nan,
                "hop_us": hop_us,
                "hop_ci95": (lo_ci, hi_ci),
                "hop_identified": bool(math.isfinite(lo_ci) and lo_ci > 0),
                "request_us": request_us,
                "cores_used": float(hop["cpu_s"].sum() / hop["wall_s"].sum())
                if len(hop)
                else math.nan,
            }
        )
    return pd.DataFrame(rows)


def hop_relation(a: pd.Series, b: pd.Series) -> str:
    """How coat a's CPU per hop stands to coat b's: "more" or "less" when their
    95% intervals do not overlap, else "same" (within the measurements' noise)."""
    (alo, ahi), (blo, bhi) = a["hop_ci95"], b["hop_ci95"]
    if not all(map(math.isfinite, (alo, ahi, blo, bhi))) or (alo <= bhi and blo <= ahi):
        return "same"
    return "more" if a["hop_us"] > b["hop_us"] else "less"
