"""Running a sweep: local processes or a Dask cluster, resumable, one tidy table.

Each (point, model) run is identified by a hash of its parameters, model and
seed. Its result is written atomically to ``points/<id>.json`` as soon as it
arrives, so an interrupted sweep keeps every finished run, and running the
sweep again computes only the missing ones. The table (``results.parquet``
and ``results.csv``) is rebuilt from those files for exactly the runs of the
sweep, one row each, and written atomically too.

The same seed gives the same numbers wherever a run executes: a local
process, a Dask LocalCluster or a remote Dask worker.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import io
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from simlab.paths import sweeps_dir
from simlab.provenance import (
    atomic_write,
    atomic_write_json,
    git_revision,
    json_safe,
    machine,
)
from simlab.scenario import build
from simlab.simulation import simulate
from simlab.sweep.spec import SweepSpec, load_spec

__all__ = ["SweepResult", "run_one", "sweep"]

Progress = Callable[[int, int, str], None]
# Columns that say how a run went rather than what it computed: they differ
# between machines and executors, and are left out of equality checks.
TIMING = ("wall_s", "executor")


@dataclass(frozen=True)
class SweepResult:
    """The sweep's table, where it was written, and how many runs were computed now."""

    table: pd.DataFrame
    out: Path
    computed: int
    reused: int
    plots: list[Path]


def run_id(point: dict[str, Any], model: str) -> str:
    blob = json.dumps({"model": model, **point}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_one(point: dict[str, Any], model: str) -> dict[str, Any]:
    """Simulate one model at one point and flatten its summary into a row.

    Runs in a worker process (local or Dask), so it takes and returns plain data.
    """
    started = time.perf_counter()
    scenario = build(point)
    workload, platform, arch, run = (
        scenario.workload,
        scenario.platform,
        scenario.architecture,
        scenario.run,
    )
    summary = simulate(model, workload, platform, arch, **run.kwargs()).summary
    row: dict[str, Any] = {
        "run_id": run_id(point, model),
        "model": model,
        **point,
        **summary.to_row(),
    }
    row["wall_s"] = time.perf_counter() - started
    row["executor"] = f"pid {os.getpid()}"
    return dict(json_safe(row))


def _run_packed(args: tuple[dict[str, Any], str]) -> dict[str, Any]:
    return run_one(*args)


def _default_out(spec: SweepSpec) -> Path:
    return sweeps_dir() / spec.name


def sweep(
    spec: SweepSpec | Path | str,
    *,
    workers: int | None = None,
    dask: str | None = None,
    out: Path | str | None = None,
    progress: Progress | None = None,
    plots: bool = True,
) -> SweepResult:
    """Run every point of a sweep for every model, resuming what is already done.

    ``spec`` is a ``SweepSpec`` or a sweep file. Runs go to ``workers`` local
    processes (default: one per core), or, with ``dask``, to a Dask cluster:
    ``"local"`` starts a LocalCluster of ``workers`` processes on loopback,
    anything else is a scheduler address. Results go to ``out`` (default
    ``data/sweeps/<name>/``).

    >>> from simlab.sweep.spec import parse_spec
    >>> spec = parse_spec('''
    ... models = ["async"]
    ... [base]
    ... duration = 2
    ... warmup = 0.5
    ... replications = 2
    ... [grid]
    ... rate = [50, 100]
    ... ''')
    >>> r = sweep(spec, workers=1, out="/tmp/simlab-doctest-sweep", plots=False)  # doctest: +SKIP
    >>> len(r.table)  # doctest: +SKIP
    2
    """
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec)
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers(={workers!r}) must be an integer >= 1")
    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    out_dir = Path(out) if out is not None else _default_out(spec)
    points_dir = out_dir / "points"
    points_dir.mkdir(parents=True, exist_ok=True)
    for torn in points_dir.glob(".*.tmp"):
        # Left by a run killed mid-write (atomic_write never renamed it).
        torn.unlink(missing_ok=True)
    runs = [(point, model) for point in spec.points() for model in spec.models]
    ids = [run_id(point, model) for point, model in runs]
    done = {i for i in ids if _valid(points_dir / f"{i}.json")}
    todo = [(r, i) for r, i in zip(runs, ids, strict=True) if i not in done]
    total = len(runs)
    finished = len(set(ids) & done)
    if progress is not None:
        progress(finished, total, "resumed" if finished else "starting")
    manifest = {
        "sweep": spec.describe(),
        "runs": total,
        "git_revision": git_revision(),
        "machine": machine(),
        "executor": f"dask {dask}" if dask else f"{n_workers} local processes",
    }
    atomic_write_json(out_dir / "sweep.json", json_safe(manifest))
    for row in _execute([r for r, _ in todo], n_workers, dask):
        atomic_write_json(points_dir / f"{row['run_id']}.json", row)
        finished += 1
        if progress is not None:
            progress(finished, total, f"{row['model']} {row['run_id']}")
    table = _assemble(points_dir, ids)
    _write_table(out_dir, table)
    made = _plots(spec, table, out_dir) if plots else []
    return SweepResult(table=table, out=out_dir, computed=len(todo), reused=total - len(todo),
                       plots=made)  # fmt: skip


