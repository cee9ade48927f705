"""Why a validation error is over twice its goal: a cause the report's own rows
show, a hypothesis with the run that would test it, or nothing (unexplained).

Every explanation is chosen by a rule over the rows of the validation (the
same case's other metrics, the same model's other cases), never typed for a
case. A rule that finds no support in the rows does not fire, and the miss
is reported as unexplained.

- **capacity** (cause): a latency miss in a case whose served rate also
  misses, outside noise, the way that explains it: a model that serves more
  than the server did has the shorter queue, and the lower latency.
- **saturated** (cause): a latency miss at an offered load of 1 or more
  where the served rates agree within noise: the queue grows at offered -
  served per second, so the latency is that small difference magnified by
  the run's length.
- **near saturation** (hypothesis): a latency miss at an offered load of 0.8
  to 1 with the served rates agreeing: the server's capacity is closer to the
  offered load than the model's.
- **a queue the model does not reach** (hypothesis): a latency miss under
  the measured at an offered load from 0.4 to 0.8 with the served rates
  agreeing and every run's window steady, whose case's p50 and p99 are both
  higher than the model's outside noise, the measured spread (p99 - p50)
  grown by at least the p50's factor (a queue, not a constant delay the
  model leaves out), and the load that the p50's factor implies for waits
  growing as 1 / (1 - load) from 0.8: the server's capacity is closer to the
  offered load than the model's.
- **CPU a request** (hypothesis): a latency miss that no rule above
  explains by a cause, in a case whose served rates agree (below
  saturation a server's CPU a request is not its served rate's inverse)
  and whose server spent more (or less) CPU a served request than the
  model does, outside the runs' own spread and the machine's
  repeatability, the way and by enough to explain it: a dearer request is
  a higher offered load on the same cores (``cpu_ms_runs`` against
  ``cpu_ms_predicted``, ``cpu_busy_cores`` over ``throughput_rps`` on both
  sides). At saturation the quotient is the served rate's inverse, so it
  is never read there.
- **waiting for a core** (hypothesis): a latency miss over the model,
  outside noise, at an offered load under 0.8 (from there *near
  saturation* speaks), with the served rates agreeing, where no rule
  above (and not *spread*) explains it and every run read its server's threads'
  waits for a core (``run_queue_runs``: ``schedstat``, where the threads
  held still): each run's threads waited longer than one shared queue of
  the machine's cores would make them (Erlang C at the machine's measured
  load; the model's cores are such a queue), and the runs' median excess
  a request covers the p50's excess over the model and a tenth of the
  measured p50 at least (in hand runs of three cases that meet their
  latency goals, 4 December, the excess was 3 to 4% of the p50: the
  kernel's queues usually wait longer than one queue, by little).
- **backlog from the warm-up** (hypothesis): a latency miss under the
  measured, outside noise, that no rule above explains, at an offered load
  under 0.9 (where the model keeps up, so that what it serves of a run's
  arrivals in the window is about what arrived), whose every run served
  more than the model did on that run's own arrivals, the served rates
  apart outside noise: the server finished in the window requests that
  had arrived in the warm-up, so it began the window behind, and the
  window's requests queued behind them; the model begins it level.
- **spread** (hypothesis): a latency miss whose case's p50 and p99 miss in
  opposite directions, both outside noise: the model's waits are spread wider
  (or narrower) than the server's.
- **switches** (hypothesis): a served-rate miss at saturation, the model
  serving more, whose runs (``SWITCH_RUNS`` or more, each with its threads'
  scheduler slices read: ``run_queue_runs``) spent more CPU a second the
  more slices their threads took a second (the least-squares slope of busy
  cores, ``cpu_ms_runs`` times the served rate, on slices a second,
  ``slices_per_request`` times the served rate, with its 95% interval over
  zero), and whose runs that took more slices a request served less. Busy
  cores and slices are read apart (the probe's CPU time, the threads'
  ``schedstat``), so the slope is not the served rate's inverse twice: it
  is what a slice (a thread's turn on a core, ended by a switch) costs.
  Among many threads sharing the GIL each hand-off is a switch, and the
  GIL's time lost to them is capacity lost.
- **capacity itself** (hypothesis): a served-rate miss at saturation.
- **pre-forked copies** (cause, then hypothesis): a memory miss in a case
  with several processes, where the same model's single-process cases meet
  the goal.
- **short connections** (hypothesis): a kernel-memory miss in a case whose
  connections carry a few requests each (``k=``).
- **per connection** (hypothesis): a memory miss of a single-process case of
  persistent connections, where over the model's other cases of that kind
  (``PER_CONNECTION_CASES`` or more, the miss's own left out so that it
  cannot make the trend that explains it; their connections ``N``
  spanning a factor of ``PER_CONNECTION_SPAN`` or more) the gap between
  the server's memory and the model's grows with ``N`` (the least-squares
  slope of measured - predicted on N, its 95% t-interval wholly on the
  miss's side of zero), and the slope times this case's N is at least
  ``PER_CONNECTION_SHARE`` of its gap: consistent with a connection
  (its thread, for a thread per connection: stack, buffers, the runtime's
  per-thread allocation) holding more, or less, than the model's cost.
  The rest of the gap is named as the other cases' intercept, with whether
  its interval can tell a base from none, and the case's own scatter.
- **children outlive their connection** (hypothesis): a threads-peak miss
  over the prediction, in a case of short connections (``k=``) of a model
  whose every connection has a process of its own, where the profile's
  ``fork_exit_us`` (how long a child lives after its connection) is an
  assumption set under its own estimate: the model's children end sooner
  than the data say. The rows' speed references add whether the runs on the
  faster machine held the fewer children.
- **connections not yet accepted** (cause): a threads-peak miss under the
  prediction, outside noise, at or beyond saturation, in a case of
  persistent connections of a model that gives each connection a thread
  (or a child) of its own for its life, whose runs peaked at or under every
  predicted run: such a server's threads count the connections it has
  accepted, so in the runs under it had accepted fewer than the model's
  acceptor (which, under a GIL, makes its threads one at a time as the run
  starts; without one, all at once). The runs whose windows
  opened while the server still made its threads (``unsteady_runs``) are
  counted. Why its acceptor fell behind is the text's hypothesis (it is
  one more thread waiting for the GIL and the cores), with its test.
- **a count finer than its goal** (hypothesis): a threads-peak miss whose
  model's and server's runs overlap (one predicted run's peak reaches a
  measured run's, on the runs' own arrivals) and whose means are at most one
  thread apart, at a count where one thread is over twice the goal: a peak
  this small moves by whole threads from run to run, and the miss is within
  that step.
- **slow machine** (hypothesis): a latency or served-rate miss whose case's
  runs order by the machine's speed (``speed_reference_runs``, each run's
  slower end): the run on the fastest machine measured nearest the
  prediction, the others, on a machine slower by more than the reference's
  repeatability, further away on the miss's side.
- **session drift** (hypothesis): a latency or served-rate miss that no
  cause above explains, whose case's measured mean moved between validation
  sessions by more than the noise within them (``simlab.sessions``: the
  lowest and highest sessions' intervals do not overlap), and whose
  prediction lies between those sessions' means: the rows do not show the
  model wrong, they show the measurement moving. The text names the
  sessions and their values, and the test: the machine's speed reference
  (``simlab.real.speed``) in those sessions, its ratio once both recorded
  it, read against the direction the values moved.
"""

