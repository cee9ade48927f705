"""Recompute a written validation's predictions with the model as it is now, from its real runs.

A validation's real runs take minutes and need a quiet machine; its
predictions take seconds. When the model changes (a mechanism added, a
profile refitted) the committed measurements still hold, and only the
predictions need redoing: ``resimulate`` reads the measured runs from a
report's ``validation.json``, simulates every case again exactly as
``simlab validate`` does (the same seeds, replications and noise rules), and
rewrites the report. No real run is made. The rewritten ``validation.json``
says when and at which revision the runs were measured
(``measured_runs_from``), beside when the predictions were made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simlab.errors import UserError
from simlab.platforms import load_platform
from simlab.real.grids import Case
from simlab.validate import (
    METRICS,
    _by_construction,
    _offered_rho,
    _peer_adjusted,
    _profile_extras,
    _row,
    _simulate,
    _write,
    lab_platform,
    report_record,
    validation_plan,
)

__all__ = ["resimulate"]


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
    for r in saved["rows"]:
        runs.setdefault((r["model"], r["config"]), {})[r["metric"]] = r["measured_runs"]
    seed = int(saved["seed"])
    rows: list[dict[str, Any]] = []
    for k, case in enumerate(plan):
        measured = runs.get((case.target, case.config()))
        if measured is None:
            raise UserError(f"resimulate: {case.target} {case.config()} was not measured in {path}")
        sim = _simulate(case, platform, seed + k)
        rho = _offered_rho(case, sim)
        predicted = _peer_adjusted(case, sim, platform, extras, seed + k)
        for metric in METRICS:
            values: list[float | None] = list(measured.get(metric, []))
            why_not = _by_construction(metric, case, sim, rho, extras, values)
            rows.append(_row(case, metric, values, predicted[metric], why_not, rho))
    result = report_record(rows, platform.name, quick=quick, repeats=saved["repeats"], seed=seed)
    result["measured_runs_from"] = saved.get(
        "measured_runs_from",
        {"created": saved["created"], "git_revision": saved["git_revision"]},
    )
    if "remeasured" in saved:
        # Cases measured again since (a measurement's definition changed).
        result["remeasured"] = saved["remeasured"]
    _write(result, folder)
    return result
