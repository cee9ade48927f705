"""Replications run side by side in worker processes (``simulate(jobs=...)``,
``--jobs``): the same numbers as one after another, every worker stopped,
errors and bad values reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from simlab import Architecture, Workload, load_platform, simulate, simulation
from simlab.distributions import Exponential, Fixed
from simlab.errors import RunFailed, UserError
from tests.procs import alive
from tests.test_cli import run

# The calibrated default platform's event loop (the fast engine), and the DES.
CASES = [
    ("reactor-pool", Workload(connections=300, rate=120.0, cpu=Exponential(0.002),
                              io=Exponential(0.05), requests_per_connection=3), "fast"),
    ("thread-pool", Workload(connections=200, rate=80.0, cpu=Fixed(0.001),
                             io=Exponential(0.02)), "des"),
]  # fmt: skip
RUN = {"duration": 8.0, "warmup": 1.0, "replications": 3, "seed": 7, "tables": False}


def _numbers(result: simulation.Result) -> list[dict[str, object]]:
    return result.numbers


@pytest.mark.parametrize(("model", "workload", "engine"), CASES)
def test_replications_in_workers_are_the_serial_ones_to_the_bit(
    model, workload, engine, monkeypatch
) -> None:
    p = load_platform("cpython")
    arch = Architecture(workers=6)
    here = simulate(model, workload, p, arch, engine=engine, jobs=1, **RUN)
    pools = _spy_pools(monkeypatch)
    side = simulate(model, workload, p, arch, engine=engine, jobs=2, **RUN)
    assert pools == [2]
    assert side.summary.engine == engine
    assert side.summary.to_dict() == here.summary.to_dict()
    for a, b in zip(_numbers(here), _numbers(side), strict=True):
        assert a.keys() == b.keys()
        for key, value in a.items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(b[key], value, err_msg=key)
            else:
                assert b[key] == value, key
    assert [r.seed for r in side.records] == [r.seed for r in here.records]
    assert [r.replication for r in side.records] == [0, 1, 2]


def _spy_pools(monkeypatch) -> list[int]:
    """The sizes of the worker pools ``simulate`` makes from now on: a test
    knows the workers ran (the serial path makes none)."""
    pools: list[int] = []
    real = simulation._in_processes

    def spied(task, seeds, n_jobs, progress):
        pools.append(n_jobs)
        return real(task, seeds, n_jobs, progress)

    monkeypatch.setattr(simulation, "_in_processes", spied)
    return pools


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _run_in_workers(monkeypatch, **kwargs) -> list[int]:
    """The first case with jobs=2; returns the pools made (``_spy_pools``).
    Asserts that no process it started is left (this test process may have
    others: pytest-xdist's, another test's)."""
    before = _children()
    pools = _spy_pools(monkeypatch)
    model, workload, _ = CASES[0]
    try:
        simulate(model, workload, load_platform("cpython"), Architecture(workers=6),
                 engine="fast", jobs=2, **RUN, **kwargs)  # fmt: skip
    finally:
        assert pools == [2]
        assert _children() <= before
    return pools


def test_no_worker_outlives_the_run_and_progress_ends_at_one(monkeypatch) -> None:
    seen: list[float] = []
    _run_in_workers(monkeypatch, progress=seen.append)
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)


def test_the_calling_process_runs_the_first_share_itself(monkeypatch) -> None:
    """With jobs=2 this process runs replications 0 and 2 (of 3) rather than
    wait for two workers: a worker runs 1. A worker's calls are in its own
    memory, so the list here holds this process's only."""
    real = simulation.run_replication
    here: list[int] = []

    def spied(*args, **kwargs):
        here.append(kwargs["replication"])
        return real(*args, **kwargs)

    monkeypatch.setattr(simulation, "run_replication", spied)
    _run_in_workers(monkeypatch)
    assert here == [0, 2]


@pytest.mark.timeout(180)
def test_a_worker_goes_on_while_this_process_runs_its_own_share(monkeypatch, tmp_path) -> None:
    """Replications too big for a pipe (about 10,000 requests each: their
    latencies and waits are 150 KiB; a pipe holds 64): the worker runs
    replication 1 and then 3 while this process is still in replication 0,
    which waits for the worker to start 3 (bounded). A worker that had to
    wait for this process to read 1 would never start 3. The file the
    worker's replications waited in has no name and is closed: this
    process holds no more descriptors than before."""
    real = simulation.run_replication
    here = os.getpid()
    started_3 = tmp_path / "started-3"
    fds = psutil.Process().num_fds()

    def spied(*args, **kwargs):
        r = kwargs["replication"]
        if os.getpid() != here and r == 3:
            started_3.touch()
        out = real(*args, **kwargs)
        if os.getpid() == here and r == 0:
            deadline = time.monotonic() + 60
            while not started_3.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert started_3.exists(), "the worker waited for this process"
        return out

    monkeypatch.setattr(simulation, "run_replication", spied)
    model, workload, _ = CASES[0]
    run = {**RUN, "duration": 80.0, "replications": 4}
    side = simulate(model, workload, load_platform("cpython"), Architecture(workers=6),
                    engine="fast", jobs=2, **run)  # fmt: skip
    assert all(len(n["latency"]) > 8_000 for n in side.numbers)
    assert psutil.Process().num_fds() == fds