from __future__ import annotations

import math
import re
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np

from simlab.real.speed import REPEATABILITY
from simlab.sessions import SPEED_BOUND
from simlab.stats import t975

if TYPE_CHECKING:
    from simlab.models.base import Model

__all__ = ["SATURATED", "assumptions_of", "explain", "explain_all"]

NEAR = 0.8  # offered load from which a queue is sensitive to capacity
SATURATED = 0.9  # offered load from which the served rate is the model's to predict
LATENCY = ("latency_p50", "latency_p99")


def _knob(config: str, name: str) -> int | None:
    m = re.search(rf"\b{name}=(\d+)\b", config)
    return int(m.group(1)) if m else None


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _rate(x: float) -> str:
    return f"{x:,.0f}/s"


def _row(rows: list[dict[str, Any]], model: str, config: str, metric: str) -> dict[str, Any] | None:
    for r in rows:
        if (r["model"], r["config"], r["metric"]) == (model, config, metric):
            return r
    return None


def _measure(model: str, config: str) -> str:
    return f"simlab measure {model} with {config}"


def _latency(miss: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, str] | None:
    """A latency miss against the same case's served rate."""
    model, config = miss["model"], miss["config"]
    rho = float(miss["rho"])
    low = miss["predicted"] < miss["measured"]
    thr = _row(rows, model, config, "throughput_rps")
    if thr is None or thr["rel_error"] is None:
        return None
    more = thr["predicted"] > thr["measured"]
    served = (
        f"the model serves {_rate(thr['predicted'])} where the server served "
        f"{_rate(thr['measured'])}"
    )
    if not thr["within_noise"] and more == low:
        queue = "shorter" if more else "longer"
        return {
            "kind": "cause",
            "text": f"capacity: {served} (error {_pct(thr['rel_error'])}, outside noise), "
            f"so its queue is {queue} and its latency {'lower' if low else 'higher'}",
        }
    if thr["within_noise"] and rho >= 1:
        return {
            "kind": "cause",
            "text": f"saturated (offered load {rho:.2f}): the queue grows at offered - served "
            f"per second, and {served}, within noise: the latency magnifies that "
            "difference over the run",
        }
    why = _spread(miss, rows)
    if why is None and thr["within_noise"] and rho < NEAR:
        why = _hidden_queue(miss, rows)
    if why is not None:
        return why
    if thr["within_noise"] and rho >= NEAR:
        return {
            "kind": "hypothesis",
            "text": f"near saturation (offered load {rho:.2f}) the served rates agree, but "
            f"the latency is {'higher' if low else 'lower'} than the model's: the server's "
            f"capacity is {'closer to' if low else 'further from'} the offered load than "
            f"the model's; test: {_measure(model, config)} at offered rates rising to "
            "saturation, and compare the highest served rate with the model's",
        }
    return None


def _hidden_queue(miss: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, str] | None:
    """A latency miss under the measured, at an offered load from ``NEAR`` / 2
    to ``NEAR`` with the served rates agreeing and every run's window steady
    (``unsteady_runs`` empty where recorded), where the case's p50 and p99
    both lie over the model's outside noise and the measured spread
    (p99 - p50) grew by at least the p50's factor: a queue's waits scale both
    with 1 / (1 - load), where a constant delay the model leaves out would
    shift the p50 and leave the spread (a varying one, a stall, widens it
    too: hence the steady windows). Read as a single queue whose latency is
    all wait, the p50's factor r puts the server's load at 1 - (1 - rho) / r,
    a lower bound where part of the latency is a constant delay and waits
    grow no faster than 1 / (1 - load) (M/M/c, M/D/1; service times more
    variable than exponential's grow faster, and the bound can overshoot).
    The rule fires where that load reaches ``NEAR``. Under ``NEAR`` / 2 a
    request's wait is a small part of its latency, and a factor on the
    latency says little of the load."""
    model, config = miss["model"], miss["config"]
    rho = float(miss["rho"])
    p50 = _row(rows, model, config, "latency_p50")
    p99 = _row(rows, model, config, "latency_p99")
    if p50 is None or p99 is None or rho < NEAR / 2:
        return None
    if any(why for r in (p50, p99) for why in r.get("unsteady_runs") or []):
        return None
    values = [p50["predicted"], p50["measured"], p99["predicted"], p99["measured"]]
    if any(v is None or not np.isfinite(float(v)) for v in values):
        return None
    pred50, meas50, pred99, meas99 = (float(v) for v in values)
    higher = all(
        not r["within_noise"] and float(r["measured"]) > float(r["predicted"]) for r in (p50, p99)
    )
    if not higher or not pred50 > 0 or not pred99 > pred50:
        return None
    r50 = meas50 / pred50
    spread = (meas99 - meas50) / (pred99 - pred50)
    load = 1 - (1 - rho) / r50
    if spread < r50 or load < NEAR:
        return None
    return {
        "kind": "hypothesis",
        "text": f"a queue the model does not reach: at the model's offered load {rho:.2f} "
        f"the served rates agree, but the measured p50 is {r50:.1f} times the model's and "
        f"the spread p99 - p50 {spread:.1f} times (a constant delay the model leaves out "
        f"would shift the p50 alone): waits that grow as 1 / (1 - load) put the server's "
        f"load at {load:.2f} or more, so its capacity is at most {1 / load - 1:.0%} over "
        f"the offered rate, where the model's is {1 / rho - 1:.0%} over; test: "
        f"{_measure(model, config)} at offered rates rising to saturation, with the "
        "server's CPU a request (cpu_busy_cores / served), and compare the highest served "
        "rate with the model's",
    }


