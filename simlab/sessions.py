"""A validation's history between sessions: each session's measured runs of each case.

A validation's repeats (``simlab.validate``) show the noise *within* one
session. With the same code on a quiet machine, the cases near saturation
measured 2-4x apart from one session to the next, which three runs in one
session cannot see. So every session's runs are kept beside the report, in
``history.json``:

- ``sessions``: one entry per session (its id is when its runs were
  measured, a UTC stamp), with its git revision, where it came from (``simlab
  validate``, or a committed ``validation.json`` for the sessions before this
  file), whether it was the quick grid, its repeats, and the machine's speed
  reference over its runs (``simlab.real.speed``; sessions before the
  reference have none);
- ``cases``: per case (``"<target> <config>"``), per session, each metric's
  measured mean and runs, and the speed reference of each run.

``seed_from_git`` builds it from every committed version of the report,
keeping the cases of the current grid; ``simlab validate`` adds its own
session (``add``). ``between`` compares, per case and metric, the sessions'
means with the prediction, and the spread between sessions with the noise
within them; the report prints it and ``simlab.misses`` reads it. The goals
count the current session's runs only: the history explains, it never
loosens.

Sessions are compared only with sessions of the same grid (quick or full):
the quick grid's runs are shorter, and a p99 over a shorter window is
another quantity.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
from pathlib import Path
from typing import Any

from simlab.errors import UserError
from simlab.provenance import ROOT, atomic_write
from simlab.real.speed import session_speed
from simlab.stats import bootstrap_ci

__all__ = [
    "HISTORY",
    "SPEED_BOUND",
    "add",
    "between",
    "load",
    "report_lines",
    "seed_from_git",
    "session_of",
    "write",
]

HISTORY = "history.json"
# The metrics a machine's speed moves: how fast a server answers and, at
# saturation, what it serves. Memory and thread counts do not follow the
# speed; between sessions they move with the probe's definitions (git).
SPEED_BOUND = ("latency_p50", "latency_p99", "throughput_rps")


def _sig(x: float) -> float:
    """Six significant digits: what a run's value carries, and a small file."""
    return float(f"{x:.6g}")


def load(folder: Path) -> dict[str, Any]:
    """The history in ``folder`` (an empty one when there is none yet)."""
    path = folder / HISTORY
    if not path.exists():
        return {"sessions": [], "cases": {}}
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"history: cannot read {str(path)!r}: {exc}") from None
    return data


def write(folder: Path, history: dict[str, Any]) -> None:
    """Write ``history`` to ``folder``, atomically: one line per session and
    per case's session, so that a new session is a diff of new lines."""

    def line(x: Any) -> str:
        return json.dumps(x, allow_nan=False)

    sessions = ",\n".join(f"  {line(s)}" for s in history["sessions"])
    cases = ",\n".join(
        f"  {line(label)}: [\n" + ",\n".join(f"   {line(e)}" for e in entries) + "\n  ]"
        for label, entries in history["cases"].items()
    )
    text = f'{{\n "sessions": [\n{sessions}\n ],\n "cases": {{\n{cases}\n }}\n}}\n'
    atomic_write(folder / HISTORY, text.encode())


def _label(row: dict[str, Any]) -> str:
    return f"{row['model']} {row['config']}"


def _values(row: dict[str, Any]) -> list[float]:
    """A row's measured runs (an early report kept one value and no runs)."""
    runs = row.get("measured_runs")
    if runs is None:
        runs = [row.get("measured")]
    return [float(v) for v in runs if v is not None and math.isfinite(v)]