def test_a_workers_error_reaches_the_caller_and_stops_the_pool(monkeypatch) -> None:
    """A replication that fails in a worker (forked: it runs this process's
    code, the patch included) fails the run here, with its own message."""
    real = simulation.run_replication

    def failing(*args, **kwargs):
        if kwargs["replication"] == 1:
            raise UserError(f"replication 1 failed on purpose in {os.getpid()}")
        return real(*args, **kwargs)

    monkeypatch.setattr(simulation, "run_replication", failing)
    with pytest.raises(UserError, match="on purpose") as err:
        _run_in_workers(monkeypatch)
    assert str(os.getpid()) not in str(err.value)  # raised in a worker, not here
    # ... with the worker's own traceback beside it.
    notes = "\n".join(getattr(err.value, "__notes__", []))
    assert "worker process" in notes and "in failing" in notes


@pytest.mark.timeout(120)
def test_a_worker_that_dies_is_an_error_not_a_wait(monkeypatch) -> None:
    """A worker killed outright (the OOM killer, a SIGKILL) sends nothing:
    the run fails at once, naming its exit code, and the others are killed."""
    real = simulation.run_replication

    def dying(*args, **kwargs):
        if kwargs["replication"] == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    monkeypatch.setattr(simulation, "run_replication", dying)
    with pytest.raises(RunFailed, match=r"died \(exit code -9\)"):
        _run_in_workers(monkeypatch)


def test_auto_jobs_only_for_runs_long_enough(monkeypatch) -> None:
    monkeypatch.setattr(simulation.os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3})
    w = Workload(connections=100, rate=1000.0, cpu=Fixed(0.001), io=Fixed(0.0))
    # 1,000/s x 100 s x 3 = 300,000 requests: over PARALLEL_MIN_REQUESTS.
    assert simulation._jobs(None, w, 100.0, 3) == 3
    assert simulation._jobs(None, w, 100.0, 8) == 4  # one per core
    assert simulation._jobs(None, w, 10.0, 3) == 1  # 30,000: not worth it
    assert simulation._jobs(None, w, 100.0, 1) == 1  # one replication
    assert simulation._jobs(5, w, 1.0, 3) == 3  # asked: as many as replications
    monkeypatch.setattr(simulation.os, "sched_getaffinity", lambda _pid: {0})
    assert simulation._jobs(None, w, 100.0, 3) == 1  # one core
    closed = Workload(connections=10, think=Fixed(1.0), cpu=Fixed(0.0), io=Fixed(0.0))
    assert simulation._expected_requests(closed, 50.0) == pytest.approx(500.0)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2"])
def test_bad_jobs_refused(bad) -> None:
    with pytest.raises(UserError, match="jobs"):
        simulate("async", jobs=bad, duration=1.0, replications=2)


def test_the_cli_takes_jobs_and_refuses_a_bad_value(capsys) -> None:
    quick = ["--duration", "3", "--warmup", "1", "--replications", "2", "--json"]
    code, out, err = run(capsys, "simulate", "thread-pool", *quick, "--jobs", "2")
    assert code == 0, err
    serial = run(capsys, "simulate", "thread-pool", *quick, "--jobs", "1")
    assert json.loads(out) == json.loads(serial[1])
    assert run(capsys, "simulate", "thread-pool", *quick, "--jobs", "auto")[0] == 0
    for bad in ("0", "two"):
        code, out, err = run(capsys, "simulate", "thread-pool", *quick, "--jobs", bad)
        assert code == 2 and "--jobs" in err and len(err.strip().splitlines()) == 1, err


def test_stopping_the_command_stops_its_workers_quietly() -> None:
    """SIGTERM (or Ctrl-C) to ``simlab simulate`` while its workers run: exit
    130 with one line, every worker gone, no worker's traceback."""
    argv = [sys.executable, "-m", "simlab", "simulate", "reactor-pool", "--rate", "90",
            "--connections", str(10**12), "--cpu-ms", "0", "--io-ms", "1000", "--io-dist",
            "exp", "--workers", "100", "--warmup", "0", "--duration", "11000",
            "--replications", "4", "--engine", "auto", "--jobs", "2", "--json"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 60
        # --jobs 2: the command runs replications itself and in one worker.
        while not parent.children() and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = parent.children()
        assert len(workers) == 1, "the worker never started"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "simlab: interrupted" and "Traceback" not in err, err
    assert out == ""
    assert not [w.pid for w in alive(workers)]
