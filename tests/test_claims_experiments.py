"""The big box and thread-ratio experiments: they run (--quick), and every
findings sentence follows its results table (a doctored copy flips it).

The scripts are imported as modules (importing one does not run it), as in
tests/test_findings.py."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
COMMITTED = ROOT / "data" / "experiments"


def script(name: str) -> ModuleType:
    module_name = f"experiment_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXPERIMENTS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def committed(name: str) -> pd.DataFrame:
    return pd.read_csv(COMMITTED / name / "results.csv")


def line(text: str, *needles: str) -> str:
    found = [x for x in text.splitlines() if all(n in x for n in needles)]
    assert len(found) == 1, (needles, found)
    return found[0]


@pytest.mark.parametrize("name", ["big_box", "thread_ratio", "multi_loop"])
def test_runs_quick(tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    subprocess.run(
        [sys.executable, str(EXPERIMENTS / f"{name}.py"), "--quick", "--out", str(out)],
        check=True,
        timeout=600,
        capture_output=True,
    )
    for f in ("results.csv", "findings.md", "meta.json"):
        assert (out / f).stat().st_size > 0, f
    assert list(out.glob("*.png"))
    meta = json.loads((out / "meta.json").read_text())
    assert meta["quick"]
    assert meta["seed"] == 1


def test_big_box_counts_follow_the_table() -> None:
    bb = script("big_box")
    df = committed("big_box")
    notes = df["question"] == "notes-rate"
    many = int((df[notes]["connections_held"] >= bb.HUNDRED_K).sum())
    text = bb.findings(df)
    assert f"{many} of {int(notes.sum())} designs hold 100,000" in text
    doctored = df.copy()
    doctored.loc[notes, "connections_held"] = 50_000
    assert f"0 of {int(notes.sum())} designs hold 100,000" in bb.findings(doctored)


def test_big_box_gil_sentence_needs_a_gil_limit() -> None:
    bb = script("big_box")
    df = committed("big_box")
    text = bb.findings(df)
    has_gil = bool((df["limit"] == "GIL").any())
    assert ("The GIL, not the cores" in text) == has_gil
    doctored = df.copy()
    doctored.loc[doctored["limit"] == "GIL", "limit"] = "cores"
    assert "The GIL, not the cores" not in bb.findings(doctored)
    assert "first limit **GIL**" not in bb.findings(doctored)


def test_big_box_million_fits_follow_the_table() -> None:
    bb = script("big_box")
    df = committed("big_box")
    mil = df["question"] == "million"
    doctored = df.copy()
    doctored.loc[mil, "fits"] = False
    doctored.loc[mil, "over"] = "memory"
    text = bb.findings(doctored)
    assert f"0 of {int(mil.sum())} designs fit a million" in text


def test_thread_ratio_band_follows_the_orders() -> None:
    tr = script("thread_ratio")
    df = committed("thread_ratio")
    first = (df["generation"] == "first") & df["notes_case"].astype(bool)
    assert first.any()
    scenario = str(df[first]["scenario"].iloc[0])
    text = tr.findings(df)
    inside = df[first]["orders"].between(1.75, 3.25).all()
    assert ("within the notes' 2-3 orders" in line(text, f"**first generation, {scenario}**")) == (
        inside
    )
    doctored = df.copy()
    doctored.loc[first, "orders"] = 1.0
    assert "outside the notes' 2-3 orders" in line(
        tr.findings(doctored), f"**first generation, {scenario}**"
    )


def test_thread_ratio_one_to_one_follows_the_threads() -> None:
    tr = script("thread_ratio")
    df = committed("thread_ratio")
    seq = df["scenario"].str.contains("sequential") & (df["generation"] == "first")
    assert "1:1 (within 10%)" in line(tr.findings(df), "sequential calls**")
    doctored = df.copy()
    doctored.loc[seq, "threads_per_connection"] = 0.5
    assert "not 1:1" in line(tr.findings(doctored), "sequential calls**")


def test_multi_loop_sentences_follow_the_table() -> None:
    ml = script("multi_loop")
    df = committed("multi_loop")
    cores = int(df["cores"].max())
    text = ml.findings(df)
    free = line(text, f"**{cores} cores, without a GIL**")
    gil = line(text, f"**{cores} cores, with the GIL**")
    assert "they use more cores than one loop" in free
    assert "they use no more than one loop's core" in gil
    doctored = df.copy()
    pick = (doctored["cores"] == cores) & ~doctored["gil"] & (doctored["design"] == "loops")
    doctored.loc[pick, "throughput_rps"] = float(
        df[(df["cores"] == cores) & ~df["gil"] & (df["design"] == "one")]["throughput_rps"].iloc[0]
    )
    flipped = line(ml.findings(doctored), f"**{cores} cores, without a GIL**")
    assert "they use no more than one loop's core" in flipped
    assert "The loops serve less than the processes" in flipped


def test_big_box_names_cpu_limits_with_idle_cores() -> None:
    bb = script("big_box")
    df = committed("big_box")
    cpu = (df["question"] == "notes-rate") & (df["limit"] == "cores")
    short = int((df[cpu]["cores_busy"] < bb.CORES * bb.FEW_CORES_SHARE).sum())
    text = bb.findings(df)
    assert (f"{short} stop with fewer than" in text) == (short > 0)
    doctored = df.copy()
    doctored.loc[cpu, "cores_busy"] = float(bb.CORES)
    assert "stop with fewer than" not in bb.findings(doctored)