def _cpu_cost(miss: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, str] | None:
    """A latency miss in a case whose served rates agree (the server not
    saturated, so its CPU a request is not its served rate's inverse) and
    whose server spent more (or less) CPU a served request than the model
    does: the runs' mean (``cpu_ms_runs``) against the model's
    (``cpu_ms_predicted``), with the prediction outside the runs' range and
    further from their mean than both their half-range and the speed
    reference's repeatability, on the miss's side (dearer with the higher
    latency), big enough to matter (the offered load at the server's cost,
    if its bottleneck is the CPU, reaches ``NEAR`` and stays under 1, or the
    model's own load is from ``NEAR`` for a cheaper request), and not
    contradicted by the other latency quantile missing the other way."""
    cost = _cpu_apart(miss, rows)
    if cost is None:
        return None
    measured, lo, hi, predicted = cost
    ratio = measured / predicted
    dearer = ratio > 1
    rho = float(miss["rho"])
    other = _row(rows, miss["model"], miss["config"],
                 "latency_p99" if miss["metric"] == "latency_p50" else "latency_p50")  # fmt: skip
    # The quantiles missing both ways are a spread, not a load.
    both_ways = (
        other is not None
        and not other["within_noise"]
        and (other["measured"] > other["predicted"]) != dearer
    )
    big_enough = NEAR <= rho * ratio < 1 if dearer else rho >= NEAR
    if dearer != (miss["measured"] > miss["predicted"]) or both_ways or not big_enough:
        return None
    return {
        "kind": "hypothesis",
        "text": f"CPU a request: with the served rates agreeing, the server spent "
        f"{measured:.2f} ms of CPU a served request (runs {lo:.2f} to {hi:.2f}) where the "
        f"model spends {float(predicted):.2f} ({ratio - 1:+.0%}, outside the runs' spread): "
        f"if its bottleneck is the CPU, its offered load was about {rho * ratio:.2f}, not "
        f"the model's {rho:.2f}, and its queue {'longer' if dearer else 'shorter'}; test: "
        f"simulate the case with its CPU costs scaled by {ratio:.2f} and compare the "
        "latency with the measured",
    }


def _cpu_apart(
    miss: dict[str, Any], rows: list[dict[str, Any]]
) -> tuple[float, float, float, float] | None:
    """The runs' CPU a request (mean, lowest, highest) and the model's, where
    the served rates agree and the prediction lies outside the runs' range,
    further from their mean than their half-range and the speed reference's
    repeatability; else None (no record, or no difference the runs show)."""
    runs = [float(x) for x in miss.get("cpu_ms_runs") or [] if x is not None]
    runs = [x for x in runs if np.isfinite(x)]
    predicted = miss.get("cpu_ms_predicted")
    thr = _row(rows, miss["model"], miss["config"], "throughput_rps")
    if not runs or predicted is None or not predicted > 0 or thr is None:
        return None
    measured = float(np.mean(runs))
    lo, hi = min(runs), max(runs)
    gap = abs(measured - predicted)
    apart = not lo <= predicted <= hi and gap > max(REPEATABILITY * predicted, (hi - lo) / 2)
    if not (thr["within_noise"] and apart and measured > 0):
        return None
    return measured, lo, hi, float(predicted)


# The least share of the measured p50 that the threads' excess wait for a
# core must reach to be offered as a latency miss's explanation.
CORE_WAIT_SHARE = 0.1


def _core_wait(miss: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, str] | None:
    """A latency miss over the model, outside noise, at an offered load
    under ``NEAR`` (from there the rule *near saturation* speaks), with
    the served rates agreeing, whose every run's threads waited for a core
    longer than one shared queue of the machine's cores would make them
    (``run_queue_runs``, ``simlab.measured.RunQueue``), by a median excess a
    request that covers the p50's excess over the model and
    ``CORE_WAIT_SHARE`` of the measured p50: waiting the model's cores (one
    queue) do not make could be the whole shift of the median, and the
    tail's; which requests waited the counts do not say."""
    model, config = miss["model"], miss["config"]
    waits = miss.get("run_queue_runs") or []
    thr = _row(rows, model, config, "throughput_rps")
    p50 = _row(rows, model, config, "latency_p50")
    if miss["within_noise"] or not miss["measured"] > miss["predicted"]:
        return None
    if float(miss["rho"]) >= NEAR or thr is None or not thr["within_noise"] or p50 is None:
        return None
    if not waits or any(w is None or w.get("shared_queue_ms_per_request") is None for w in waits):
        return None
    measured = [float(w["wait_ms_per_request"]) for w in waits]
    excess = [
        m - float(w["shared_queue_ms_per_request"]) for m, w in zip(measured, waits, strict=True)
    ]
    shift = float(p50["measured"]) - float(p50["predicted"])
    median = float(np.median(excess))
    if min(excess) <= 0 or not shift > 0 or median < max(shift, CORE_WAIT_SHARE * p50["measured"]):
        return None
    busy = [float(w["machine_busy_cores"]) for w in waits]
    waited = float(np.median(measured))
    return {
        "kind": "hypothesis",
        "text": f"waiting for a core: the server's threads waited {_ms(waited)} a request "
        f"on the kernel's run queues (runs {_ms(min(measured))} to "
        f"{_ms(max(measured))}), {_ms(median)} more than one queue of the machine's cores "
        f"would make them wait at its measured load ({min(busy):.2f} to {max(busy):.2f} "
        f"busy cores; Erlang C), the kind of queue the model's cores are: as much as the "
        f"p50's excess over the model ({_ms(shift)}) and {median / p50['measured']:.0%} "
        "of the measured p50; Linux keeps a queue a core and places a woken thread on "
        f"one; test: {_measure(model, config)} with the server on one core and the lab's "
        "other processes on the other (taskset), and compare the threads' wait with one "
        "core's queue",
    }


