"""experiments/callbacks_vs_coroutines: every findings sentence follows the
results table (a doctored copy flips it), and so does the ledger's row.

The script is imported as a module (importing it does not run it), as in
tests/test_claims_experiments.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from simlab.claims import ledger
from simlab.claims.coats import summarise
from tests.test_claims_experiments import committed, line, script

NAME = "callbacks_vs_coroutines"
DATA = Path(__file__).resolve().parent.parent / "data"


def _params() -> dict[str, object]:
    return {"concurrency": 100}


def _scale_large(df: pd.DataFrame, coat: str, factor: float) -> pd.DataFrame:
    """The table with ``coat``'s memory at its larger size scaled by ``factor``
    (its slope, the KiB per pending operation, grows accordingly)."""
    out = df.copy()
    pending = out["kind"] == "pending"
    big = pending & (out["coat"] == coat) & (out["n"] == out.loc[pending, "n"].max())
    out.loc[big, "pss_kib"] *= factor
    return out


def test_the_node_memory_sentence_follows_the_slopes() -> None:
    cv = script(NAME)
    df = committed(NAME)
    per = summarise(df).set_index("coat")
    ratio = (
        per.loc["node-promises", "kib_per_pending"] / per.loc["node-callbacks", "kib_per_pending"]
    )
    text = line(cv.findings(df, _params()), "**The two coats on one runtime (Node.js)**")
    if abs(ratio - 1) <= cv.SAME:
        assert "the same memory as" in text
    else:
        assert ("the memory of" in text) == (ratio > 1)
    # Promises made five times as heavy: the sentence must say so.
    doctored = _scale_large(df, "node-promises", 5.0)
    text = line(cv.findings(doctored, _params()), "**The two coats on one runtime (Node.js)**")
    assert "x the memory of a pending callback" in text


def test_the_hop_sentence_needs_intervals_apart() -> None:
    cv = script(NAME)
    df = committed(NAME)
    doctored = df.copy()
    hops = doctored["kind"] == "hops"
    most = doctored.loc[hops, "hops"].max()
    pick = hops & (doctored["coat"] == "node-promises") & (doctored["hops"] == most)
    # Every promise hop 50 us dearer, in every repetition: the intervals part.
    doctored.loc[pick, "cpu_us_per_request"] += 50.0 * most
    text = line(cv.findings(doctored, _params()), "**The two coats on one runtime (Node.js)**")
    assert "a hop through an awaited promise costs more CPU than" in text
    same = df.copy()
    rows = same.loc[same["kind"] == "hops"]
    for coat in ("node-callbacks", "node-promises"):
        same.loc[rows.index[rows["coat"] == coat], "cpu_us_per_request"] = rows.loc[
            rows["coat"] == "node-callbacks", "cpu_us_per_request"
        ].to_numpy()
    text = line(cv.findings(same, _params()), "**The two coats on one runtime (Node.js)**")
    assert "the same CPU as (95% intervals overlap)" in text


def test_a_heavy_coat_leaves_the_light_list() -> None:
    cv = script(NAME)
    df = committed(NAME)
    text = line(cv.findings(df, _params()), "**Beside a thread**")
    assert "every coat frees the waiting request" in text
    doctored = _scale_large(df, "erlang", 200.0)
    text = line(cv.findings(doctored, _params()), "**Beside a thread**")
    assert "erlang in less than 10x less" in text


def test_the_ad_service_verdicts_are_counted() -> None:
    cv = script(NAME)
    df = committed(NAME)
    plans = df[df["kind"] == "plan"]
    ok = int(plans["feasible"].astype(bool).sum())
    assert f"{ok} of {len(plans)} runtimes serve the ad service" in cv.findings(df, _params())
    doctored = df.copy()
    doctored.loc[doctored["kind"] == "plan", "feasible"] = False
    assert f"0 of {len(plans)} runtimes serve" in cv.findings(doctored, _params())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    out = tmp_path / "data"
    for part in ("experiments", "profiles"):
        shutil.copytree(DATA / part, out / part, ignore=shutil.ignore_patterns("*.png", "*.html"))
    return out


def _verdict(root: Path) -> str:
    (row,) = ledger(root, only=["callbacks-vs-coroutines"])
    return row.verdict


def _twins(df: pd.DataFrame) -> pd.DataFrame:
    """The table with Node.js promises measured exactly as Node.js callbacks."""
    out = df.copy()
    for kind in ("pending", "hops"):
        cb = out[(out["kind"] == kind) & (out["coat"] == "node-callbacks")]
        pr = out.index[(out["kind"] == kind) & (out["coat"] == "node-promises")]
        cols = ["pss_kib", "kernel_kib"] if kind == "pending" else ["cpu_us_per_request", "hops"]
        out.loc[pr, cols] = cb[cols].to_numpy()
    return out


def test_the_ledger_row_flips_with_the_table(root: Path) -> None:
    path = root / "experiments" / NAME / "results.csv"
    df = pd.read_csv(path)
    assert _verdict(root) in ("confirmed", "refined")
    # The two coats alike on one runtime, every coat light: confirmed.
    twins = _twins(df)
    twins.to_csv(path, index=False)
    assert _verdict(root) == "confirmed"
    # Promises' pending operations made three times the callbacks' (still light): refined.
    per = summarise(twins).set_index("coat")
    pending = twins["kind"] == "pending"
    sizes = sorted(twins.loc[pending, "n"].unique())
    big = pending & (twins["coat"] == "node-promises") & (twins["n"] == sizes[-1])
    apart = twins.copy()
    apart.loc[big, "pss_kib"] += (
        2 * per.loc["node-callbacks", "kib_per_pending"] * (sizes[-1] - sizes[0])
    )
    apart.to_csv(path, index=False)
    assert _verdict(root) == "refined"
    # A coat that needs a thread's worth of memory per pending operation: contradicted.
    _scale_large(df, "go", 500.0).to_csv(path, index=False)
    assert _verdict(root) == "contradicted"