def _valid(path: Path) -> bool:
    """A finished run's file: complete JSON (atomic writes make a torn one impossible,
    but a file from an older simlab or edited by hand is recomputed, not trusted)."""
    try:
        row = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(row, dict) and "run_id" in row and "latency_p99_ms" in row


def _execute(
    runs: list[tuple[dict[str, Any], str]], n_workers: int, dask: str | None
) -> Iterator[dict[str, Any]]:
    if not runs:
        return
    if dask is not None:
        yield from _execute_dask(runs, n_workers, dask)
        return
    if n_workers == 1:
        for point, model in runs:
            yield run_one(point, model)
        return
    # Spawned, not forked: the parent may hold threads (a progress bar), and a
    # fork taken while another thread holds a lock can deadlock the child.
    ctx = multiprocessing.get_context("spawn")
    pool = cf.ProcessPoolExecutor(max_workers=min(n_workers, len(runs)), mp_context=ctx)
    try:
        futures = [pool.submit(_run_packed, r) for r in runs]
        for fut in cf.as_completed(futures):
            yield fut.result()
    finally:
        # On an interrupt, drop what has not started; finished runs are saved.
        pool.shutdown(wait=True, cancel_futures=True)


def _execute_dask(
    runs: list[tuple[dict[str, Any], str]], n_workers: int, address: str
) -> Iterator[dict[str, Any]]:
    # Imported only when asked for: distributed is heavy, and local runs never need it.
    from distributed import Client, LocalCluster, as_completed  # noqa: PLC0415

    # distributed's constructors are not typed; the calls below are its documented API.
    cluster = None
    if address == "local":
        # Loopback only, no dashboard: a LocalCluster opens nothing beyond this machine.
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        client = Client(cluster)  # type: ignore[no-untyped-call]
    else:
        client = Client(address, timeout=30)  # type: ignore[no-untyped-call]
    try:
        futures = client.map(_run_packed, runs, pure=False)
        for fut in as_completed(futures):  # type: ignore[no-untyped-call]
            yield fut.result()
    finally:
        client.close()  # type: ignore[no-untyped-call]
        if cluster is not None:
            cluster.close()


def _assemble(points_dir: Path, ids: list[str]) -> pd.DataFrame:
    rows = [json.loads((points_dir / f"{i}.json").read_text()) for i in ids]
    return pd.DataFrame(rows)


def _write_table(out_dir: Path, table: pd.DataFrame) -> None:
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    atomic_write(out_dir / "results.parquet", buf.getvalue())
    atomic_write(out_dir / "results.csv", table.to_csv(index=False).encode())


METRICS = (
    ("latency_p99_ms", "p99 latency (ms)"),
    ("threads_peak", "threads: peak (solid), busy mean (dashed)"),
    ("memory_peak_mib", "resident memory (MiB, peak)"),
    ("throughput_rps", "throughput (req/s)"),
)


def _plots(spec: SweepSpec, table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One figure per varied parameter: four metrics against it, a line per model.

    Other varied parameters are held at their first value, so that each line
    is one what-if; the title says which.
    """
    import matplotlib  # noqa: PLC0415 - plotting is optional and slow to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    made = []
    for param, values in spec.varied.items():
        if len(values) < 2:
            continue
        others = {k: v[0] for k, v in spec.varied.items() if k != param}
        sel = table
        for other, first in others.items():
            sel = sel[sel[other].astype(str) == str(first)]
        fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        for ax, (col, label) in zip(axes.flat, METRICS, strict=True):
            for k, (model, group) in enumerate(sel.groupby("model", sort=False)):
                part = group.sort_values(param) if numeric else group
                x = part[param] if numeric else part[param].astype(str)
                color = f"C{k}"
                ax.plot(x, part[col], marker="o", color=color, label=str(model))
                if col == "threads_peak":
                    # What the threads are doing: busy on average (Little's law).
                    ax.plot(x, part["threads_busy_mean"], ls="--", color=color, alpha=0.7)
                if col == "latency_p99_ms" and "latency_p99_ci_lo" in part:
                    ax.fill_between(
                        x, part["latency_p99_ci_lo"], part["latency_p99_ci_hi"], alpha=0.15
                    )
            if numeric and min(values) > 0 and max(values) / min(values) >= 20:
                ax.set_xscale("log")
            if col in ("threads_peak", "memory_peak_mib", "latency_p99_ms"):
                positive = sel[col].dropna()
                if col == "threads_peak":
                    positive = pd.concat([positive, sel["threads_busy_mean"].dropna()])
                positive = positive[positive > 0]
                if len(positive) and positive.min() > 0 and positive.max() / positive.min() > 50:
                    ax.set_yscale("log")
            ax.set_xlabel(param)
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
        axes.flat[0].legend(fontsize=8)
        held = ", ".join(f"{k}={v}" for k, v in others.items())
        fig.suptitle(f"{spec.name}: what if {param} changes" + (f" ({held})" if held else ""))
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        path = out_dir / f"{param}.png"
        atomic_write(path, buf.getvalue())
        made.append(path)
    return made
