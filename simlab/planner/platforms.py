"""The planner across runtimes: every model sized on each platform, ranked by memory and by cores.

``plan`` answers for one platform. A shop choosing a runtime asks the same
question on several (cpython, jvm, go, ...): here each platform gets its own
plan for the same workload and goals, every feasible (model, platform) pair
is ranked by memory (on the goals' basis) and by the cores its CPU keeps
busy, and one paragraph says why the winner wins. The reason is computed:
the memory unit (threads, their stacks, connections, processes...) whose
cost differs most between the winner and the runner-up, with its count and
its cost per unit on each platform.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from simlab.errors import UserError
from simlab.footprint import KIB_PER_MIB, UNITS, Units, unit_costs
from simlab.models import get_model
from simlab.params import Architecture, Platform, Workload
from simlab.planner import PlanReport, plan
from simlab.planner.estimate import _poisson_peak, _rough_latency
from simlab.planner.search import Goals, Plan
from simlab.provenance import json_safe

__all__ = ["Choice", "PlatformsReport", "plan_platforms"]

# What each memory unit is called in the explanation.
UNIT_WORDS = {
    "process": "the server process",
    "touched": "forked copies' copy-on-write growth",
    "fork": "forked processes",
    "thread": "threads",
    "connection": "connections",
    "task": "requests in flight",
    "backend_conn": "backend connections",
    "front": "front loop processes",
    "front_conn": "connections held by the front",
    "buffer_kib": "KiB of buffered bytes",
    "called": "forked children's growth from their first backend call",
    "served": "threads' growth once they have served",
    "child": "children per connection's kernel memory beyond a forked copy's",
    "copy": "pre-forked copies' own start and first service",
    "copy_call": "pre-forked copies' growth from their first backend call",
}


@dataclass(frozen=True)
class Choice:
    """One model sized on one platform."""

    platform: str
    plan: Plan
    cores_busy: float | None  # cores its CPU keeps busy on average

    def to_dict(self) -> dict[str, Any]:
        return {"platform": self.platform, "cores_busy": self.cores_busy, **self.plan.to_dict()}


@dataclass(frozen=True)
class PlatformsReport:
    """Every platform's plan, the feasible choices ranked two ways, and why the winner wins."""

    reports: dict[str, PlanReport]
    by_memory: list[Choice]
    by_cores: list[Choice]
    explanation: str
    goals: Goals
    workload: Workload

    @property
    def winner(self) -> Choice | None:
        return self.by_memory[0] if self.by_memory else None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "platforms": {name: r.to_dict() for name, r in self.reports.items()},
            "by_memory": [c.to_dict() for c in self.by_memory],
            "by_cores": [c.to_dict() for c in self.by_cores],
            "winner": (
                None if self.winner is None else [self.winner.plan.model, self.winner.platform]
            ),
            "explanation": self.explanation,
            "workload": self.workload.describe(),
        }
        return dict(json_safe(out))


def plan_platforms(
    workload: Workload,
    platforms: Sequence[Platform],
    goals: Goals,
    *,
    progress: Callable[[str, float], None] | None = None,
    **kwargs: Any,
) -> PlatformsReport:
    """Size every model on each of ``platforms`` for ``workload`` within ``goals``
    (``kwargs`` as for ``plan``), and rank the feasible choices."""
    if not platforms:
        raise UserError("--platforms: name at least one platform")
    names = [p.name for p in platforms]
    if len(set(names)) != len(names):
        raise UserError(f"--platforms: a platform is named twice ({', '.join(names)})")
    reports: dict[str, PlanReport] = {}
    for k, platform in enumerate(platforms):
        if progress is not None:
            progress(platform.name, k / len(platforms))
        reports[platform.name] = plan(workload, platform, goals, **kwargs)
    if progress is not None:
        progress("done", 1.0)
    choices = [
        Choice(name, p, _cores_busy(p, r.platform))
        for name, r in reports.items()
        for p in r.plans
        if p.feasible
    ]
    by_memory = sorted(choices, key=lambda c: (_memory(c, goals), _cores_key(c), c.platform))
    by_cores = sorted(choices, key=lambda c: (_cores_key(c), _memory(c, goals), c.platform))
    platform_of = {p.name: p for p in platforms}
    return PlatformsReport(
        reports=reports,
        by_memory=by_memory,
        by_cores=by_cores,
        explanation=_explain(by_memory, by_cores, platform_of, workload, goals),
        goals=goals,
        workload=workload,
    )


