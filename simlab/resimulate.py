"""Recompute a written validation's predictions with the model as it is now, from its real runs.

A validation's real runs take minutes and need a quiet machine; its
predictions take seconds. When the model changes (a mechanism added, a
profile refitted) the committed measurements still hold, and only the
predictions need redoing: ``resimulate`` reads the measured runs from a
report's ``validation.json``, simulates every case again exactly as
``simlab validate`` does (the same seeds, replications and noise rules:
each run predicted from its own arrivals, drawn again from the seed it was
measured with, where they can be replayed), and rewrites the report. No
real run is made. The rewritten ``validation.json`` says when and at which
revision the runs were measured (``measured_runs_from``), beside when the
predictions were made.

When the measurement itself changes for some cases (the probe's definition
of a quantity), ``remeasure`` runs just those cases again for real, with
the seeds ``simlab validate`` gave them, and records which and why
(``remeasured``); ``resimulate`` then redoes the report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simlab.errors import UserError
from simlab.misses import assumptions_of
from simlab.platforms import load_platform
from simlab.provenance import atomic_write_json, git_revision, machine, utc_stamp
from simlab.real.grids import Case
from simlab.sessions import add, load, session_of
from simlab.sessions import write as write_history
from simlab.validate import (
    METRICS,
    _by_construction,
    _kept,
    _measure,
    _profile_extras,
    _row,
    _write,
    case_platform,
    cpu_keys,
    lab_platform,
    predict_case,
    report_record,
    run_seed,
    validation_plan,
)

__all__ = ["MAX_RUNS", "remeasure", "resimulate"]

# ``run_seed`` gives case k's runs the seeds seed * 1000 + k * 10 + r: a
# tenth run would take the next case's first seed.
MAX_RUNS = 10


def resimulate(
    folder: Path,
    *,
    platform_spec: str = "cpython",
    cases: list[Case] | None = None,
) -> dict[str, Any]:
    """Rewrite the report in ``folder`` with fresh predictions for its measured runs.

    ``cases`` is the plan the runs followed (default: the quick or full
    held-out grid, as the saved report says); every case of it must have
    been measured there.
    """
    path = folder / "validation.json"
    try:
        saved: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"resimulate: cannot read {str(path)!r}: {exc}") from None
    quick = bool(saved.get("quick"))
    extras = _profile_extras(platform_spec)
    platform = lab_platform(load_platform(platform_spec), extras)
    plan = cases if cases is not None else validation_plan(platform.name, quick)
    runs: dict[tuple[str, str], dict[str, list[float]]] = {}
    speeds: dict[tuple[str, str], list[Any]] = {}
    kept: dict[tuple[str, str], dict[str, Any]] = {}
    seeds: dict[tuple[str, str], list[int]] = {}
    splits: dict[tuple[str, str], list[list[int] | None]] = {}
    maps: dict[tuple[str, str], list[list[int] | None]] = {}
    for r in saved["rows"]:
        runs.setdefault((r["model"], r["config"]), {})[r["metric"]] = r["measured_runs"]
        speeds[r["model"], r["config"]] = r.get("speed_reference_runs", [])
        # What the runs recorded beside their metrics, kept as they were.
        kept[r["model"], r["config"]] = {
            k: r[k]
            for k in ("load_generator_runs", "cpu_ms_runs", "unsteady_runs", "run_queue_runs")
            if r.get(k) is not None
        }
        if r.get("prediction") == "replayed" and r.get("run_seeds"):
            seeds[r["model"], r["config"]] = [int(x) for x in r["run_seeds"]]
        if r.get("accept_split_runs"):
            splits[r["model"], r["config"]] = r["accept_split_runs"]
        if r.get("accept_map_runs"):
            maps[r["model"], r["config"]] = r["accept_map_runs"]
    seed = int(saved["seed"])
    rows: list[dict[str, Any]] = []
    for k, case in enumerate(plan):
        measured = runs.get((case.target, case.config()))
        if measured is None:
            raise UserError(f"resimulate: {case.target} {case.config()} was not measured in {path}")
        on = case_platform(case, platform, extras)
        # The seeds the runs were measured with: as the report recorded them,
        # or as simlab validate gave them (its place in the plan).
        n_runs = max((len(v) for v in measured.values()), default=0)
        run_seeds = seeds.get((case.target, case.config())) or [
            run_seed(seed, k, r) for r in range(n_runs)
        ]
        split = splits.get((case.target, case.config()))
        dealt = maps.get((case.target, case.config()))
        pred = predict_case(case, on, extras, seed + k, run_seeds, split, dealt)
        beside = kept.get((case.target, case.config()), {})
        cpu = cpu_keys(pred, beside.get("cpu_ms_runs"))
        for metric in METRICS:
            values: list[float | None] = list(measured.get(metric, []))
            why_not = _by_construction(metric, case, pred.dynamic_sim, pred.rho, extras, values)
            speed = speeds[case.target, case.config()]
            row = _row(case, metric, values, pred.predicted[metric], why_not, pred.rho, speed)
            rows.append({**row, **pred.row_keys(metric), **beside, **cpu})
    # The sessions' history as it stands: resimulating adds no session.
    history = load(folder)
    result = report_record(
        rows,
        platform.name,
        quick=quick,
        repeats=saved["repeats"],
        seed=seed,
        history=history if history["sessions"] else None,
        gate=saved.get("gate"),  # how the measured runs were gated, as they were
        assumptions=assumptions_of(extras),
    )
    _measured_from(result, saved)
    if "remeasured" in saved:
        # Cases measured again since (a measurement's definition changed).
        result["remeasured"] = saved["remeasured"]
    _write(result, folder)
    return result


def _measured_from(result: dict[str, Any], saved: dict[str, Any]) -> None:
    """Where and when ``saved``'s runs were measured (``measured_runs_from``)
    stays the report's, its machine included; where it was simulated again
    is said apart (``resimulated_on``)."""
    source = dict(
        saved.get(
            "measured_runs_from",
            {"created": saved["created"], "git_revision": saved["git_revision"]},
        )
    )
    source.setdefault("machine", saved.get("machine"))
    result["measured_runs_from"] = source
    result["resimulated_on"] = result["machine"]
    if source.get("machine"):
        result["machine"] = source["machine"]


def remeasure(
    folder: Path,
    labels: list[str],
    why: str,
    *,
    cases: list[Case] | None = None,
    repeats: int | None = None,
) -> dict[str, Any]:
    """Measure some cases of a written validation again, for real, and put
    their runs in its ``validation.json`` in place of the old ones.

    For when the measurement of a quantity changes (the probe's definition)
    and only some cases are affected, or when a case's runs spread too wide
    to tell its error from their noise. ``labels`` name the cases as the
    report does (``"<target> <config>"``); each is run ``repeats`` times
    (default: the report's) with the seeds ``simlab validate`` gave it (its
    place in the whole plan, runs 0 to ``repeats`` - 1: at most
    ``MAX_RUNS``), and the file records when, at which revision, how many
    runs and ``why`` (``remeasured``). Every old run of the case is
    replaced, so that its runs are all of one session. Predictions are not
    redone: ``resimulate`` does that.
    """
    n_runs = repeats
    if n_runs is not None and not (
        isinstance(n_runs, int) and not isinstance(n_runs, bool) and 1 <= n_runs <= MAX_RUNS
    ):
        raise UserError(f"remeasure: repeats(={n_runs!r}) must be an integer from 1 to {MAX_RUNS}")
    path = folder / "validation.json"
    try:
        saved: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"remeasure: cannot read {str(path)!r}: {exc}") from None
    plan = cases if cases is not None else validation_plan(saved["platform"], bool(saved["quick"]))
    places = {f"{c.target} {c.config()}": (k, c) for k, c in enumerate(plan)}
    unknown = [label for label in labels if label not in places]
    if unknown:
        raise UserError(f"remeasure: no case {unknown[0]!r} in the plan of {str(path)!r}")
    seed = int(saved["seed"])
    count = n_runs if n_runs is not None else int(saved["repeats"])
    for label in labels:
        k, case = places[label]
        seeds = [run_seed(seed, k, r) for r in range(count)]
        runs = [_kept(_measure(case, s)) for s in seeds]
        for row in saved["rows"]:
            if f"{row['model']} {row['config']}" == label:
                if row.get("run_seeds"):
                    row["run_seeds"] = seeds
                row["measured_runs"] = [run[row["metric"]] for run in runs]
                row["speed_reference_runs"] = [run["speed_reference"] for run in runs]
                row["accept_split_runs"] = [run.get("accept_split") for run in runs]
                row["accept_map_runs"] = [run.get("accept_map") for run in runs]
                row["load_generator_runs"] = [run.get("load_generator") for run in runs]
                row["cpu_ms_runs"] = [run.get("cpu_ms_per_request") for run in runs]
                row["unsteady_runs"] = [run.get("unsteady") for run in runs]
                row["run_queue_runs"] = [run.get("run_queue") for run in runs]
        saved.setdefault("remeasured", []).append(
            {
                "case": label,
                "measured": utc_stamp(),
                "git_revision": git_revision(),
                "machine": machine(),
                "why": why,
                "runs": count,
            }
        )
    atomic_write_json(path, saved)
    # The cases measured again are a session of their own in the history.
    again = session_of(saved, source="remeasure", labels=set(labels))
    write_history(folder, add(load(folder), again))
    return saved
