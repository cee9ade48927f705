"""Every experiment runs with --quick, writes well-formed outputs, and states what its
data shows. Those that measure real servers are marked ``real``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from simlab.registry import MODEL_NAMES
from tests.procs import outlive

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"


def run(name: str, out: Path) -> pd.DataFrame:
    argv = [sys.executable, str(EXPERIMENTS / f"{name}.py"), "--quick", "--out", str(out)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            _, err = proc.communicate(timeout=600)
        except BaseException:
            # Interrupted (tests/interrupts.py) or too slow: the script is asked to
            # stop as SIGTERM asks it, stopping its servers and load by pid;
            # subprocess.run's SIGKILL would leave them running.
            proc.terminate()
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    for f in ("results.csv", "findings.md", "meta.json"):
        assert (out / f).stat().st_size > 0, f
    assert list(out.glob("*.png")), "no figure"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["quick"] and meta["seed"] == 1 and meta["git_revision"]
    df = pd.read_csv(out / "results.csv")
    for col in ("experiment", "seed", "git_revision", "machine"):
        assert col in df.columns
    assert not list(out.parent.glob(f".{name}.*")), "a temporary folder was left behind"
    return df


@pytest.mark.real  # it starts real servers on loopback
def test_c10k_idle_connections(tmp_path: Path) -> None:
    df = run("c10k_idle_connections", tmp_path / "c10k")
    sim = df[(df["source"] == "simulated") & (df["platform"] == "cpython")]
    asy = sim[sim["model"] == "async"]
    tpc = sim[sim["model"] == "thread-per-connection"].sort_values("connections")
    assert (asy["threads"] == 1).all()
    assert (tpc["threads"] == tpc["connections"] + 1).all()
    at = tpc[tpc["connections"] == 10_000].iloc[0]
    # The notes' claim, settled: reserved address space far beyond what is resident.
    assert at["reserved_mib"] > 50 * at["resident_mib"]
    real = df[df["source"] == "measured"]
    assert set(real["model"]) == {"thread-per-connection", "reactor-pool", "async"}
    measured_tpc = real[real["model"] == "thread-per-connection"].sort_values("connections")
    assert measured_tpc["threads"].is_monotonic_increasing
    findings = (tmp_path / "c10k" / "findings.md").read_text()
    assert f"{at['threads']:,.0f}" in findings


def test_business_io_growth(tmp_path: Path) -> None:
    df = run("business_io_growth", tmp_path / "io")
    rp = df[df["model"] == "reactor-pool"].sort_values("io_ms")
    asy = df[df["model"] == "async"]
    assert rp["threads"].is_monotonic_increasing
    assert rp["threads"].iloc[-1] > 50 * rp["threads"].iloc[0]
    assert asy["threads"].max() <= 8
    assert df["feasible"].all()
    text = (tmp_path / "io" / "findings.md").read_text()
    assert f"{rp['threads'].iloc[-1]:,.0f}" in text


@pytest.mark.real  # it starts real servers on loopback
def test_jvm_ten_thousand_threads(tmp_path: Path) -> None:
    df = run("jvm_ten_thousand_threads", tmp_path / "jvm")
    real = df[df["source"] == "measured"]
    assert set(real["target"]) == {"java-threads", "go", "node", "tomcat-nio", "async"}
    jt = real[real["target"] == "java-threads"].sort_values("connections")
    assert (jt["threads"] >= jt["connections"]).all()  # a thread per connection, for real
    lo, hi = jt.iloc[0], jt.iloc[-1]
    # Each thread reserves its default 1 MiB stack (plus a guard page or so).
    per_reserved = (hi["virtual_mib"] - lo["virtual_mib"]) / (hi["connections"] - lo["connections"])
    assert 1.0 <= per_reserved < 1.1
    assert (real[real["target"] == "async"]["threads"] == 1).all()
    text = (tmp_path / "jvm" / "findings.md").read_text()
    assert f"{hi['threads']:,.0f} threads" in text


@pytest.mark.real  # it starts real servers on loopback
def test_coordinated_omission(tmp_path: Path) -> None:
    df = run("coordinated_omission", tmp_path / "co").set_index(["generator", "stalled"])
    closed, open_ = df.loc[("closed", True)], df.loc[("open", True)]
    # The stall is invisible in the closed loop's p99 and dominates the open loop's.
    assert open_["p99_ms"] > 5 * closed["p99_ms"]
    assert open_["p99_ms"] > 100
    assert closed["p100_ms"] > 300  # only its max remembers the stall
    assert df.loc[("open", False), "p99_ms"] < 100


@pytest.mark.real  # it interrupts an experiment that runs real servers
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_experiment_leaves_nothing(tmp_path: Path, sig: int) -> None:
    # The coordinated-omission experiment runs real servers for a while: it is
    # interrupted once its temporary folder exists (not before, or "nothing
    # left behind" would hold of a script that never started), servers and all.
    out = tmp_path / "co"
    proc = subprocess.Popen(
        [sys.executable, str(EXPERIMENTS / "coordinated_omission.py"), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".coordinated_omission.*")) and time.monotonic() < deadline:
        assert proc.poll() is None, "the experiment ended before it could be interrupted"
        time.sleep(0.02)
    assert list(tmp_path.glob(".coordinated_omission.*")), "the experiment never started writing"
    # Its own processes (servers, backend, load generator), taken while it
    # runs: once it has exited, any it left behind are init's children, not
    # this test's, and a look at this test's children alone would miss them.
    spawned: list[psutil.Process] = []
    while not spawned and time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(psutil.NoSuchProcess):
            spawned = psutil.Process(proc.pid).children(recursive=True)
        time.sleep(0.02)
    assert spawned, "the experiment started no process before it could be interrupted"
    assert proc.poll() is None, "the experiment finished before it could be interrupted"
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert not out.exists()
    assert not list(tmp_path.glob(".coordinated_omission.*"))
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before - {proc.pid}
    assert not left, f"processes left behind: {left}"
    # What it started is stopped by the time it exits (by pid, on its way
    # out); a few seconds' grace for a killed process's last moments.
    orphans = outlive(spawned, 5)
    assert not orphans, f"processes the experiment left behind: {orphans}"


@pytest.mark.real  # it starts real servers on loopback
def test_ad_service_fanout(tmp_path: Path) -> None:
    df = run("ad_service_fanout", tmp_path / "ad")
    full = df[df["scale"].str.startswith("full")].set_index(["fanout", "model"])
    # Sequential calls hold a worker for the whole 6 s: thousands of threads.
    assert full.loc[("sequential", "reactor-pool"), "workers"] > 5_000
    assert full.loc[("parallel", "reactor-pool"), "workers"] < 500
    assert full.loc[("sequential", "async"), "threads"] <= 8
    small = df[df["scale"].str.startswith("small")]
    assert set(small["source"]) == {"measured", "simulated"}
    assert (small["p99_ms"] > 0).all()


@pytest.mark.real  # it starts real servers on loopback
def test_thread_count_collapse(tmp_path: Path) -> None:
    df = run("thread_count_collapse", tmp_path / "tc")
    assert set(df["server"]) == {"thread-per-connection", "async"}
    measured = df[df["source"] == "measured"]
    for _, group in measured.groupby("server"):
        part = group.sort_values("concurrency")
        # Latency grows with the clients once throughput stops growing (Little).
        assert part["p50_ms"].iloc[-1] > part["p50_ms"].iloc[0]
    assert (tmp_path / "tc" / "thread-per-connection" / "usl.json").exists()


@pytest.mark.real  # it starts real servers on loopback
def test_gil_overload_collapse(tmp_path: Path) -> None:
    df = run("gil_overload_collapse", tmp_path / "goc")
    assert set(df["source"]) == {"measured", "simulated", "what-if"}
    measured = df[df["source"] == "measured"]
    # Every level measured at both switch intervals, and served something.
    assert set(zip(measured["concurrency"], measured["switch_ms"], strict=True)) == {
        (n, s) for n in (25, 200) for s in (5.0, 50.0)
    }
    assert (measured["throughput_rps"] > 0).all() and (measured["cpu_ms_per_request"] > 0).all()
    # Past its capacity: the offered 600 req/s of 2 ms each is more than one core serves.
    assert (measured["throughput_rps"] < 600).all()
    what_if = df[df["source"] == "what-if"]
    assert len(set(what_if["poll_us"])) >= 3
    # The findings' served rate of the fewest connections at 5 ms is the table's.
    text = (tmp_path / "goc" / "findings.md").read_text()
    fewest = measured[(measured["switch_ms"] == 5.0) & (measured["concurrency"] == 25)]
    served = f"serves {fewest['throughput_rps'].mean():,.0f} req/s on 25 connections"
    assert served in text


@pytest.mark.real  # it starts real servers on loopback
def test_multicore(tmp_path: Path) -> None:
    df = run("multicore", tmp_path / "mc")
    sim = df[(df["source"] == "simulated") & (df["model"] == "async") & df["gil"]]
    eight = sim[sim["cores"] == 8].set_index("processes")["throughput_rps"]
    # Under the GIL, a second process nearly doubles a CPU-bound server on 8 cores.
    assert eight.loc[2] > 1.6 * eight.loc[1]
    mem = sim[sim["cores"] == 8].set_index("processes")["resident_mib"]
    assert mem.loc[2] > mem.loc[1]
    assert set(df["source"]) == {"simulated", "measured"}
    # One process of each model is also simulated without the GIL on every core count.
    free = df[~df["gil"].astype(bool)]
    assert set(free["processes"]) == {1} and set(free["cores"]) == set(sim["cores"])


@pytest.mark.real  # it starts real servers on loopback
def test_python_server_journey(tmp_path: Path) -> None:
    df = run("python_server_journey", tmp_path / "pj")
    ok = df[df["within_goal"]]
    most = ok.groupby(["model", "source"])["clients"].max()
    # The event-driven designs sustain at least as many clients as the iterative server.
    for source in ("measured", "simulated"):
        assert most.get(("async", source), 0) >= most.get(("iterative", source), 0)
    assert set(df["model"]) >= {"iterative", "async"}


@pytest.mark.real  # it starts real servers on loopback
def test_retry_storm(tmp_path: Path) -> None:
    df = run("retry_storm", tmp_path / "retry_storm")
    assert set(df["source"]) == {"simulated", "measured"}
    assert {"retries", "no retries"} <= set(df["variant"])
    assert df["goodput_tail_rps"].ge(0).all() and df["after_s"].gt(0).all()
    assert "Onset, simulated" in (tmp_path / "retry_storm" / "findings.md").read_text()


@pytest.mark.real
def test_flash_sale(tmp_path: Path) -> None:
    df = run("flash_sale", tmp_path / "flash_sale")
    full = df[df["variant"] == "full scale"]
    # Every model in the registry, at full scale, in simulation.
    assert len(full) == len(MODEL_NAMES) and (full["source"] == "simulated").all()
    small = df[df["variant"] != "full scale"]
    assert set(small["source"]) == {"simulated", "measured"}
    mem = df.dropna(subset=["memory_peak_mib", "memory_before_mib"])
    assert not mem.empty and (mem["memory_peak_mib"] >= mem["memory_before_mib"] * 0.9).all()


@pytest.mark.real
def test_blocking_in_the_loop(tmp_path: Path) -> None:
    df = run("blocking_in_the_loop", tmp_path / "blocking_in_the_loop")
    sweep = df[df["part"] == "share"].set_index("share")
    # Requests that never block still wait behind those that do, on one loop.
    assert sweep["others_p99_ms"].iloc[-1] > sweep["others_p99_ms"].iloc[0]
    assert set(df[df["part"] == "fix"]["source"]) == {"simulated", "measured"}


@pytest.mark.real
def test_ad_auction_deadline(tmp_path: Path) -> None:
    df = run("ad_auction_deadline", tmp_path / "ad_auction_deadline")
    sim = df[(df["source"] == "simulated") & (df["model"] == "reactor-pool")]
    assert sim["bids_share"].between(0, 1).all()
    # A longer deadline never collects fewer bids (the same calls, waited on longer).
    for _, part in sim.groupby("mode"):
        shares = part.sort_values("deadline_ms")["bids_share"].to_numpy()
        assert (shares[1:] >= shares[:-1] - 0.02).all()
    assert (df["source"] == "measured").any()


@pytest.mark.real  # it starts real servers on loopback (and the nginx peers)
def test_slow_clients(tmp_path: Path) -> None:
    df = run("slow_clients", tmp_path / "slow")
    sim = df[df["source"] == "simulated"].set_index(["target", "transfer_s"])
    slowest = sim.index.get_level_values("transfer_s").max()
    # A buffering front needs no more back processes for slow clients; a pool
    # that owns its persistent connections needs one worker for each.
    assert (
        sim.loc[("nginx-php-fpm", slowest), "workers"] == sim.loc[("nginx-php-fpm", 0.0), "workers"]
    )
    assert sim.loc[("thread-pool", slowest), "workers"] >= 10_000
    short = sim.loc[("thread-pool (1 request per connection)", slowest)]
    assert short["busy"] > 10 * sim.loc[("thread-pool (1 request per connection)", 0.0), "busy"]
    assert set(df[df["source"] == "measured"]["target"]) >= {"thread-pool", "async"}
    text = (tmp_path / "slow" / "findings.md").read_text()
    assert f"{sim.loc[('nginx-php-fpm', slowest), 'workers']:,.0f} back processes" in text
