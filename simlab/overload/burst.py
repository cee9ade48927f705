"""Does a plan survive a burst? ``simlab plan --burst``.

A steady plan (``simlab.planner.plan``) says which configuration of each model
meets the goals at the steady rate. A burst asks something else: the rate
jumps to a peak for a while, then comes back, and the clients follow a
timeout policy (``--timeout-ms``, ``--retries``, a retry budget). The plan
survives the burst when its run, simulated with the schedule

    steady rate for ``LEAD_S``, the peak for the burst, steady again for the
    stated recovery time and ``SETTLE_S`` more,

is healthy again within the stated time after the burst ends, by the recovery
rule of ``simlab.overload.timeline`` (goodput and p99 back to the levels before
the burst, for good).

Where a plan does not survive, two remedies are tried, each on its own, and
recommended only where it changes the answer:

- a concurrency limit (``--max-inflight``: 503 at once past that many requests
  in flight), the largest of a few candidates that recovers in time. The
  candidates are multiples of what the plan's server holds at once: its workers
  times its processes for a pool, or the requests a timeout's worth of steady
  load puts in flight (Little's law: rate x timeout) for the others;
- a retry budget, when clients retry and none is set: gRPC's retry throttling
  defaults (``BUDGET_TOKENS`` tokens, ``TOKEN_RATIO`` of a token back per
  success).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from simlab import simulation
from simlab.errors import UserError
from simlab.models import get_model
from simlab.overload.policy import Clients, Limits
from simlab.overload.schedule import Schedule
from simlab.params import Architecture, Platform, Workload

__all__ = [
    "BUDGET_TOKENS",
    "LEAD_S",
    "SETTLE_S",
    "TOKEN_RATIO",
    "Burst",
    "BurstPlan",
    "BurstRun",
    "burst_schedule",
    "check_burst",
    "limit_candidates",
    "parse_burst",
]

LEAD_S = 10.0  # steady load before the burst: the baseline the recovery is judged against
SETTLE_S = 10.0  # beyond the stated recovery time: the rule needs healthy windows after it
WARMUP_S = 2.0
BUDGET_TOKENS, TOKEN_RATIO = 10.0, 0.1  # gRPC's retry throttling defaults
LIMIT_FACTORS = (8, 4, 2, 1)  # tried largest first: the gentlest limit that works
_BURST = re.compile(
    r"^\s*(?P<rate>[^/\s]+)\s*/\s*s\s+for\s+(?P<dur>[^\s]+?)\s*(?P<unit>ms|s|min)?\s*$"
)
_UNITS = {"ms": 1e-3, "s": 1.0, "min": 60.0, None: 1.0}


@dataclass(frozen=True)
class Burst:
    """A burst: ``peak`` requests/s for ``duration`` seconds."""

    peak: float
    duration: float

    def text(self) -> str:
        return f"{self.peak:g}/s for {self.duration:g}s"


def parse_burst(text: str) -> Burst:
    """``PEAK/s for DURATION`` (e.g. ``2000/s for 10s``); UserError without the option's name."""
    m = _BURST.match(text.lower())
    if m is None:
        raise UserError(f"give 'PEAK/s for DURATION' (e.g. '2000/s for 10s'), got {text!r}")
    try:
        peak = float(m["rate"])
        seconds = float(m["dur"]) * _UNITS[m["unit"]]
    except ValueError:
        raise UserError(f"the peak and the duration must be numbers, got {text!r}") from None
    if not (math.isfinite(peak) and peak > 0):
        raise UserError(f"the peak rate must be > 0, got {m['rate']!r}")
    if not (math.isfinite(seconds) and seconds > 0):
        raise UserError(f"the duration must be > 0, got {m['dur']!r}")
    return Burst(peak, seconds)


def burst_schedule(rate: float, burst: Burst, recover_within: float) -> Schedule:
    """The steady rate, the burst, then the steady rate for the recovery time and more."""
    return Schedule.of(
        [(rate, LEAD_S), (burst.peak, burst.duration), (rate, recover_within + SETTLE_S)]
    )


@dataclass(frozen=True)
class BurstRun:
    """One simulated burst: when (after the burst ended) it was healthy again."""

    max_inflight: int | None
    retry_budget: float | None
    recovered_s: float | None
    survives: bool
    goodput_rps: float
    timeouts: int
    retries: int
    wasted_share: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class BurstPlan:
    """One model's plan under the burst, and the remedies tried where it fails."""

    model: str
    workers: int | None
    processes: int | None
    plain: BurstRun
    limited: BurstRun | None = None
    budgeted: BurstRun | None = None
    tried_limits: list[int] = field(default_factory=list)

    @property
    def recommendation(self) -> str:
        """What to change, in words, chosen from the runs."""
        if self.plain.survives:
            return "survives as planned"
        fixes = []
        if self.limited is not None and self.limited.survives:
            fixes.append(f"a concurrency limit of {self.limited.max_inflight} (--max-inflight)")
        if self.budgeted is not None and self.budgeted.survives:
            fixes.append(
                f"a retry budget of {BUDGET_TOKENS:g} tokens (--retry-budget, "
                f"--retry-token-ratio {TOKEN_RATIO:g})"
            )
        if not fixes:
            tried = []
            if self.tried_limits:
                tried.append("concurrency limits " + ", ".join(map(str, self.tried_limits)))
            if self.budgeted is not None:
                tried.append("a retry budget")
            extra = f" ({' and '.join(tried)} do not help)" if tried else ""
            return "does not survive: needs more capacity" + extra
        return "survives with " + " or with ".join(fixes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "workers": self.workers,
            "processes": self.processes,
            "survives": self.plain.survives,
            "plain": self.plain.to_dict(),
            "limited": None if self.limited is None else self.limited.to_dict(),
            "budgeted": None if self.budgeted is None else self.budgeted.to_dict(),
            "tried_limits": self.tried_limits,
            "recommendation": self.recommendation,
        }