def _backlog(miss: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, str] | None:
    """A latency miss under the measured, outside noise, at an offered load
    under ``SATURATED``, whose case's every run served more than the model
    on the same arrivals (``measured_runs`` against ``predicted_runs`` of
    the served rate, apart outside noise): a backlog carried from the
    warm-up into the window."""
    model, config = miss["model"], miss["config"]
    if miss["within_noise"] or not miss["measured"] > miss["predicted"]:
        return None
    thr = _row(rows, model, config, "throughput_rps")
    if thr is None or thr["within_noise"] or float(miss["rho"]) >= SATURATED:
        return None
    served = [float(x) for x in thr.get("measured_runs") or []]
    model_served = [float(x) for x in thr.get("predicted_runs") or []]
    if len(served) < 2 or len(served) != len(model_served):
        return None
    if not all(s > m for s, m in zip(served, model_served, strict=True)):
        return None
    runs = ", ".join(_rate(x) for x in served)
    modelled = ", ".join(_rate(x) for x in model_served)
    return {
        "kind": "hypothesis",
        "text": f"backlog from the warm-up: at an offered load of {float(miss['rho']):.2f}, "
        f"where the model keeps up with the arrivals, every run served more than the model "
        f"did on its own arrivals ({runs} against {modelled}): the server finished in the "
        "window requests that had arrived in the warm-up, so it began the window behind "
        "and queued the window's requests after them, where the model begins it level; "
        f"test: {_measure(model, config)} with the warm-up tripled, and compare its served "
        "rate with its arrivals' and its latency with the model's",
    }


# The fewest runs from which the switch-cost rule reads a line.
SWITCH_RUNS = 5


def _switch_cost(
    miss: dict[str, Any], assumptions: dict[str, dict[str, Any]] | None
) -> dict[str, str] | None:
    """A served-rate miss at saturation, the model serving more, whose runs
    spent more CPU a second the more scheduler slices their threads took a
    second (slope over zero at 95%, ``SWITCH_RUNS`` runs or more), the runs
    with more slices a request serving less (a negative correlation)."""
    served = [float(x) for x in miss.get("measured_runs") or []]
    cpu = miss.get("cpu_ms_runs") or []
    waits = miss.get("run_queue_runs") or []
    if not miss["predicted"] > miss["measured"] or not len(served) == len(cpu) == len(waits):
        return None
    runs = [
        (t, float(c), float(w["slices_per_request"]))
        for t, c, w in zip(served, cpu, waits, strict=True)
        if t > 0 and c is not None and w and w.get("slices_per_request") is not None
    ]
    if len(runs) < SWITCH_RUNS:
        return None
    rate, cpu_ms, per_request = (np.array(x) for x in zip(*runs, strict=True))
    if np.ptp(per_request) == 0:
        return None
    from scipy import stats  # noqa: PLC0415 - scipy only where it is used

    cores = cpu_ms * rate / 1000.0
    slices = per_request * rate
    fit = stats.linregress(slices, cores)
    t = float(stats.t.ppf(0.975, len(runs) - 2))
    lo, hi = fit.slope - t * fit.stderr, fit.slope + t * fit.stderr
    served_less = float(np.corrcoef(per_request, rate)[0, 1]) < 0
    if not lo > 0 or not served_less:
        return None
    preset = (assumptions or {}).get("context_switch_us")
    model_cost = (
        f"an assumption, {float(preset['value']):g} µs"
        if preset is not None and preset.get("value") is not None
        else "fitted"
    )
    model, config = miss["model"], miss["config"]
    return {
        "kind": "hypothesis",
        "text": f"switches: over its {len(runs)} runs the server spent {fit.slope * 1e6:.1f} "
        f"µs of CPU a scheduler slice (its busy cores against its threads' slices a second, "
        f"least squares: 95% {lo * 1e6:.1f} to {hi * 1e6:.1f} µs), and the runs that took "
        f"more slices a request served less ({per_request.min():.0f} to "
        f"{per_request.max():.0f} slices a request; served {_rate(rate.min())} to "
        f"{_rate(rate.max())}, the model {_rate(float(miss['predicted']))}): a thread's "
        "turn on a core ends in a switch, and among threads that share the GIL each "
        "hand-off is one, the GIL's time it takes capacity lost; the model's cost a switch "
        f"(context_switch_us) is {model_cost}; test: fit context_switch_us to the "
        "calibration runs' CPU a second against their threads' switches a second (kept "
        "with each run in the profile), then simulate "
        f"{model} with {config} and compare its served rate with the measured",
    }


def _ms(x: float) -> str:
    return f"{x:.1f} ms"


def _spread(miss: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, str] | None:
    """A latency miss whose case's other quantile misses the other way, both
    outside noise: the model's latencies are spread wider (or narrower) than
    the server's, whatever its capacity."""
    model, config = miss["model"], miss["config"]
    p50 = _row(rows, model, config, "latency_p50")
    p99 = _row(rows, model, config, "latency_p99")
    if p50 is None or p99 is None or p50["within_noise"] or p99["within_noise"]:
        return None
    if min(p50["measured"], p50["predicted"]) <= 0:
        return None
    low50 = p50["predicted"] < p50["measured"]
    low99 = p99["predicted"] < p99["measured"]
    if low50 == low99:
        return None
    model_ratio = p99["predicted"] / p50["predicted"]
    real_ratio = p99["measured"] / p50["measured"]
    wider = model_ratio > real_ratio
    guess = (
        "the kernel shares the cores among the runnable threads more evenly than the model "
        "queues them"
        if wider
        else "the server serves some requests far later than the model"
    )
    return {
        "kind": "hypothesis",
        "text": f"spread: the model's p50 is {'under' if low50 else 'over'} and its p99 "
        f"{'under' if low99 else 'over'} the measured ones, both outside noise: its p99 is "
        f"{model_ratio:,.1f} times its p50 where the server's is {real_ratio:,.1f}, so the "
        f"model spreads the waits {'wider' if wider else 'narrower'} than the server "
        f"({guess}); test: {_measure(model, config)} with every request's latency kept, "
        "and compare the measured deciles with the model's",
    }


