"""Regenerate the reference part of ``docs/platforms.md`` from the presets and their sources.

    .venv/bin/python docs/gen_platforms.py           # rewrite it (make docs runs this)
    .venv/bin/python docs/gen_platforms.py --check   # exit 1 if it is out of date

Everything above the ``MARKER`` line is written by hand; below it, one table
per preset: each number and where it comes from (``simlab.platforms.SOURCES``,
or the preset's docstring for the numbers it does not list); then each
committed calibrated profile of a runtime (``data/profiles/<runtime>.json``,
written by ``simlab calibrate --runtime``), the costs the cpython profile
fitted for a peer's own code (``peers`` -> ``costs``), and the summary of every
committed validation report (``data/validation/<name>/validation.json``),
across runtimes, per model and metric.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from simlab.pages import rewrite_or_check, splice

PAGE = Path(__file__).resolve().parent / "platforms.md"
DATA = Path(__file__).resolve().parent.parent / "data"
MARKER = "<!-- Generated below by docs/gen_platforms.py from simlab.platforms: do not edit. -->"


def reference() -> str:
    """Every preset's numbers, each with its source, as Markdown."""
    from simlab.params import Platform  # noqa: PLC0415 - the page, not the module, needs them
    from simlab.platforms import PRESETS, preset_sources  # noqa: PLC0415

    default = Platform()
    parts: list[str] = []
    for name, make in PRESETS.items():
        p = make()
        sources = preset_sources(name)
        parts += [f"## `{name}`", "", (make.__doc__ or "").split("\n\n")[0].strip(), ""]
        parts += [
            f"Cores {p.cores if p.cores is not None else 'unlimited'}, "
            f"GIL {'yes' if p.gil else 'no'}, backend connections "
            f"{'from a shared pool' if p.backend_pool else 'one per thread that calls'}.",
            "",
            "| number | value | source |",
            "|---|---|---|",
        ]
        for field in Platform.numeric_fields():
            value = getattr(p, field)
            if field in sources:
                source = sources[field]
            elif name != "cpython" and value == getattr(default, field):
                source = "as `cpython`"
            else:
                source = f"`{name}()` in `simlab/platforms.py` (its docstring)"
            parts.append(f"| `{field}` | {value:g} | {source} |")
        parts.append("")
    return "\n".join(parts)


def render(current: str) -> str:
    """The page: its hand-written part up to the marker, then the generated tables."""
    return splice(
        PAGE, current, MARKER, f"{reference()}\n{calibrated()}\n{peer_costs()}\n{validated()}"
    )


def _how(p: dict[str, Any]) -> str:
    if p.get("ci95"):
        lo, hi = p["ci95"]
        return f"fitted, 95% CI [{lo:,.4g}, {hi:,.4g}]"
    if not p.get("identified", True):
        why = str(p.get("assumption", "")).removeprefix("not identified: ")
        return f"not identified (assumption): {why}"
    return str(p.get("method", ""))


def calibrated() -> str:
    """Each runtime's committed profile: every parameter, its value and how."""
    from simlab.real.grids import RUNTIMES  # noqa: PLC0415

    parts = ["## Calibrated runtime profiles", ""]
    parts += [
        "Written by `simlab calibrate --runtime NAME` from the runtime's own peers; "
        "`--platform NAME` uses them in place of the presets above.",
        "",
    ]
    for name in RUNTIMES:
        path = DATA / "profiles" / f"{name}.json"
        if not path.exists():
            continue
        profile = json.loads(path.read_text())
        rt = profile.get("runtime", {})
        parts += [
            f"### `{name}` (calibrated)",
            "",
            f"Peers {', '.join(f'`{p}`' for p in rt.get('peers', []))}; {rt.get('structure', '')}; "
            f"{len(profile.get('runs', []))} runs, git {profile['git_revision'][:12]}, "
            f"{profile['created']}.",
            "",
            "| number | value | how |",
            "|---|---|---|",
        ]
        for key, p in profile["parameters"].items():
            if isinstance(p, dict):
                parts.append(f"| `{key}` | {p['value']:,.4g} | {_how(p)} |")
            else:
                parts.append(f"| `{key}` | {p} | this machine |")
        for peer, entry in profile.get("peers", {}).items():
            bits = []
            if entry.get("threads_offset"):
                bits.append(f"{entry['threads_offset']['value']:+g} threads")
            elif entry.get("threads_note"):
                bits.append(f"threads: {entry['threads_note']}")
            if entry.get("user_offset_mib"):
                bits.append(f"{entry['user_offset_mib']['value']:+.1f} MiB user memory")
            parts.append(f"\n`{peer}` beyond its model: {'; '.join(bits) or 'nothing'}.")
        parts.append("")
    return "\n".join(parts)


