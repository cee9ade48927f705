"""The probe's threads and processes where the server has a memory cgroup:
read from the group's task lists on the grid (``LevelReads``), not from the
samples of the whole tree, which a large busy tree can hold back for seconds."""

from __future__ import annotations

import os
import time
from pathlib import Path

from simlab.real.kernel import KernelAccount
from simlab.real.probe import FIELDS, LevelReads, Probe, ProbeSample


def _group(folder: Path, threads: int, processes: int, version: int = 1) -> KernelAccount:
    tasks = "tasks" if version == 1 else "cgroup.threads"
    (folder / tasks).write_text("".join(f"{100 + k}\n" for k in range(threads)))
    (folder / "cgroup.procs").write_text("".join(f"{100 + k}\n" for k in range(processes)))
    return KernelAccount(folder, version)


def test_levels_count_the_groups_lists(tmp_path: Path) -> None:
    assert _group(tmp_path, 7, 3).levels() == (7, 3)
    assert _group(tmp_path, 0, 0, version=2).levels() == (0, 0)


def test_a_summary_takes_its_levels_from_the_group_reads(tmp_path: Path) -> None:
    # The tree's samples saw 150 then 157 (two slow reads); the group's reads
    # on the grid saw the children reach 200.
    probe = Probe(os.getpid(), account=_group(tmp_path, 1, 1))
    for t, n in ((1.0, 150.0), (5.0, 157.0)):
        values = dict.fromkeys(FIELDS, 0.0)
        values["threads"] = values["processes"] = n
        probe.samples.append(ProbeSample(t, values))
    assert probe.levels is not None
    probe.levels.reads = [(0.5 + 0.1 * k, 150 + k // 2, 150 + k // 2) for k in range(60)] + [
        (6.6 + 0.1 * k, 201, 201) for k in range(35)
    ]
    window = (1.0, 10.0)
    out = probe.summary(window)
    assert out["threads"]["peak"] == out["processes"]["peak"] == 201
    assert out["threads"]["first"] == 152  # the read at 1.0 s (k = 5)
    inside = [r[1] for r in probe.levels.reads if window[0] <= r[0] <= window[1]]
    assert out["threads"]["mean"] == sum(inside) / len(inside)
    # Without the group, the tree's samples answer.
    probe.levels = None
    assert probe.summary(window)["threads"]["peak"] == 157
    assert probe.summary(window)["threads"]["first"] == 150


def test_reads_that_do_not_cover_the_window_leave_the_samples_answer(tmp_path: Path) -> None:
    levels = LevelReads(_group(tmp_path, 3, 1))
    levels.reads = [(0.0, 3, 1)]
    assert levels.summary((1.0, 2.0)) is None
    # Reads that stopped halfway (the group gone early) answer nothing either.
    levels.reads = [(1.0 + 0.1 * k, 3, 1) for k in range(5)]
    assert levels.summary((1.0, 2.0)) is None
    levels.reads = [(1.0 + 0.1 * k, 3, 1) for k in range(11)]
    assert levels.summary((1.0, 2.0)) == {
        "threads": {"peak": 3.0, "mean": 3.0, "first": 3.0},
        "processes": {"peak": 1.0, "mean": 1.0, "first": 1.0},
    }


def test_reads_stay_on_the_grid_and_stop_when_the_group_goes(tmp_path: Path) -> None:
    levels = LevelReads(_group(tmp_path, 4, 2), interval=0.01)
    levels.start()
    time.sleep(0.2)
    (tmp_path / "tasks").unlink()
    levels.join(5)
    assert not levels.is_alive()
    assert len(levels.reads) >= 5
    assert {r[1:] for r in levels.reads} == {(4, 2)}
    gaps = [b[0] - a[0] for a, b in zip(levels.reads, levels.reads[1:], strict=False)]
    # On the grid, however late a read: never closer than half an interval.
    assert min(gaps) >= 0.005 - 0.001


def test_a_window_that_sees_the_server_still_making_threads_is_not_steady() -> None:
    from simlab import Workload  # noqa: PLC0415
    from simlab.real.measure import still_making  # noqa: PLC0415 - the rule under test

    held = Workload(connections=300, rate=150.0)
    why = still_making("process-per-connection", held, 301.0, 240.0)
    assert why is not None and "still making" in why and "240" in why and "301" in why
    assert still_making("thread-per-connection", held, 301.0, 240.0) is not None
    # A short ramp early in the window: its first read tells, whatever the mean.
    assert still_making("process-per-connection", held, 301.0, 297.0) is not None
    # Every connection's child made before the window, or one short at its
    # first read (a read taken as the last one forks): steady.
    assert still_making("process-per-connection", held, 301.0, 301.0) is None
    assert still_making("process-per-connection", held, 301.0, 300.0) is None
    # A pool's threads, a peer's (a JVM's threads come and go), short
    # connections (their threads come and go by design), a level not read.
    assert still_making("thread-pool", held, 301.0, 200.0) is None
    assert still_making("java-threads", held, 301.0, 200.0) is None
    short = Workload(connections=300, rate=150.0, requests_per_connection=1)
    assert still_making("process-per-connection", short, 7.0, 3.0) is None
    assert still_making("process-per-connection", held, None, 240.0) is None
