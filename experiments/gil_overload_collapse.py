"""Past its capacity, does thread-per-connection collapse, and is it the GIL's switch interval?

Open Poisson arrivals at more than one core's worth of the requests' CPU, on
25 to 300 persistent connections, each with its thread: past capacity every
connection has a request to send (the load generator keeps one in flight a
connection and queues the rest on the client), so every thread the server has
started has work. A thread waiting for the GIL asks for it again every switch
interval (CPython's timed wait in ``take_gil``). The same levels are run at
Python's 5 ms switch interval and at ten times it, in an order shuffled by
the seed (so that a drift of the machine's speed does not line up with the
levels): whether the served rate falls with the threads, and whether the
longer interval takes the fall away, are computed from the runs.

Beside the measurements, the calibrated model at both intervals, and the model
again with the GIL waiters' wake-up cost (``Platform.gil_poll_us``, each
wake-up's time taken from the GIL's holder) at every value of a grid: the one
whose 5-against-50 ms contrast is nearest the measured is reported, a what-if
(the profile's own value comes from the calibration's runs).

Run: ``python experiments/gil_overload_collapse.py [--quick]``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import simlab
from simlab import Architecture, Fixed, Platform, Workload
from simlab.experiment import Experiment, arguments, rewrite_findings
from simlab.findings import SHARE_LEFT, compare, hypothesis, ranges_apart, share_left
from simlab.paths import profiles_dir
from simlab.real.measure import MeasureOptions, measure
from simlab.real.speed import WORK as SPEED_WORK

NAME = "gil_overload_collapse"
SEED = 1
CPU_MS, IO_MS, CALLS = 2.0, 5.0, 1
# Offered: 1.2 times one core's worth of the requests' own CPU (1000 / 2 ms).
RATE = 600.0
LEVELS = (25, 50, 100, 200, 300)
QUICK_LEVELS = (25, 200)
SWITCH_MS = (5.0, 50.0)  # Python's default, and ten times it
REPEATS, QUICK_REPEATS = 3, 1
SECONDS, QUICK_SECONDS = 4.0, 1.5
WARMUP, QUICK_WARMUP = 1.5, 1.0
# The what-if's values of gil_poll_us (us of the holder's time a waiter's wake-up).
POLL_GRID = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 25.0)
QUICK_POLL_GRID = (0.0, 8.0, 16.0)
ARCH = Architecture()
# The findings' rules (every direction or comparison in findings.md is one of these):
FALL = 0.10  # a change from the fewest threads to the most beyond 10% is a fall (or rise)
STEADY = 0.05  # a CPU a request, or a served rate, that moves less than 5% stays put
AGREE = 0.10  # a simulated change within 10 points of the measured one reproduces it
SPEED_SAME = 0.05  # two machine speeds within 5% are called the same
ALL_THREADS = 0.95  # a level whose server held 95% of its connections' threads held them all
DRAWS = 400  # bootstrap draws over the repeats, for the what-if's interval

Change = Literal["fall", "rise", "flat"]


def _findings_from(df: pd.DataFrame, params: dict[str, Any]) -> str:
    """The findings of a saved run, with the parameters it recorded in meta.json."""
    return findings(
        df,
        profile_poll_us=float(params["profile_gil_poll_us"]),
        profile_poll_identified=bool(params["profile_gil_poll_identified"]),
        # None in meta.json where the profile recorded no speed (nan on the way in).
        profile_speed_ops_s=float(params.get("profile_speed_ops_s") or math.nan),
    )


def _profile_poll(platform: Platform) -> tuple[float, bool, float]:
    """The calibrated profile's gil_poll_us (``platform``, loaded from it),
    whether its runs identified it, and the machine's speed over its runs
    (``simlab.real.speed``, the same work as this run's reference; nan without one)."""
    path = profiles_dir() / "cpython.json"
    identified, speed = False, math.nan
    if path.exists():
        profile = json.loads(path.read_text())
        entry = profile.get("parameters", {}).get("gil_poll_us", {})
        identified = bool(entry.get("identified", False))
        ref = profile.get("speed_reference") or {}
        if ref.get("work") == SPEED_WORK:
            speed = float(ref.get("median_ops_s", math.nan))
    return float(platform.gil_poll_us), identified, speed


def _workload(n: int) -> Workload:
    return Workload(
        connections=n, rate=RATE, cpu=Fixed(CPU_MS / 1e3), io=Fixed(IO_MS / 1e3), calls=CALLS
    )


def _row(summary: Any) -> dict[str, float]:
    served = float(summary.throughput_rps)
    cpu = summary.cpu_busy_cores
    speed = getattr(summary, "speed_reference", None)
    return {
        "throughput_rps": served,
        "cpu_ms_per_request": float(cpu) * 1e3 / served if cpu is not None and served else math.nan,
        "threads_mean": float(summary.threads.mean),
        "p50_ms": float(summary.latency_ms.p50),
        # The machine's speed around a real run (simlab.real.speed), none simulated;
        # only a reference of the profile's work compares with the profile's.
        "speed_ops_s": float(speed.ops_s)
        if speed is not None and speed.work == SPEED_WORK
        else math.nan,
    }


def main() -> None:
    args = arguments(__doc__ or "")
    if args.findings_only:
        rewrite_findings(NAME, _findings_from, args.out)
        return
    levels = QUICK_LEVELS if args.quick else LEVELS
    repeats = QUICK_REPEATS if args.quick else REPEATS
    seconds = QUICK_SECONDS if args.quick else SECONDS
    warmup = QUICK_WARMUP if args.quick else WARMUP
    polls = QUICK_POLL_GRID if args.quick else POLL_GRID
    platform = simlab.load_platform("cpython")
    poll, identified, speed = _profile_poll(platform)
    params = {
        "cpu_ms": CPU_MS,
        "io_ms": IO_MS,
        "calls": CALLS,
        "rate": RATE,
        "seconds": seconds,
        "warmup": warmup,
        "profile_gil_poll_us": poll,
        "profile_gil_poll_identified": identified,
        "profile_speed_ops_s": speed,
    }
    rng = np.random.default_rng(SEED)
    cells = [(switch, n) for switch in SWITCH_MS for n in levels]
    with Experiment(NAME, seed=SEED, quick=args.quick, params=params, out=args.out) as ex:
        k = 0
        for repeat in range(repeats):
            for i in rng.permutation(len(cells)):
                switch, n = cells[int(i)]
                k += 1
                s = measure(
                    MeasureOptions(
                        target="thread-per-connection",
                        workload=_workload(n),
                        architecture=ARCH,
                        duration=seconds,
                        warmup=warmup,
                        seed=SEED + k,
                        save=False,
                        switch_interval_ms=switch,
                    )
                ).summary
                ex.add(source="measured", switch_ms=switch, concurrency=n, repeat=repeat,
                       poll_us=math.nan, **_row(s))  # fmt: skip
                print(f"measured N={n} at {switch:g} ms: {s.throughput_rps:,.0f} req/s")
        for source, values in (("simulated", (poll,)), ("what-if", polls)):
            for g in values:
                for switch in SWITCH_MS:
                    p = platform.with_(gil_interval_us=switch * 1e3, gil_poll_us=g)
                    for n in levels:
                        s = simlab.simulate(
                            "thread-per-connection", _workload(n), p, ARCH,
                            duration=seconds, warmup=warmup, seed=SEED, replications=1,
                            tables=False,
                        ).summary  # fmt: skip
                        ex.add(source=source, switch_ms=switch, concurrency=n, repeat=0,
                               poll_us=g, **_row(s))  # fmt: skip
        _plot(ex, poll)
        text = findings(
            ex.results(),
            profile_poll_us=poll,
            profile_poll_identified=identified,
            profile_speed_ops_s=speed,
        )
        ex.findings(text)
    print(f"wrote {ex.target}")


def _plot(ex: Experiment, profile_poll: float) -> None:
    df = ex.results()
    fit = _what_if(df)
    fig, ax = plt.subplots(figsize=(8, 5))
    styles = {5.0: "-", 50.0: "--"}
    for switch in SWITCH_MS:
        m = _cells(df, "measured", switch)
        ax.errorbar(m.index, m["mean"], yerr=[m["mean"] - m["low"], m["high"] - m["mean"]],
                    fmt="s" + styles[switch], color="C0", capsize=3,
                    label=f"measured (runs' range), {switch:g} ms interval")  # fmt: skip
        sim = _cells(df, "simulated", switch)
        ax.plot(sim.index, sim["mean"], "o" + styles[switch], color="C1",
                label=f"model, gil_poll_us {profile_poll:g} (profile), {switch:g} ms")  # fmt: skip
        if fit is not None:
            w = _cells(df, "what-if", switch, poll=fit.value)
            ax.plot(w.index, w["mean"], "^" + styles[switch], color="C2",
                    label=f"model, gil_poll_us {fit.value:g} (what-if), {switch:g} ms")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xlabel("persistent connections (a thread each, once started)")
    ax.set_ylabel("served (req/s)")
    ax.set_title(f"Thread-per-connection past its capacity ({RATE:g} req/s offered)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ex.figure("overload", fig)
    plt.close(fig)


def _cells(df: pd.DataFrame, source: str, switch: float, poll: float | None = None) -> pd.DataFrame:
    """Served per level: the repeats' mean, lowest and highest."""
    part = df[(df["source"] == source) & (df["switch_ms"] == switch)]
    if poll is not None:
        part = part[np.isclose(part["poll_us"], poll)]
    g = part.groupby("concurrency")["throughput_rps"]
    return pd.DataFrame({"mean": g.mean(), "low": g.min(), "high": g.max()})


def _runs(df: pd.DataFrame, switch: float, n: int, column: str = "throughput_rps") -> np.ndarray:
    """The measured runs' values of one level at one interval."""
    m = df[(df["source"] == "measured") & (df["switch_ms"] == switch) & (df["concurrency"] == n)]
    return m[column].to_numpy(dtype=float)


@dataclass(frozen=True)
class WhatIf:
    """The what-if's answer: the grid's value nearest the measured contrast, its
    interval over the repeats (None with one run a level), the grid's top, and
    at each level kept the measured and the model's gain at 50 ms over 5 ms."""

    value: float
    interval: list[float] | None
    top: float
    gains: dict[int, tuple[float, float]]

    def describe(self) -> str:
        where = (
            "one run a level: no interval over the repeats"
            if self.interval is None
            else f"{self.interval[0]:g} to {self.interval[1]:g} us over resamples of this "
            "session's runs, on the grid's values, one model replication a value"
        )
        if self.value >= self.top or (self.interval is not None and self.interval[1] >= self.top):
            where += "; it reaches the top of the grid tried, which does not bound it"
        return where

    def mismatch(self) -> str:
        """The gains at 50 ms level by level, measured against the model's at ``value``."""
        return "; ".join(
            f"{n}: {_signed(m)} measured, {_signed(g)} model" for n, (m, g) in self.gains.items()
        )


def _what_if(
    df: pd.DataFrame, levels: list[int] | None = None, rng: np.random.Generator | None = None
) -> WhatIf | None:
    """The grid's gil_poll_us whose simulated contrast between the intervals
    (log of served at 5 ms over served at 50 ms, per level: a ratio of two means
    of this session's runs) is nearest the measured, least squares over
    ``levels`` (all the measured ones by default; a level missing a side, or a
    model value at any value of the grid, is left out), and its 95%
    interval over resamples of the measured repeats (each level's runs at each
    interval drawn with replacement); None without what-if rows or levels."""
    grid = sorted(df.loc[df["source"] == "what-if", "poll_us"].unique())
    measured = df[df["source"] == "measured"]
    chosen = sorted(measured["concurrency"].unique()) if levels is None else levels
    runs = {n: (_runs(df, 5.0, n), _runs(df, 50.0, n)) for n in chosen}
    kept = [n for n in chosen if min(len(runs[n][0]), len(runs[n][1])) > 0]
    if not grid or not kept:
        return None

    def contrast(g: float) -> np.ndarray:
        at5 = _cells(df, "what-if", 5.0, g)["mean"]
        at50 = _cells(df, "what-if", 50.0, g)["mean"]
        return np.log((at5 / at50).reindex(kept).to_numpy(dtype=float))

    sims = np.array([contrast(g) for g in grid])
    whole = ~np.isnan(sims).any(axis=0)
    kept = [n for n, ok in zip(kept, whole, strict=True) if ok]
    sims = sims[:, whole]
    if not kept:
        return None

    def best(target: np.ndarray) -> int:
        return int(np.argmin(((sims - target) ** 2).sum(axis=1)))

    target = np.log([runs[n][0].mean() / runs[n][1].mean() for n in kept])
    at = best(target)
    value = float(grid[at])
    # A gain at 50 ms over 5 ms is exp(-contrast) - 1.
    gains = {
        n: (float(np.expm1(-t)), float(np.expm1(-m)))
        for n, t, m in zip(kept, target, sims[at], strict=True)
    }
    if min(min(len(runs[n][0]), len(runs[n][1])) for n in kept) < 2:
        return WhatIf(value, None, float(grid[-1]), gains)
    rng = rng if rng is not None else np.random.default_rng(SEED)
    draws = []
    for _ in range(DRAWS):
        t = np.log([rng.choice(runs[n][0], len(runs[n][0])).mean()
                    / rng.choice(runs[n][1], len(runs[n][1])).mean() for n in kept])  # fmt: skip
        draws.append(float(grid[best(t)]))
    interval = [float(x) for x in np.percentile(draws, [2.5, 97.5], method="nearest")]
    return WhatIf(value, interval, float(grid[-1]), gains)


def _change(cells: pd.DataFrame, lo: int | None = None, hi: int | None = None) -> float:
    """The fall from the fewest connections to the most (or from ``lo`` to
    ``hi``), a fraction of the fewest's served (negative: a rise)."""
    a = cells["mean"].iloc[0] if lo is None else cells.loc[lo, "mean"]
    b = cells["mean"].iloc[-1] if hi is None else cells.loc[hi, "mean"]
    return float(1 - b / a)


def _signed(x: float) -> str:
    """A change as +x% or -x%, with no "-0%" for a change that rounds to none."""
    text = f"{x:+.0%}"
    return "+0%" if text == "-0%" else text


def _kind(change: float) -> Change:
    return "fall" if change > FALL else "rise" if change < -FALL else "flat"


def _measured_change(
    df: pd.DataFrame, switch: float, lo: int, hi: int
) -> tuple[float, Change, bool]:
    """The measured change from ``lo`` to ``hi`` connections at one interval, its
    kind, and whether it is beyond the runs (``ranges_apart`` of the two levels)."""
    change = _change(_cells(df, "measured", switch), lo, hi)
    return change, _kind(change), ranges_apart(_runs(df, switch, lo), _runs(df, switch, hi))


def _reproduces(model_change: float, change: float, kind: Change, beyond: bool, runs: int) -> str:
    """Whether a simulated change matches the measured: the same kind (a fall,
    a rise, or neither beyond FALL; a measured fall or rise not beyond the runs
    counts as neither) and within AGREE of it."""
    measured: Change = kind if beyond else "flat"
    model = _kind(model_change)
    if model != measured:
        names = {"fall": "a fall", "rise": "a rise", "flat": f"no change beyond {FALL:.0%}"}
        why = "within the runs" if runs >= 2 else "of one run a level"
        shown = names[measured] + (f" (a {kind} {why})" if kind != "flat" and not beyond else "")
        return f"it does not reproduce the measured change: {names[model]} against {shown}."
    if abs(model_change - change) <= AGREE:
        return f"it reproduces the measured change (within {AGREE:.0%} points)."
    return f"the same kind of change, but more than {AGREE:.0%} points apart."


def _cpu(df: pd.DataFrame, switch: float) -> pd.Series:
    part = df[(df["source"] == "measured") & (df["switch_ms"] == switch)]
    return part.groupby("concurrency")["cpu_ms_per_request"].mean()


def _held(df: pd.DataFrame, switch: float, n: int) -> float:
    return float(_runs(df, switch, n, "threads_mean").mean())


def _simulated_held(df: pd.DataFrame, switch: float, n: int) -> float:
    """The calibrated model's threads on average at ``n`` connections."""
    part = df[(df["source"] == "simulated") & (df["switch_ms"] == switch)]
    return float(part.loc[part["concurrency"] == n, "threads_mean"].mean())


def findings(
    df: pd.DataFrame,
    *,
    profile_poll_us: float,
    profile_poll_identified: bool,
    profile_speed_ops_s: float = math.nan,
) -> str:
    """The findings, every direction and comparison chosen by a rule from the table."""
    lines = ["# Thread-per-connection past its capacity\n"]
    m5 = _cells(df, "measured", 5.0)
    lo, hi = int(m5.index[0]), int(m5.index[-1])
    runs = int(df[df["source"] == "measured"].groupby(["switch_ms", "concurrency"]).size().min())
    rate, cpu_ms = float(df["param_rate"].iloc[0]), float(df["param_cpu_ms"].iloc[0])
    cores = rate * cpu_ms / 1e3
    served = df.loc[df["source"] == "measured", "throughput_rps"]
    under = bool((served < rate).all())
    lines.append(
        f"Open arrivals at {rate:g} req/s of {cpu_ms:g} ms of CPU each: {cores:.2g} times one "
        f"core's worth"
        + (", more than one core serves" if cores > 1 else ", within one core")
        + "; the server served "
        + ("under the offered rate in every run" if under else "the offered rate in some runs")
        + f". {runs} run(s) a level and interval.\n"
    )

    lines.append("## Does it collapse?\n")
    change, kind, beyond = _measured_change(df, 5.0, lo, hi)
    noise = (
        "beyond the runs (every run of one level above every run of the other)"
        if beyond
        else "within the runs (their ranges meet)"
        if runs >= 2
        else "with one run a level, whose noise this table does not show"
    )
    verdict = {
        "fall": f"it falls by {change:.0%}, {noise}",
        "rise": f"it rises by {-change:.0%}, {noise}",
        "flat": f"a change of {_signed(-change)}, within {FALL:.0%}",
    }[kind]
    collapses = kind == "fall" and beyond
    lines.append(
        f"- At Python's 5 ms switch interval the server serves {m5['mean'].iloc[0]:,.0f} req/s "
        f"on {lo} connections and {m5['mean'].iloc[-1]:,.0f} on {hi}: {verdict}"
        + (
            f": a collapse, {m5['mean'].iloc[-1]:,.0f} served on the most connections "
            "against more on the fewest."
            if collapses
            else ": no collapse is shown."
        )
    )
    cpu = _cpu(df, 5.0)
    cost = compare(cpu.iloc[-1], cpu.iloc[0], STEADY)
    lines.append(
        "- The server's CPU a served request "
        + cost.pick(
            more=f"grows from {cpu.iloc[0]:.2f} to {cpu.iloc[-1]:.2f} ms",
            less=f"falls from {cpu.iloc[0]:.2f} to {cpu.iloc[-1]:.2f} ms",
            same=f"stays within {STEADY:.0%} ({cpu.iloc[0]:.2f} to {cpu.iloc[-1]:.2f} ms)",
        )
        + f" from {lo} to {hi} connections at 5 ms (the requests' own work is {cpu_ms:g} ms)."
    )
    held5, held50 = _held(df, 5.0, hi), _held(df, 50.0, hi)
    held = compare(max(held5, held50), hi + 1, STEADY)
    lines.append(
        f"- On {hi} connections the server held {held5:,.0f} threads on average at 5 ms "
        f"and {held50:,.0f} at 50 ms: at both, "
        + held.pick(
            more=f"more than one a connection and its acceptor ({hi + 1}).",
            less=f"fewer than one a connection and its acceptor ({hi + 1}): some connections' "
            "threads were not started yet. "
            + hypothesis(
                "the acceptor, which starts each connection's thread, waits for the GIL like "
                "every thread with work, so the threads start slowly while the server is busy",
                "the same levels with the arrivals held back until every thread has started "
                "(a rate schedule starting light), or the acceptor's time from accept to "
                "Thread.start() recorded per connection",
            ),
            same=f"one a connection and its acceptor ({hi + 1}).",
        )
    )

    lines += _interval_section(df, lo, hi, runs, collapses)
    lines.append("\n## The model beside it\n")
    s5 = _cells(df, "simulated", 5.0)
    status = "identified" if profile_poll_identified else "not identified by its runs"
    lines.append(
        f"- The calibrated model (gil_poll_us {profile_poll_us:g} us, {status}) changes by "
        f"{_signed(-_change(s5))} from {lo} to {hi} connections at 5 ms, the server by "
        f"{_signed(-change)}: " + _reproduces(_change(s5), change, kind, beyond, runs)
    )
    lines.append(_level(df, s5, m5, profile_speed_ops_s))
    sim_held = _simulated_held(df, 5.0, hi)
    if math.isfinite(sim_held):
        # Both make a thread a connection as the run starts, each behind its GIL.
        lines.append(
            f"- On {hi} connections the calibrated model held {sim_held:,.0f} threads on "
            f"average at 5 ms, the server {held5:,.0f}: the model "
            + compare(sim_held, held5, STEADY).pick(
                more="had made more of its connections' threads.",
                less="had made fewer of its connections' threads.",
                same=f"as many (within {STEADY:.0%}).",
            )
        )
    fit = _what_if(df)
    if fit is not None:
        w_change = _change(_cells(df, "what-if", 5.0, poll=fit.value))
        lines.append(
            f"- What-if: among the values tried, gil_poll_us = {fit.value:g} us gives the "
            f"5-against-50 ms contrast nearest the measured (least squares of the log ratios "
            f"over the levels; {fit.describe()}); with it the model changes by "
            f"{_signed(-w_change)} from {lo} to {hi} connections at 5 ms: "
            + _reproduces(w_change, change, kind, beyond, runs)
            + f" The gain at 50 ms by connections, at {fit.value:g} us: {fit.mismatch()}."
        )
        full = [
            int(n)
            for n in m5.index
            if min(_held(df, 5.0, int(n)), _held(df, 50.0, int(n))) >= ALL_THREADS * (n + 1)
        ]
        if full and len(full) < len(m5.index):
            sub = _what_if(df, levels=full)
            assert sub is not None
            lines.append(
                f"  On the levels where the server held every connection's thread at both "
                f"intervals ({', '.join(map(str, full))} connections; at least "
                f"{ALL_THREADS:.0%} of them and its acceptor), the "
                f"nearest value is {sub.value:g} us ({sub.describe()})."
            )
    return "\n".join(lines)


def _interval_section(df: pd.DataFrame, lo: int, hi: int, runs: int, collapses: bool) -> list[str]:
    """What ten times the switch interval does: the served rates on the most and
    the fewest connections, the machine's speed at each interval, and, where
    the 5 ms runs collapse, how much of their fall is left (``share_left``)."""
    lines = ["\n## Is it the switch interval?\n"]
    change50, _, _ = _measured_change(df, 50.0, lo, hi)
    lines += [f"- {_gain(df, n, runs)}" for n in (hi, lo)]
    lines[-1] += f" From {lo} to {hi} connections it changes by {_signed(-change50)} at 50 ms."
    lines.append(_speeds(df))
    if collapses:
        left, interval = share_left(
            _runs(df, 5.0, lo), _runs(df, 5.0, hi), _runs(df, 50.0, lo), _runs(df, 50.0, hi),
            seed=SEED,
        )  # fmt: skip
        where = (
            "one run a level: no interval"
            if interval is None
            else f"{interval[0]:.0%} to {interval[1]:.0%} over resamples of the runs"
        )
        head = f"\nAt the longer interval {left:.0%} of the fall is left ({where}): "
        if interval is not None and interval[1] < SHARE_LEFT:
            lines.append(
                head + f"under {SHARE_LEFT:.0%} at the interval's top, so the fall depends on the "
                "switch interval. "
                + hypothesis(
                    "the threads waiting for the GIL each wake once a switch interval to ask "
                    "for it, and each wake-up takes time from the thread that holds it (what "
                    "the model's gil_poll_us charges); at 50 ms they wake a tenth as often",
                    "the same levels with the server's voluntary context switches a second "
                    "recorded at both intervals (simlab measure's thread_switches_per_s): "
                    "the fall should follow the switches, not the threads held",
                )
            )
        elif interval is not None and interval[0] >= SHARE_LEFT:
            lines.append(
                head + f"at least {SHARE_LEFT:.0%} at the interval's bottom, so the switch "
                "interval does not explain it. "
                + hypothesis(
                    "the cost grows with the threads themselves (the kernel's scheduling "
                    "of many runnable threads), not with their wake-ups for the GIL",
                    "the same levels with the threads' voluntary and involuntary context "
                    "switches recorded (simlab measure's thread_switches_per_s)",
                )
            )
        else:
            lines.append(
                head + f"whether under or over {SHARE_LEFT:.0%} these runs do not settle, so "
                "whether the fall depends on the switch interval is undetermined; more runs "
                "a level would settle it."
            )
    else:
        lines.append("\nWith no collapse at 5 ms there is no fall for the interval to explain.")
    return lines


def _gain(df: pd.DataFrame, n: int, runs: int) -> str:
    """What ten times the switch interval serves on ``n`` connections, against 5 ms."""
    at5, at50 = _runs(df, 5.0, n), _runs(df, 50.0, n)
    gain = compare(at50.mean(), at5.mean(), STEADY)
    noise = (
        ""
        if gain.relation == "same"
        else ", beyond the runs"
        if ranges_apart(at50, at5)
        else ", the runs meet"
        if runs >= 2
        else ", one run each"
    )
    return (
        f"On {n} connections, at ten times the interval (50 ms) the server serves "
        + gain.pick(
            more=f"{gain.relative:.0%} more than",
            less=f"{-gain.relative:.0%} less than",
            same=f"as much (within {STEADY:.0%}) as",
        )
        + f" at 5 ms ({at50.mean():,.0f} against {at5.mean():,.0f} req/s{noise})."
    )


def _speeds(df: pd.DataFrame) -> str:
    """The machine's speed over the 50 ms runs against the 5 ms runs: the two
    intervals' runs compare only as far as the machine ran alike."""
    m = df[df["source"] == "measured"]
    at5 = m.loc[m["switch_ms"] == 5.0, "speed_ops_s"].dropna()
    at50 = m.loc[m["switch_ms"] == 50.0, "speed_ops_s"].dropna()
    if not len(at5) or not len(at50):
        return "- The machine's speed was not recorded beside the runs."
    pace = compare(at50.median(), at5.median(), SPEED_SAME)
    return (
        "- The machine ran the speed reference (simlab.real.speed) "
        + pace.pick(
            more=f"{pace.relative:.0%} faster during the 50 ms runs than the 5 ms runs",
            less=f"{-pace.relative:.0%} slower during the 50 ms runs than the 5 ms runs",
            same=f"as fast during the 50 ms runs as the 5 ms runs (within {SPEED_SAME:.0%})",
        )
        + f" ({at50.median():,.0f} against {at5.median():,.0f} ops/s, medians; the runs "
        f"ranged {m['speed_ops_s'].min():,.0f} to {m['speed_ops_s'].max():,.0f})."
    )


def _level(df: pd.DataFrame, s5: pd.DataFrame, m5: pd.DataFrame, profile_speed_ops_s: float) -> str:
    """The model's served rate on the fewest connections, against the server's,
    and this session's machine speed against the calibration's."""
    lo = int(m5.index[0])
    gap = compare(s5["mean"].iloc[0], m5["mean"].iloc[0], AGREE)
    text = (
        f"- On {lo} connections the calibrated model serves "
        + gap.pick(
            more=f"{gap.relative:.0%} more than the server",
            less=f"{-gap.relative:.0%} less than the server",
            same=f"as much as the server (within {AGREE:.0%})",
        )
        + f" ({s5['mean'].iloc[0]:,.0f} against {m5['mean'].iloc[0]:,.0f} req/s at 5 ms)"
    )
    speeds = df.loc[df["source"] == "measured", "speed_ops_s"].dropna()
    if len(speeds) and math.isfinite(profile_speed_ops_s) and profile_speed_ops_s > 0:
        now = float(speeds.median())
        pace = compare(now, profile_speed_ops_s, SPEED_SAME)
        text += (
            "; this session's machine ran the speed reference (simlab.real.speed) "
            + pace.pick(
                more=f"{pace.relative:.0%} faster than the calibration's",
                less=f"{-pace.relative:.0%} slower than the calibration's",
                same=f"as fast as the calibration's (within {SPEED_SAME:.0%})",
            )
            + f" ({now:,.0f} against {profile_speed_ops_s:,.0f} ops/s, medians over runs)"
        )
    return text + ": the contrasts above compare runs of this session only."


if __name__ == "__main__":
    main()