def session_of(
    result: dict[str, Any],
    *,
    source: str,
    labels: set[str] | None = None,
    metrics: set[str] | None = None,
) -> list[dict[str, Any]]:
    """The sessions whose runs a validation's ``result`` (``validation.json``) holds.

    One session, measured at ``measured_runs_from`` (a resimulated report) or
    ``created``; and one more per case that was measured again since
    (``remeasured``: its runs are that later session's). Each is
    ``{"session": meta, "cases": {label: {"metrics": ..., "speed_ops_s": ...}}}``.
    ``labels``, ``metrics``: keep only these cases, these metrics (an early
    report's ``memory_peak`` was another quantity than today's).
    """
    origin = result.get("measured_runs_from") or result
    main = {
        "id": origin["created"],
        "git_revision": origin["git_revision"],
        "source": source,
        "quick": bool(result.get("quick")),
        "repeats": result.get("repeats") or 1,
        # The CPU the report was written on: this VM's host has changed between sessions.
        "cpu": (result.get("machine") or {}).get("cpu"),
    }
    again: dict[str, dict[str, Any]] = {}
    for entry in result.get("remeasured", []):  # the latest measurement of a case wins
        again[entry["case"]] = {**main, "id": entry["measured"],
                                "git_revision": entry["git_revision"],
                                "repeats": entry.get("runs") or main["repeats"]}  # fmt: skip
    out: dict[str, dict[str, Any]] = {}
    for row in result["rows"]:
        label = _label(row)
        if labels is not None and label not in labels:
            continue
        meta = again.get(label, main)
        session = out.setdefault(meta["id"], {"session": dict(meta), "cases": {}})
        case = session["cases"].setdefault(label, {"metrics": {}})
        values = _values(row)
        if values and (metrics is None or row["metric"] in metrics):
            case["metrics"][row["metric"]] = {
                "mean": _sig(statistics.fmean(values)),
                "runs": [_sig(v) for v in values],
            }
        refs = row.get("speed_reference_runs")
        if refs:
            case["speed_ops_s"] = [None if r is None else _sig(float(r["ops_s"])) for r in refs]
            case["speed_work"] = next((r["work"] for r in refs if r is not None), None)
    for s in out.values():
        s["session"]["cases"] = len(s["cases"])
        refs = [
            {"ops_s": v, "work": c.get("speed_work")}
            for c in s["cases"].values()
            for v in c.get("speed_ops_s", [])
            if v is not None
        ]
        s["session"]["speed_reference"] = session_speed(refs)
    return list(out.values())


def add(history: dict[str, Any], sessions: list[dict[str, Any]]) -> dict[str, Any]:
    """``history`` with ``sessions`` (``session_of``) in it; a session already
    there (the same id) is replaced by the new one, so adding is idempotent."""
    metas = {s["id"]: s for s in history.get("sessions", [])}
    cases: dict[str, list[dict[str, Any]]] = history.setdefault("cases", {})
    for s in sessions:
        sid = s["session"]["id"]
        metas[sid] = s["session"]
        for label, data in s["cases"].items():
            kept = [e for e in cases.get(label, []) if e["session"] != sid]
            kept.append({"session": sid, **data})
            cases[label] = sorted(kept, key=lambda e: e["session"])
    history["sessions"] = sorted(metas.values(), key=lambda m: m["id"])
    history["cases"] = dict(sorted(cases.items()))
    return history