def _memory(miss: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, str] | None:
    """A memory miss against the same model's single-process cases, or its short connections."""
    model, config, metric = miss["model"], miss["config"], miss["metric"]
    low = miss["predicted"] < miss["measured"]
    processes = _knob(config, "P") or 1
    if processes > 1:
        single = [
            r["rel_error"]
            for r in rows
            if r["model"] == model
            and r["metric"] == metric
            and r["evidence"]
            and r["rel_error"] is not None
            and (_knob(r["config"], "P") or 1) == 1
        ]
        if single and float(np.median(single)) <= miss["goal"]:
            # What a copy holds of its own, read per process under the case's load.
            own = (
                "each copy's private memory (/proc/PID/smaps_rollup Private_Dirty) with the "
                "one process's, against the model's fork_kib + fork_touched_kib + copy_kib "
                "(+ copy_call_kib with calls) a copy"
                if metric == "memory_user"
                else "the server's kernel memory (its memory cgroup's memory.stat: "
                "kernel_stack, pagetables, slab) at the two, per copy, against the model's "
                "fork_kernel"
            )
            return {
                "kind": "hypothesis",
                "text": f"pre-forked copies: {model}'s single-process cases meet the goal "
                f"(median {_pct(float(np.median(single)))} over {len(single)}), this one with "
                f"P={processes} does not: a copy holds {'more' if low else 'less'} than the "
                f"model's fork; test: {_measure(model, config)} and again at P=1, and "
                f"compare {own}",
            }
    k = _knob(config, "k")
    if metric == "memory_kernel" and k is not None:
        # Measured, so not a hypothesis: a closed connection leaves nothing in
        # the server's memory cgroup, whichever side closed first (its TIME_WAIT
        # socket is charged to no cgroup; ``simlab.real.forklaw.measure_short``).
        held = (
            "what the server holds beyond the model is left by the threads or children that "
            "served them (an exited thread's stack kept mapped by glibc's cache, with its page "
            "tables; a child not yet reaped), not by their sockets: a closed connection, in "
            "TIME_WAIT or not, leaves nothing in the server's memory cgroup (measured)"
            if low
            else "the model holds a connection's kernel memory for longer than the server does"
        )
        return {
            "kind": "hypothesis",
            "text": f"short connections (k={k}): {held} ({'under' if low else 'over'} by "
            f"{_pct(miss['rel_error'])}); test: {_measure(model, config)} with the server's "
            "memory cgroup's memory.stat (pagetables, kernel_stack, slab) sampled beside the probe",
        }
    return None


# The per-connection rule (``_per_connection``): the fewest other cases it
# fits (with one degree of freedom, t is 12.7: three cases fire only when
# nearly on a line), the least spread of their connections (largest over
# smallest), and the least share of the miss's own gap its slope must give.
PER_CONNECTION_CASES = 3
PER_CONNECTION_SPAN = 3.0
PER_CONNECTION_SHARE = 0.25


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """The least-squares line of y on x (``scipy.stats.linregress``, as
    ``_switch_cost`` fits its slope): slope, intercept, and the half-widths
    of their 95% t-intervals (n - 2 degrees of freedom)."""
    from scipy import stats  # noqa: PLC0415 - scipy only where it is used

    fit = stats.linregress(x, y)
    t = t975(len(x) - 2)
    return (
        float(fit.slope),
        float(fit.intercept),
        t * float(fit.stderr),
        t * float(fit.intercept_stderr),
    )


def _single_persistent(config: str) -> bool:
    """A case of one process whose connections each carry every request (no ``k=``)."""
    return (_knob(config, "P") or 1) == 1 and _knob(config, "k") is None


def _per_connection(miss: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, str] | None:
    """A memory miss whose gap grows with the connections over the model's
    other single-process cases of persistent connections (see the module's
    list). The miss's own case is left out of the fit: a case at the far end
    of the connections would otherwise make the trend that explains it."""
    model, config, metric = miss["model"], miss["config"], miss["metric"]
    n_miss = _knob(config, "N")
    gap = float(miss["measured"]) - float(miss["predicted"])
    if n_miss is None or not _single_persistent(config) or not math.isfinite(gap) or gap == 0:
        return None
    cases = [
        (float(n), float(r["measured"]), float(r["predicted"]))
        for r in rows
        if r["model"] == model
        and r["metric"] == metric
        and r["config"] != config
        and r["evidence"]
        and r.get("measured") is not None
        and r.get("predicted") is not None
        and math.isfinite(float(r["measured"]) - float(r["predicted"]))
        and _single_persistent(r["config"])
        and (n := _knob(r["config"], "N")) is not None
    ]
    conns = np.array([c[0] for c in cases])
    # Three distinct counts at least: a line through two leaves no scatter to judge it by.
    if (
        len(cases) < PER_CONNECTION_CASES
        or len(set(conns.tolist())) < 3
        or conns.max() < PER_CONNECTION_SPAN * conns.min()
    ):
        return None
    measured = np.array([c[1] for c in cases])
    predicted = np.array([c[2] for c in cases])
    slope, intercept, half, half_icpt = _line(conns, measured - predicted)
    up = gap > 0  # the server holds more than the model
    if (up and slope - half <= 0) or (not up and slope + half >= 0):
        return None
    part = slope * n_miss
    if part / gap < PER_CONNECTION_SHARE:
        return None
    model_slope = _line(conns, predicted)[0]
    kib = 1024.0
    low_i, high_i = intercept - half_icpt, intercept + half_icpt
    base = (
        "these cases cannot tell a base from none"
        if low_i <= 0 <= high_i
        else f"a base the model {'lacks' if intercept > 0 else 'holds in excess'}"
    )
    return {
        "kind": "hypothesis",
        "text": f"per connection: over the {len(cases)} other single-process {model} cases of "
        f"persistent connections (N={conns.min():,.0f} to {conns.max():,.0f}), the gap between "
        f"the server's {metric} and the model's grows by {slope * kib:,.1f} KiB a connection "
        f"(least squares, 95% {(slope - half) * kib:,.1f} to {(slope + half) * kib:,.1f} KiB), "
        f"where the model's own rises by {model_slope * kib:,.1f} KiB a connection: consistent "
        f"with a connection (with what serves it) holding {'more' if up else 'less'} in the "
        f"server than the model's cost (the cases differ in more than N: rate, CPU, calls); "
        f"at this case's N={n_miss:,} that slope gives {_mib(part)} of its {_mib(gap)} gap; "
        f"the rest, {_mib(gap - part)}, is the other cases' intercept, {_mib(intercept)} "
        f"(95% {_mib(low_i)} to {_mib(high_i)}: {base}), and this case's own scatter; "
        f"test: simlab measure {model} --connections {n_miss} --rate 1, and again with "
        f"--connections {2 * n_miss}: the memory per connection between the two against the "
        "model's",
    }


def _mib(x: float) -> str:
    return f"{x:,.1f} MiB"