def _cores_busy(p: Plan, platform: Platform) -> float | None:
    if p.cpu_utilization is None or platform.cores is None:
        return None
    return p.cpu_utilization * platform.cores


def _cores_key(c: Choice) -> float:
    return c.cores_busy if c.cores_busy is not None else float("inf")


def _memory(c: Choice, goals: Goals) -> float:
    return goals.memory_of(c.plan.memory_mib or 0.0, c.plan.virtual_mib or 0.0)


def units_of(c: Choice, workload: Workload, platform: Platform) -> Units:
    """The units the planner counted for a choice (its expected peak)."""
    p = c.plan
    arch = Architecture(workers=p.workers or 1, processes=p.processes or 1)
    in_flight = _poisson_peak((workload.rate or 0.0) * _rough_latency(workload, platform))
    return get_model(p.model).units(workload, arch, in_flight)


def _kib(units: Units, platform: Platform, basis: str) -> dict[str, tuple[float, float]]:
    """Per unit: (count, KiB of one on the basis): resident = user + kernel, or reserved."""
    costs = unit_costs(platform)
    out = {}
    for unit in UNITS:
        user, kernel, reserved = costs[unit]
        each = reserved if basis == "reserved" else user + kernel
        out[unit] = (float(getattr(units, unit)), each)
    return out


def _explain(
    by_memory: list[Choice],
    by_cores: list[Choice],
    platforms: dict[str, Platform],
    workload: Workload,
    goals: Goals,
) -> str:
    """One paragraph, every number and the cause computed from the plans."""
    if not by_memory:
        return "No model meets the goals on any of the platforms."
    win = by_memory[0]
    basis = goals.basis
    text = [
        f"{win.plan.model} on {win.platform} wins on {basis} memory: "
        f"{_memory(win, goals):,.0f} MiB with {win.plan.threads or 0:,} threads"
    ]
    others = [
        c for c in by_memory[1:] if (c.plan.model, c.platform) != (win.plan.model, win.platform)
    ]
    if others:
        # The runner-up of another kind: another model, or the same on another platform.
        ru = others[0]
        text[0] += (
            f", against {_memory(ru, goals):,.0f} MiB for the runner-up, {ru.plan.model} on "
            f"{ru.platform} ({ru.plan.threads or 0:,} threads)."
        )
        w_units = _kib(
            units_of(win, workload, platforms[win.platform]), platforms[win.platform], basis
        )
        r_units = _kib(
            units_of(ru, workload, platforms[ru.platform]), platforms[ru.platform], basis
        )
        gaps = {u: r_units[u][0] * r_units[u][1] - w_units[u][0] * w_units[u][1] for u in UNITS}
        unit = max(gaps, key=lambda u: gaps[u])
        (wn, we), (rn, re_) = w_units[unit], r_units[unit]
        total = sum(gaps.values())
        if gaps[unit] > 0 and total > 0:
            text.append(
                f"Most of the gap ({gaps[unit] / KIB_PER_MIB:,.0f} of "
                f"{total / KIB_PER_MIB:,.0f} MiB, {gaps[unit] / total:.0%}) is "
                f"{UNIT_WORDS[unit]}: {rn:,.0f} x {re_:,.1f} KiB on {ru.platform} against "
                f"{wn:,.0f} x {we:,.1f} KiB on {win.platform}"
                + (
                    " (the count differs)"
                    if rn != wn and abs(re_ - we) <= 0.1 * max(re_, we)
                    else (" (the cost per unit differs)" if rn == wn else "")
                )
                + "."
            )
    else:
        text[0] += "."
    if by_cores and by_cores[0].cores_busy is not None:
        fast = by_cores[0]
        same = (fast.plan.model, fast.platform) == (win.plan.model, win.platform)
        text.append(
            f"By cores, {fast.plan.model} on {fast.platform} needs the fewest: "
            f"{fast.cores_busy:.2f} cores busy on average"
            + (
                ", so one choice wins both ways."
                if same
                else f" ({win.plan.model} on {win.platform}: {_cores_text(win)})."
            )
        )
    return " ".join(text)


def _cores_text(c: Choice) -> str:
    return "cores not counted" if c.cores_busy is None else f"{c.cores_busy:.2f}"