def _git(repo: Path, *args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise UserError(f"history: git {args[0]} failed: {exc}") from None


def seed_from_git(
    folder: Path, labels: set[str], metrics: set[str] | None = None, *, repo: Path = ROOT
) -> dict[str, Any]:
    """A history from every committed version of ``folder/validation.json``,
    keeping only the cases in ``labels`` (and the ``metrics``). A session is taken from the oldest
    commit that holds it (later ones resimulated its predictions, and carry
    the same runs)."""
    path = folder.resolve().relative_to(repo.resolve()) / "validation.json"
    history: dict[str, Any] = {"sessions": [], "cases": {}}
    revisions = _git(repo, "log", "--format=%H", "--", str(path)).split()
    for rev in reversed(revisions):
        try:
            result = json.loads(_git(repo, "show", f"{rev}:{path}"))
        except ValueError:
            continue  # a torn or conflicted commit of the file: nothing to keep
        known = {s["id"] for s in history["sessions"]}
        found = session_of(
            result, source=f"validation.json at {rev[:12]}", labels=labels, metrics=metrics
        )
        add(history, [s for s in found if s["session"]["id"] not in known])
    return history


def between(history: dict[str, Any], rows: list[dict[str, Any]], *, quick: bool) -> dict[str, Any]:
    """Per evidence row of a validation: its case's sessions (of the same grid)
    and their spread; per metric: the medians over the cases. The cases kept
    in the result are those of the metrics the machine's speed moves
    (``SPEED_BOUND``); every metric's cases count in its medians.

    For each case and metric: the sessions (ids, oldest first), their means
    and their runs' counts, the means' range against the prediction,
    ``between`` (half the range of the sessions' means, relative to their
    mean) and ``within`` (the median over sessions of two or more runs of
    their 95% bootstrap interval's half-width, relative to their mean).
    ``apart``: the lowest and the highest session of two or more runs (each
    with its interval and its session's speed reference, the median over all
    its runs) when their intervals do not overlap, i.e. the mean moved
    between sessions by more than the noise within them.
    """
    grid = {m["id"] for m in history.get("sessions", []) if bool(m.get("quick")) == quick}
    speeds = {m["id"]: (m.get("speed_reference") or {}).get("median_ops_s")
              for m in history.get("sessions", [])}  # fmt: skip
    cases = history.get("cases", {})
    out = []
    for r in rows:
        if not r.get("evidence"):
            continue
        entries = [e for e in cases.get(_label(r), []) if e["session"] in grid]
        points = []
        for e in entries:
            m = e["metrics"].get(r["metric"])
            if m is None or not m["runs"]:
                continue
            ci = bootstrap_ci(m["runs"]) if len(m["runs"]) >= 2 else None
            half = (ci[1] - ci[0]) / 2 / abs(m["mean"]) if ci and m["mean"] else None
            points.append({
                "session": e["session"], "mean": m["mean"], "runs": len(m["runs"]),
                "ci95": ci, "half": half, "speed_ops_s": speeds.get(e["session"]),
            })  # fmt: skip
        if len(points) < 2:
            continue
        means = [p["mean"] for p in points]
        centre = statistics.fmean(means)
        halves = [p["half"] for p in points if p["half"] is not None]
        low, high = min(means), max(means)
        p = r.get("predicted")
        out.append({
            "model": r["model"], "config": r["config"], "metric": r["metric"],
            "sessions": [x["session"] for x in points], "means": means,
            "runs": [x["runs"] for x in points], "low": low, "high": high, "predicted": p,
            "inside": p is not None and low <= p <= high,
            "between": (high - low) / 2 / abs(centre) if centre else None,
            "within": statistics.median(halves) if halves else None,
            "apart": _apart(points),
        })  # fmt: skip
    metrics: dict[str, Any] = {}
    for metric in dict.fromkeys(r["metric"] for r in rows):
        mine = [c for c in out if c["metric"] == metric]
        b = [c["between"] for c in mine if c["between"] is not None]
        w = [c["within"] for c in mine if c["within"] is not None]
        metrics[metric] = {
            "cases": len(mine),
            "between_median": statistics.median(b) if b else None,
            "within_median": statistics.median(w) if w else None,
            "moved": sum(1 for c in mine if c["apart"] is not None),
        }
    sessions = [m for m in history.get("sessions", []) if m["id"] in grid]
    kept = [c for c in out if c["metric"] in SPEED_BOUND]
    return {"cases": kept, "metrics": metrics, "sessions": sessions}


def _apart(points: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The lowest and highest sessions of two or more runs, when their
    intervals do not overlap (None otherwise)."""
    repeated = [p for p in points if p["ci95"] is not None]
    if len(repeated) < 2:
        return None
    lo = min(repeated, key=lambda p: p["mean"])
    hi = max(repeated, key=lambda p: p["mean"])
    if lo["ci95"][1] >= hi["ci95"][0]:
        return None
    keep = ("session", "mean", "runs", "ci95", "speed_ops_s")
    return {"low": {k: lo[k] for k in keep}, "high": {k: hi[k] for k in keep}}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:,.3g}" if abs(x) < 100 else f"{x:,.0f}"


def report_lines(b: dict[str, Any]) -> list[str]:
    """The report's section on the sessions (``between``'s result), every number from it."""
    lines = ["## Between sessions", ""]
    if not any(m["cases"] for m in b["metrics"].values()):
        return [*lines, f"No case has two sessions of this grid in `{HISTORY}` yet."]
    lines += [
        f"Every session of this grid in `{HISTORY}` (the current one included), and each "
        "case's measured mean per session against this report's prediction. *Between* is "
        "half the range of the sessions' means, relative to their mean; *within* is the "
        "median over sessions of two or more runs of their 95% bootstrap half-width, "
        "relative (the noise this report's repeats see). A case *moved* when its lowest and "
        "highest sessions' intervals do not overlap. Sessions ran at different git revisions: "
        "a change of the measurement between them (the probe's reads) moves a metric too. The "
        "goals above count this session's runs only.",
        "",
        "| session | git | source | cpu | cases | speed reference (median ops/s over runs) |",
        "|---|---|---|---|---|---|",
    ]
    for s in b["sessions"]:
        speed = s.get("speed_reference")
        ref = f"{speed['median_ops_s']:,.0f} ({speed['runs']} runs)" if speed else "not recorded"
        lines.append(
            f"| {s['id']} | {s['git_revision'][:12]} | {s['source']} | {s.get('cpu') or '-'} | "
            f"{s['cases']} | {ref} |"
        )
    lines += [
        "",
        "| metric | cases | between (median) | within (median) | moved beyond noise |",
        "|---|---|---|---|---|",
    ]
    for metric, m in b["metrics"].items():
        if m["cases"]:
            lines.append(
                f"| {metric} | {m['cases']} | {_pct(m['between_median'])} | "
                f"{_pct(m['within_median'])} | {m['moved']} |"
            )
    lines += [
        "",
        "Per case, the metrics the machine's speed moves (latency; the served rate at saturation):",
        "",
        "| model | config | metric | session means, oldest first (runs) | range | predicted | "
        "inside | between | within | moved |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in b["cases"]:
        means = ", ".join(f"{_num(m)} ({n})" for m, n in zip(c["means"], c["runs"], strict=True))
        lines.append(
            f"| {c['model']} | {c['config']} | {c['metric']} | {means} | "
            f"{_num(c['low'])}-{_num(c['high'])} | {_num(c['predicted'])} | "
            f"{'yes' if c['inside'] else 'no'} | {_pct(c['between'])} | {_pct(c['within'])} | "
            f"{'yes' if c['apart'] else 'no'} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m simlab.sessions FOLDER [--platform P]``: (re)build FOLDER's
    history from git, for the cases of the platform's current grids."""
    import argparse  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from simlab.validate import METRICS, validation_plan  # noqa: PLC0415 - heavy, only here

    p = argparse.ArgumentParser(prog="python -m simlab.sessions", description=main.__doc__)
    p.add_argument("folder", type=Path)
    p.add_argument("--platform", default="cpython")
    a = p.parse_args(argv)
    if not (a.folder / "validation.json").exists():
        print(f"simlab: error: folder: no validation.json in {str(a.folder)!r}", file=sys.stderr)
        return 2
    plan = validation_plan(a.platform, quick=False) + validation_plan(a.platform, quick=True)
    try:
        labels = {f"{c.target} {c.config()}" for c in plan}
        history = seed_from_git(a.folder, labels, set(METRICS))
    except (UserError, ValueError) as exc:
        print(f"simlab: error: folder: {exc}", file=sys.stderr)
        return 2
    write(a.folder, history)
    print(f"{len(history['sessions'])} sessions, {len(history['cases'])} cases")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