def assumptions_of(profile: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A profile's parameters that the data did not identify (its assumptions):
    name -> {value, estimate, assumption}."""
    out = {}
    for name, p in (profile.get("parameters") or {}).items():
        if isinstance(p, dict) and p.get("identified") is False:
            out[name] = {k: p.get(k) for k in ("value", "estimate", "assumption")}
    return out


def _by_speed(row: dict[str, Any]) -> list[tuple[float, float]]:
    """(the slower end of the run's speed reference, the run's value) for each
    run that has both; the slower end, as the speed gate reads a run
    (``simlab.gate``): the machine at its slowest seen in the run."""
    pairs = []
    for value, ref in zip(
        row.get("measured_runs") or [], row.get("speed_reference_runs") or [], strict=False
    ):
        if value is None or not ref or ref.get("before_ops_s") is None:
            continue
        pairs.append((float(min(ref["before_ops_s"], ref["after_ops_s"])), float(value)))
    return pairs


def _speed_order(miss: dict[str, Any]) -> str | None:
    """How the machine's speed orders the case's runs, when it does: the run on
    the fastest machine measured nearest the prediction and the runs on a
    machine slower by more than ``REPEATABILITY`` lie further away, on the
    miss's side (the server measured more, or less, than the model);
    None otherwise."""
    pairs = _by_speed(miss)
    p = miss.get("predicted")
    if len(pairs) < 2 or p is None or miss.get("measured") is None:
        return None
    p = float(p)
    side = 1.0 if float(miss["measured"]) > p else -1.0
    fast = max(pairs)
    others = [sv for sv in pairs if sv is not fast]
    if any(abs(v - p) <= abs(fast[1] - p) or (v - p) * side <= 0 for _, v in others):
        return None
    if min(s for s, _ in others) > fast[0] * (1 - REPEATABILITY):
        return None  # the speeds are not told apart
    rest = ", ".join(f"{_n(v)} at {s:,.0f}" for s, v in sorted(others, reverse=True))
    return (
        f"the run on the fastest machine (its speed reference {fast[0]:,.0f} ops/s at its "
        f"slower end) measured {_n(fast[1])}, nearest the prediction {_n(p)}, and the runs on "
        f"slower machines {rest} ops/s"
    )


def _children(
    miss: dict[str, Any], assumptions: dict[str, dict[str, Any]] | None
) -> dict[str, str] | None:
    """A threads miss over the prediction in a case of short connections, each
    a child of its own, whose lingering after its connection is an assumption
    under the data's own estimate."""
    if miss["metric"] != "threads_peak" or miss["predicted"] is None:
        return None
    if not float(miss["measured"]) > float(miss["predicted"]):
        return None
    k = _knob(miss["config"], "k")
    lingers = (assumptions or {}).get("fork_exit_us")
    if k is None or lingers is None or not _own_process(miss):
        return None
    value, estimate = lingers.get("value"), lingers.get("estimate")
    if value is None or estimate is None or not float(estimate) > float(value):
        return None
    runs = ", ".join(_n(float(v)) for v in miss.get("measured_runs") or [] if v is not None)
    text = (
        f"children outlive their connection: the server held {_n(float(miss['measured']))} "
        f"at peak (runs {runs}) against {_n(float(miss['predicted']))} predicted, with k={k} "
        f"requests a connection, each its own child; the profile's fork_exit_us (how long a "
        f"child lives after its connection) is an assumption, {float(value):,.0f} us, under "
        f"its not identified estimate {float(estimate):,.0f} us, so the model's children "
        "end sooner than the data say"
    )
    order = _speed_order(miss)
    text += (
        f"; {order}: a child takes longer to go on a slower machine"
        if order
        else "; the machine's speed does not order the runs' counts"
    )
    text += (
        f"; test: {_measure(miss['model'], miss['config'])} with the probe's child count "
        "sampled as each connection closes, and fork_exit_us fitted from it"
    )
    return {"kind": "hypothesis", "text": text}


def _owner_peaks(miss: dict[str, Any]) -> tuple[list[float], list[float]] | None:
    """The measured and predicted runs' peaks of a threads-peak miss beyond
    noise and saturated, of persistent connections each with a thread (or
    child) of its own, where both sides have runs; None otherwise."""
    if miss["metric"] != "threads_peak" or miss.get("within_noise") is not False:
        return None
    if float(miss["rho"]) < SATURATED or _knob(miss["config"], "k") is not None:
        return None
    if not _thread_each(miss):
        return None
    measured = _run_values(miss, "measured_runs")
    predicted = _run_values(miss, "predicted_runs")
    return (measured, predicted) if measured and predicted else None


def _unaccepted(miss: dict[str, Any]) -> dict[str, str] | None:
    """A threads-peak miss under the prediction, beyond noise and saturated,
    of persistent connections each with a thread (or child) of its own, no
    run over any predicted run: connections the server had not accepted
    (its threads count those it had)."""
    peaks = _owner_peaks(miss)
    if peaks is None or not max(peaks[0]) <= min(peaks[1]):
        return None
    measured, predicted = peaks
    n = _knob(miss["config"], "N") or round(min(predicted))
    short = [min(predicted) - v for v in measured if v < min(predicted)]
    if not short:
        return None
    still = sum(
        any("still making its threads" in why for why in reasons or [])
        for reasons in miss.get("unsteady_runs") or []
    )
    runs = ", ".join(_n(v) for v in measured)
    return {
        "kind": "cause",
        "text": f"connections not yet accepted: a thread (or child) a connection for its "
        f"life, so the server's threads count the connections it had accepted; they peaked "
        f"at {runs} of {n:,} connections where the model holds {_n(min(predicted))}: in "
        f"{len(short)} of {len(measured)} runs {_n(min(short))} to {_n(max(short))} fewer "
        f"connections than the model's had a thread at any moment of the run, and {still} "
        f"of {len(measured)} runs' windows opened while the server was still making them; "
        f"*hypothesis*: past saturation its acceptor, one more thread waiting for the GIL "
        f"and the cores, falls further behind the connections than the model's; test: "
        f"{_measure(miss['model'], miss['config'])} with the listen queue's length (ss -lnt, "
        "Recv-Q) and the threads' count sampled through the run",
    }


def _accepted_sooner(miss: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, str] | None:
    """A threads-peak miss over the prediction, beyond noise and saturated, of
    persistent connections each with a thread (or child) of its own, every
    run over every predicted run and under the connections: both acceptors
    behind the connections, the server's less; or every run at the
    connections: the server's acceptors kept up, the model's did not. Where the same case's served
    rate was measured in the same runs, whether the runs that made more
    threads served less (their order) is said, as the data show it."""
    peaks = _owner_peaks(miss)
    n = _knob(miss["config"], "N")
    if peaks is None or n is None:
        return None
    measured, predicted = peaks
    # Every run's acceptors kept up with the connections (a thread for each),
    # or none did: a case of some of each is no such reading.
    every = min(measured) >= n
    if not min(measured) > max(predicted) or not (every or max(measured) < n):
        return None
    runs = ", ".join(_n(v) for v in measured)
    model = ", ".join(_n(v) for v in predicted)
    text = (
        "connections accepted sooner than the model's: a thread (or child) a connection "
        "for its life, so the threads count the connections accepted; the server's peaked "
        + (
            f"at {runs}, a thread for each of its {n:,} connections in every run, where "
            f"the model's peaked at {model}: the server's acceptors kept up with the "
            f"connections, the model's fell behind"
            if every
            else f"at {runs} of {n:,} connections, every run over the model's {model}: both "
            f"acceptors behind the connections, the model's further"
        )
    )
    served = _row(rows, miss["model"], miss["config"], "throughput_rps")
    rates = _run_values(served, "measured_runs") if served is not None else []
    if len(rates) == len(measured) >= 3:
        by_threads = [r for _, r in sorted(zip(measured, rates, strict=True))]
        pairs = "; ".join(
            f"{_n(t)} threads: {_rate(r)}" for t, r in sorted(zip(measured, rates, strict=True))
        )
        if all(a > b for a, b in pairwise(by_threads)):
            text += f"; the runs that made more threads served less ({pairs})"
        elif all(a < b for a, b in pairwise(by_threads)):
            text += f"; the runs that made more threads served more ({pairs})"
        else:
            text += f"; the runs' served rates do not follow their threads ({pairs})"
    text += (
        "; so the server's acceptor may take its turns (the GIL, the cores) from its handlers "
        "more often than the model's, which waits for them behind the handlers; test: "
        f"{_measure(miss['model'], miss['config'])} with the threads' count and the served "
        "rate sampled each second through the run, against the model's"
    )
    return {"kind": "hypothesis", "text": text}


def _held_longer(miss: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, str] | None:
    """A threads-peak miss over the prediction, beyond noise, in a case of
    short connections each with a thread (or child) of its own, whose
    requests took longer on the server than in the model at both quantiles
    (each outside noise): an owner lives for its connection's request, so
    longer requests hold more at once. The same case's memory, over the
    model's beyond noise, is said where it is, as more owners at once would
    make it."""
    if miss["metric"] != "threads_peak" or miss.get("within_noise") is not False:
        return None
    if miss.get("predicted") is None or miss.get("measured") is None:
        return None
    if not float(miss["measured"]) > float(miss["predicted"]):
        return None
    k = _knob(miss["config"], "k")
    if k is None or not _thread_each(miss):
        return None
    model, config = miss["model"], miss["config"]
    lat = [_row(rows, model, config, m) for m in LATENCY]
    if any(r is None or r["within_noise"] or not r["measured"] > r["predicted"] for r in lat):
        return None
    said = ", ".join(
        f"{m.split('_')[1]} {_n(float(r['measured']))} against {_n(float(r['predicted']))} ms"
        for m, r in zip(LATENCY, lat, strict=True)
        if r is not None
    )
    owner, owners = ("child", "children") if _own_process(miss) else ("thread", "threads")
    runs = ", ".join(_n(v) for v in _run_values(miss, "measured_runs"))
    text = (
        f"owners held longer: with k={k} requests a connection each has a {owner} of its own, "
        f"made as it opens and gone after its last answer, so the count at peak follows how "
        f"long each lives; the server held {runs} at peak against "
        f"{_n(float(miss['predicted']))} predicted, and its requests took longer than the "
        f"model's ({said}, both outside noise)"
    )
    over = [
        f"{m.split('_')[1]} {float(r['rel_error']):.0%}"
        for m in ("memory_user", "memory_kernel")
        if (r := _row(rows, model, config, m)) is not None
        and not r["within_noise"]
        and r["measured"] > r["predicted"]
    ]
    if over:
        text += f"; its memory is over the model's too ({', '.join(over)}), as more {owners} "
        text += "at once would make it"
    text += (
        f"; so each {owner} lives longer than the model's, from its start to its exit; "
        f"test: {_measure(model, config)} with each {owner}'s life (made to gone) "
        "recorded, against the model's (its latency, the start and fork_exit_us or "
        "thread_exit_us)"
    )
    return {"kind": "hypothesis", "text": text}


def _thread_each(miss: dict[str, Any]) -> bool:
    """Whether the case's model gives every connection a thread or a child of
    its own, for the connection's life (not a pool's)."""
    m = _model_of(miss)
    return m is not None and bool(m.holds_connection and not m.pooled)


def _whole_threads(miss: dict[str, Any]) -> dict[str, str] | None:
    """A threads-peak miss whose predicted and measured runs overlap, at a
    count where one thread is over twice the goal."""
    if miss["metric"] != "threads_peak" or miss.get("goal") is None:
        return None
    if miss.get("predicted") is None or miss.get("measured") is None:
        return None
    measured = _run_values(miss, "measured_runs")
    predicted = _run_values(miss, "predicted_runs")
    if not measured or not predicted:
        return None
    overlap = min(measured) <= max(predicted) and min(predicted) <= max(measured)
    # The means one thread apart at most: the miss is within the count's step.
    apart = abs(float(miss["measured"]) - float(miss["predicted"]))
    step = 1 / max(float(miss["measured"]), float(miss["predicted"]))
    if not overlap or apart > 1 or step <= 2 * float(miss["goal"]):
        return None
    shown = ", ".join(_n(v) for v in predicted), ", ".join(_n(v) for v in measured)
    # Runs that meet may still all lie one way: said, as what more runs would settle.
    way = (
        ("over", "soon")
        if min(measured) >= max(predicted)
        else ("under", "late")
        if max(measured) <= min(predicted)
        else None
    )
    side = (
        f"; every server run is at or {way[0]} every model run, so more runs would also "
        f"tell whether the model's threads end too {way[1]}"
        if way
        else ""
    )
    return {
        "kind": "hypothesis",
        "text": f"a count finer than its goal: the model's peaks on the runs' own arrivals "
        f"({shown[0]}) meet the server's ({shown[1]}); at this count one thread is "
        f"{step:.0%}, over twice the goal of {float(miss['goal']):.0%}, and a peak this "
        f"small moves by whole threads from run to run{side}; test: "
        f"{_measure(miss['model'], miss['config'])} with 10 or more runs a side, or at a "
        "rate that holds over twice as many threads at peak",
    }


def _own_process(miss: dict[str, Any]) -> bool:
    """Whether the case's model gives every connection a process of its own."""
    m = _model_of(miss)
    return m is not None and bool(m.own_process)


def _model_of(miss: dict[str, Any]) -> type[Model] | None:
    """The model class the case's target resembles; None for an unknown one."""
    from simlab.models import get_model  # noqa: PLC0415 - the model owns its knowledge

    try:
        return get_model(miss.get("resembles") or miss["model"])
    except (KeyError, ValueError):
        return None


def _run_values(miss: dict[str, Any], key: str) -> list[float]:
    """A row's per-run values under ``key`` (``measured_runs``, ``predicted_runs``),
    the runs that recorded none left out."""
    return [float(v) for v in miss.get(key) or [] if v is not None]


def _slow_machine(miss: dict[str, Any]) -> dict[str, str] | None:
    """A miss of a metric the machine's speed moves (``SPEED_BOUND``) whose
    case's runs the machine's speed orders (``_speed_order``)."""
    if miss["metric"] not in SPEED_BOUND:
        return None
    order = _speed_order(miss)
    if order is None:
        return None
    return {
        "kind": "hypothesis",
        "text": f"slow machine: {order}: the error grows as the machine's speed falls; test: "
        f"{_measure(miss['model'], miss['config'])} with every run at the calibration's speed "
        "(simlab validate's speed gate, simlab.gate)",
    }


def _ci(x: list[float]) -> str:
    return f"[{_n(x[0])}, {_n(x[1])}]"


def _n(x: float) -> str:
    return f"{x:,.3g}" if abs(x) < 100 else f"{x:,.0f}"


def _drift(miss: dict[str, Any], sessions: dict[str, Any] | None) -> dict[str, str] | None:
    """A miss whose case moved between sessions beyond their noise, the
    prediction between them (``sessions``: the case's ``simlab.sessions.between`` entry)."""
    if miss["metric"] not in SPEED_BOUND or miss.get("predicted") is None:
        return None
    if sessions is None or sessions["apart"] is None:
        return None
    lo, hi = sessions["apart"]["low"], sessions["apart"]["high"]
    p = float(miss["predicted"])
    if not lo["mean"] <= p <= hi["mean"]:
        return None
    metric = miss["metric"]
    text = (
        f"session drift: the measured {metric} moved between sessions by more than the noise "
        f"within them, {_n(lo['mean'])} in session {lo['session']} ({lo['runs']} runs, "
        f"95% interval {_ci(lo['ci95'])}) against {_n(hi['mean'])} in {hi['session']} "
        f"({hi['runs']} runs, {_ci(hi['ci95'])}); the prediction {_n(p)} lies between, and "
        f"this session measured {_n(float(miss['measured']))}; test: the machine's speed "
        "reference (simlab.real.speed) in those two sessions"
    )
    a, b = lo["speed_ops_s"], hi["speed_ops_s"]
    if a is None or b is None:
        missing = " and ".join(s["session"] for s in (lo, hi) if s["speed_ops_s"] is None)
        text += f", not recorded in {missing} (validations record it from now on)"
        return {"kind": "hypothesis", "text": text}
    ratio = b / a
    text += f": {_n(b)} against {_n(a)} ops/s, a ratio of {ratio:.3f}"
    if abs(ratio - 1) <= REPEATABILITY:
        text += (
            f", within the reference's own repeatability ({REPEATABILITY:.0%}): the machine's "
            "speed does not explain the move"
        )
    else:
        # A slower machine serves less and answers later.
        slower_in_high = ratio < 1
        expected = slower_in_high if metric in LATENCY else not slower_in_high
        text += (
            f", the machine {'slower' if slower_in_high else 'faster'} in the session that "
            f"measured more: {'as' if expected else 'against what'} a speed change would do"
        )
    return {"kind": "hypothesis", "text": text}


def explain(
    miss: dict[str, Any],
    rows: list[dict[str, Any]],
    sessions: dict[str, Any] | None = None,
    assumptions: dict[str, dict[str, Any]] | None = None,
) -> dict[str, str]:
    """``{"kind": "cause" | "hypothesis" | "unexplained", "text": ...}`` for one
    row of ``rows`` (a validation's rows, as ``validation.json`` holds them);
    ``sessions``: its case's spread between sessions (``simlab.sessions.between``),
    when the validation has a history; ``assumptions``: the profile's
    parameters not identified (``assumptions_of``)."""
    metric = miss["metric"]
    why: dict[str, str] | None = None
    if metric in LATENCY:
        why = _latency(miss, rows)
        if why is None or why["kind"] != "cause":
            # Measured support for the load: before a guess from the rates alone.
            why = _cpu_cost(miss, rows) or why
        if why is None:
            why = _core_wait(miss, rows)
        if why is None:
            why = _backlog(miss, rows)
    elif metric == "throughput_rps" and float(miss["rho"]) >= SATURATED:
        switches = _switch_cost(miss, assumptions)
        if switches is not None:
            # Measured in this session's runs: before the sessions' drift.
            return switches
        low = miss["predicted"] < miss["measured"]
        why = {
            "kind": "hypothesis",
            "text": f"capacity: the server served {_rate(miss['measured'])} where the model "
            f"serves {_rate(miss['predicted'])}; its cost per request at this load is "
            f"{'below' if low else 'above'} the calibrated one; test: "
            f"{_measure(miss['model'], miss['config'])} and compare its CPU per request "
            "(cpu_busy_cores / served) with the model's",
        }
    elif metric.startswith("memory"):
        why = _memory(miss, rows) or _per_connection(miss, rows)
    elif metric == "threads_peak":
        why = (
            _unaccepted(miss)
            or _accepted_sooner(miss, rows)
            or _children(miss, assumptions)
            or _held_longer(miss, rows)
            or _whole_threads(miss)
        )
    if why is None or why["kind"] != "cause":
        # A cause in this session's rows stands; otherwise the sessions may say more.
        why = _drift(miss, sessions) or why
    if why is None:
        # Last: a hypothesis from this session's own runs and their speeds.
        why = _slow_machine(miss)
    return why or {"kind": "unexplained", "text": "no rule of the report covers it"}


def explain_all(
    big: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    sessions: list[dict[str, Any]] | None = None,
    assumptions: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Each big miss with its explanation (``why``), looked up in ``rows``, and
    in ``sessions`` (``simlab.sessions.between``'s cases) when given, with the
    profile's ``assumptions`` (``assumptions_of``)."""
    spread = {(s["model"], s["config"], s["metric"]): s for s in sessions or []}
    out = []
    for b in big:
        row = _row(rows, b["model"], b["config"], b["metric"])
        drift = spread.get((b["model"], b["config"], b["metric"]))
        why = explain(row if row is not None else b, rows, drift, assumptions)
        out.append({**b, "why": why})
    return out