def limit_candidates(
    workers: int | None, processes: int | None, rate: float, clients: Clients | None
) -> list[int]:
    """Concurrency limits to try, largest first (see the module's docstring)."""
    if workers is not None:
        unit = workers * (processes or 1)
    elif clients is not None and clients.timeout is not None:
        unit = max(1, math.ceil(rate * clients.timeout))
    else:
        unit = max(1, math.ceil(rate * 0.1))  # no timeout: a tenth of a second of load
    return sorted({max(1, unit * k) for k in LIMIT_FACTORS}, reverse=True)


Simulate = Callable[[Workload, Architecture], Any]


def _run(
    simulate: Simulate, workload: Workload, arch: Architecture, recover_within: float
) -> BurstRun:
    summary = simulate(workload, arch)
    o = summary.overload
    rec = o.recovery if o is not None else None
    recovered = rec.recovered_s if rec is not None else None
    limits = arch.limits
    clients = workload.clients
    return BurstRun(
        max_inflight=None if limits is None else limits.max_inflight,
        retry_budget=None if clients is None else clients.budget,
        recovered_s=recovered,
        survives=recovered is not None and recovered <= recover_within,
        goodput_rps=float(o.goodput_rps) if o is not None else float(summary.throughput_rps),
        timeouts=int(o.timeouts) if o is not None else 0,
        retries=int(o.retries) if o is not None else 0,
        wasted_share=None if o is None else o.wasted_share,
    )


def check_burst(
    model: str,
    workload: Workload,
    arch: Architecture,
    burst: Burst,
    *,
    recover_within: float,
    simulate: Simulate,
    remedies: bool = True,
) -> BurstPlan:
    """One plan under the burst; where it fails, the remedies (module docstring).

    ``workload`` has the steady rate and the clients' policy; ``simulate`` runs
    one scenario (workload with its schedule, architecture) and returns its
    summary, with the timeline on.
    """
    if workload.rate is None or workload.schedule is not None:
        raise UserError("--burst: give --rate as a number, the steady rate the burst rises from")
    if burst.peak <= workload.rate:
        raise UserError(
            f"--burst: the peak ({burst.peak:g}/s) must be above the steady --rate "
            f"({workload.rate:g}/s)"
        )
    schedule = burst_schedule(workload.rate, burst, recover_within)
    bursty = replace(workload, schedule=schedule, rate=schedule.mean_rate())
    plain = _run(simulate, bursty, arch, recover_within)
    # A model without a pool has no workers to report (its architecture's are unused).
    out = BurstPlan(model, arch.workers if _has_pool(model) else None, arch.processes, plain)
    if plain.survives or not remedies:
        return out
    tried: list[int] = []
    limited = None
    for limit in limit_candidates(
        arch.workers if _has_pool(model) else None, arch.processes, workload.rate, workload.clients
    ):
        tried.append(limit)
        base = arch.limits or Limits()
        run = _run(
            simulate,
            bursty,
            replace(arch, limits=replace(base, max_inflight=limit)),
            recover_within,
        )
        limited = run
        if run.survives:
            break
    budgeted = None
    c = workload.clients
    if c is not None and c.retries > 0 and c.budget is None:
        with_budget = replace(c, budget=BUDGET_TOKENS, token_ratio=TOKEN_RATIO)
        budgeted = _run(simulate, replace(bursty, clients=with_budget), arch, recover_within)
    return replace(out, limited=limited, budgeted=budgeted, tried_limits=tried)


def _has_pool(model: str) -> bool:
    """A model whose workers bound what it serves at once (its class says so)."""
    return bool(get_model(model).pooled)


def plan_bursts(
    plans: Sequence[tuple[str, Architecture]],
    workload: Workload,
    platform: Platform,
    burst: Burst,
    recover_within: float,
    *,
    seed: int,
    replications: int,
    progress: Callable[[str, float], None] | None = None,
) -> list[BurstPlan]:
    """Every (model, configuration) under the burst, simulated on ``platform``."""
    out = []
    for k, (model, arch) in enumerate(plans):
        if progress is not None:
            progress(model, k / max(1, len(plans)))

        def simulate(w: Workload, a: Architecture, model: str = model) -> Any:
            span = w.schedule.span if w.schedule is not None else None
            assert span is not None
            return simulation.simulate(
                model,
                w,
                platform,
                a,
                duration=span - WARMUP_S,
                warmup=WARMUP_S,
                seed=seed,
                replications=replications,
                tables=False,
                timeline=True,
            ).summary

        out.append(
            check_burst(
                model, workload, arch, burst, recover_within=recover_within, simulate=simulate
            )
        )
    if progress is not None:
        progress("done", 1.0)
    return out