def peer_costs() -> str:
    """The costs the cpython profile fitted for a peer's own code (``peers`` ->
    ``costs``), beside the shared values the peer's model would use."""
    path = DATA / "profiles" / "cpython.json"
    if not path.exists():
        return ""
    profile = json.loads(path.read_text())
    rows = []
    for peer, entry in profile.get("peers", {}).items():
        for key, p in (entry.get("costs") or {}).items():
            shared = profile["parameters"].get(key, {}).get("value")
            rows.append(f"| `{peer}` | `{key}` | {p['value']:,.4g} | {shared:,.4g} | {_how(p)} |")
    if not rows:
        return ""
    return "\n".join(
        [
            "## Peers' own costs (`cpython`)",
            "",
            "Written by `simlab calibrate` from each loop peer's own closed loops of 1 to 64 "
            "clients (the machine's costs held at the shared values); validation simulates "
            "the peer with them in place of the shared ones (what simlab's own servers cost).",
            "",
            "| peer | number | value | shared | how |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


def _cell(v: dict[str, Any]) -> str:
    if v.get("median") is None:
        return "-"
    flag = "" if v["met"] else " **over**"
    ci = v.get("median_ci95")
    if not v["met"] and ci is not None and ci[0] <= v["goal"]:
        # Other runs of the same cases could meet the goal (``validate._noise_verdict``).
        flag += " (within the runs' noise)"
    return f"{v['median']:.1%} / {v['worst']:.0%}{flag}"


def validated() -> str:
    """Every committed validation report's summary: per platform and model,
    each metric's median / worst error over the evidence, against its goal."""
    reports = sorted((DATA / "validation").glob("*/validation.json"))
    if not reports:
        return ""
    results = [json.loads(p.read_text()) for p in reports]
    metrics = list(results[0]["summary"]["metrics"])
    goals = " ".join(
        f"{m} {v['goal']:.0%}," for m, v in results[0]["summary"]["metrics"].items()
    ).rstrip(",")
    parts = [
        "## Validation across runtimes",
        "",
        "From the committed reports (`data/validation/<platform>/`, written by "
        "`simlab validate --platform NAME`): median / worst error over the held-out "
        f"cases that count as evidence, **over** where the median misses its goal ({goals}), "
        "*within the runs' noise* where the low end of the median's interval over the runs "
        "meets it (other runs of the same cases could); "
        "- where no case of that model can disagree on that metric.",
        "",
        "| platform | model | cases | " + " | ".join(metrics) + " |",
        "|---|---|---|" + "---|" * len(metrics),
    ]
    for r in results:
        s = r["summary"]
        n_cases = len({(row["model"], row["config"]) for row in r["rows"]})
        overall = " | ".join(_cell(s["metrics"][m]) for m in metrics)
        parts.append(f"| `{r['platform']}` | **all** | {n_cases} | {overall} |")
        for model, per in s["models"].items():
            n = len({row["config"] for row in r["rows"] if row["model"] == model})
            cells = " | ".join(_cell(per[m]) for m in metrics)
            parts.append(f"| `{r['platform']}` | {model} | {n} | {cells} |")
    parts.append("")
    return "\n".join(parts)


def main() -> int:
    return rewrite_or_check(PAGE, render, sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
