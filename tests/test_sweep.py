"""Sweeps: file checking with line numbers, local and Dask runs alike, resuming after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from simlab.cli import main
from simlab.sweep import SweepError, load_spec, parse_spec, sweep
from simlab.sweep.run import TIMING

SMALL = """
models = ["async", "reactor-pool"]
seed = 7
[base]
duration = 2
warmup = 0.5
replications = 2
workers = 8
[grid]
rate = [50, 150]
io_ms = [10, 40]
cpu_dist = ["fixed", "exp"]
"""


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def comparable(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=list(TIMING)).sort_values("run_id").reset_index(drop=True)


def test_grid_expands_every_combination(tmp_path):
    spec = load_spec(write(tmp_path, SMALL))
    points = spec.points()
    assert len(points) == 8 and spec.models == ("async", "reactor-pool")
    assert {(p["rate"], p["io_ms"], p["cpu_dist"]) for p in points} == {
        (r, io, d) for r in (50.0, 150.0) for io in (10.0, 40.0) for d in ("fixed", "exp")
    }
    assert all(p["seed"] == 7 and p["workers"] == 8 for p in points)


def test_whatif_range():
    spec = parse_spec(
        """
        [whatif]
        parameter = "connections"
        from = 100
        to = 100000
        points = 4
        scale = "log"
        """.replace("\n        ", "\n")
    )
    assert spec.varied == {"connections": [100, 1000, 10000, 100000]}
    assert spec.kind == "whatif"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("[base]\nrate = 10\nbogus_knob = 3\n[grid]\nio_ms = [1]\n", 3, "unknown parameter"),
        ("[base]\nrate = 10\n[grid]\n", 3, "empty"),
        ("[grid]\nio_ms = []\n", 2, "no values"),
        ("[base]\nduration = 5\n[grid]\nrate = [10, 'fast']\n", 4, "rate segment 1 ('fast')"),
        ("[base]\nworkers = 2.5\n[grid]\nrate = [10]\n", 2, "workers must be an integer"),
        ("[grid]\nrate = [10\n", 2, "not valid TOML"),
        ("[grid]\nrate = 10 20\n", 2, "not valid TOML"),
        ('models = ["nginx"]\n[grid]\nrate = [10]\n', 1, "unknown model"),
        ("[grid]\nrate = [10]\n[whatif]\nparameter = 'rate'\nvalues = [1]\n", None, "exactly one"),
        ("[whatif]\nparameter = 'io_ms'\nfrom = 0\nto = 10\npoints = 3\nscale = 'log'\n", 6, "log"),
        ("[base]\nplatform = 'no-such-profile'\n[grid]\nrate = [10]\n", 2, "no-such-profile"),
    ],
)
def test_bad_sweep_files_name_the_line(tmp_path, text, line, words):
    path = write(tmp_path, text)
    with pytest.raises(SweepError) as err:
        load_spec(path)
    message = str(err.value)
    assert words in message
    assert str(path) in message
    if line is not None:
        assert f"line {line}" in message, message


def test_bad_sweep_file_is_one_line_on_the_cli(tmp_path, capsys):
    path = write(tmp_path, "[base]\nrate = -1\n[grid]\nio_ms = [1]\n")
    code = main(["sweep", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "line 2" in err and len(err.strip().splitlines()) == 1
    code = main(["sweep", str(tmp_path / "missing.toml")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot read" in err


def test_local_and_dask_give_identical_tables(tmp_path):
    spec = load_spec(write(tmp_path, SMALL))
    local = sweep(spec, workers=2, out=tmp_path / "local", plots=False)
    dask = sweep(spec, workers=2, dask="local", out=tmp_path / "dask", plots=False)
    assert local.computed == dask.computed == 16
    assert local.table["run_id"].is_unique and len(local.table) == 16
    pd.testing.assert_frame_equal(comparable(local.table), comparable(dask.table))
    # Written tables match what was returned, in both formats.
    disk = pd.read_parquet(tmp_path / "local" / "results.parquet")
    pd.testing.assert_frame_equal(comparable(disk), comparable(local.table))
    assert len(pd.read_csv(tmp_path / "dask" / "results.csv")) == 16
    manifest = json.loads((tmp_path / "dask" / "sweep.json").read_text())
    assert manifest["git_revision"] and manifest["machine"]["cores"]
    assert manifest["sweep"]["seed"] == 7


def test_a_killed_sweep_resumes_with_every_run_once(tmp_path):
    """Kill a sweep (SIGKILL, no chance to clean up) after a few runs, run it
    again: the finished runs are kept as they were, the rest computed, and the
    table has each run exactly once."""
    path = write(
        tmp_path,
        SMALL.replace("rate = [50, 150]", "rate = [50, 100, 150]").replace(
            "duration = 2", "duration = 4"
        ),
    )
    out = tmp_path / "out"
    points = out / "points"
    cmd = [sys.executable, "-m", "simlab", "sweep", str(path), "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--workers", "1", "--no-plots"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if points.exists() and len(list(points.glob("*.json"))) >= 3:
                break
            if proc.poll() is not None:
                pytest.fail("the sweep finished before it could be killed")
            time.sleep(0.05)
        else:
            pytest.fail("the sweep made no progress in 120 s")
    finally:
        if proc.pid > 1 and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    kept = {p.name: p.stat().st_mtime_ns for p in points.glob("*.json")}
    assert 3 <= len(kept) < 24
    result = sweep(load_spec(path), workers=2, out=out, plots=False)
    assert result.reused == len(kept)
    assert result.computed == 24 - len(kept)
    table = result.table
    assert len(table) == 24 and table["run_id"].is_unique
    for name, mtime in kept.items():
        assert (points / name).stat().st_mtime_ns == mtime, "a finished run was recomputed"
    on_disk = pd.read_csv(out / "results.csv")
    assert sorted(on_disk["run_id"]) == sorted(table["run_id"])
