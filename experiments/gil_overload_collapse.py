"""Past its capacity, does thread-per-connection collapse, and is it the GIL's switch interval?

A closed loop (``thread_count_collapse.py``) never piles work on every thread:
each client waits for its answer, and under saturation the acceptor, which
needs the GIL to start each connection's thread, keeps most threads from
existing. Here the arrivals are open (Poisson, more than one core's worth of
the work), so every thread that exists has a request waiting, and a waiting
thread asks for the GIL again every switch interval (CPython's timed wait in
``take_gil``). The same levels are run at Python's 5 ms switch interval and
at ten times it: if the threads' wake-ups are what costs, the longer interval
takes most of the cost away.

Beside the measurements, the calibrated model at both intervals, and the model
again with the GIL waiters' wake-up cost (``Platform.gil_poll_us``, each
wake-up's time taken from the GIL's holder) at every value of a grid: the one
whose 5-against-50 ms contrast is closest to the measured is reported, a
what-if (the profile's own value comes from the calibration's closed loops).

Run: ``python experiments/gil_overload_collapse.py [--quick]``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import simlab
from simlab import Architecture, Fixed, Workload
from simlab.experiment import Experiment, arguments, rewrite_findings
from simlab.findings import compare, hypothesis
from simlab.paths import profiles_dir
from simlab.real.measure import MeasureOptions, measure

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
FALL = 0.10  # throughput falls when the top level serves > 10% less than the lowest
STEADY = 0.05  # a CPU a request that moves less than 5% stays put
RECOVER = 0.5  # the long interval "takes most of the fall away": under half of it is left
AGREE = 0.10  # a simulated fall within 10 points of the measured one reproduces it
SPEED_SAME = 0.05  # two machine speeds within 5% are the same (the reference repeats to 3%)
DRAWS = 400  # bootstrap draws over the repeats, for the what-if's interval


def _findings_from(df: pd.DataFrame, params: dict[str, Any]) -> str:
    """The findings of a saved run, with the parameters it recorded in meta.json."""
    return findings(
        df,
        profile_poll_us=float(params["profile_gil_poll_us"]),
        profile_poll_identified=bool(params["profile_gil_poll_identified"]),
        # None in meta.json where the profile recorded no speed (nan on the way in).
        profile_speed_ops_s=float(params.get("profile_speed_ops_s") or math.nan),
    )


def _profile_poll() -> tuple[float, bool, float]:
    """The calibrated profile's gil_poll_us, whether its runs identified it, and
    the machine's speed over its runs (``simlab.real.speed``; nan without one)."""
    platform = simlab.load_platform("cpython")
    path = profiles_dir() / "cpython.json"
    identified, speed = False, math.nan
    if path.exists():
        profile = json.loads(path.read_text())
        entry = profile.get("parameters", {}).get("gil_poll_us", {})
        identified = bool(entry.get("identified", False))
        speed = float((profile.get("speed_reference") or {}).get("median_ops_s", math.nan))
    return float(platform.gil_poll_us), identified, speed


def _workload(n: int) -> Workload:
    return Workload(
        connections=n, rate=RATE, cpu=Fixed(CPU_MS / 1e3), io=Fixed(IO_MS / 1e3), calls=CALLS
    )


def _row(summary: Any) -> dict[str, float]:
    served = float(summary.throughput_rps)
    cpu = summary.cpu_busy_cores
    return {
        "throughput_rps": served,
        "cpu_ms_per_request": float(cpu) * 1e3 / served if cpu is not None and served else math.nan,
        "threads_mean": float(summary.threads.mean),
        "p50_ms": float(summary.latency_ms.p50),
        # The machine's speed around a real run (simlab.real.speed), none simulated.
        "speed_ops_s": float(speed.ops_s)
        if (speed := getattr(summary, "speed_reference", None)) is not None
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
    poll, identified, speed = _profile_poll()
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
    with Experiment(NAME, seed=SEED, quick=args.quick, params=params, out=args.out) as ex:
        k = 0
        for repeat in range(repeats):
            for switch in SWITCH_MS:
                for n in levels:
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
        ax.plot(m.index, m["mean"], "s" + styles[switch], color="C0",
                label=f"measured, {switch:g} ms interval")  # fmt: skip
        sim = _cells(df, "simulated", switch)
        ax.plot(sim.index, sim["mean"], "o" + styles[switch], color="C1",
                label=f"model, gil_poll_us {profile_poll:g} (profile), {switch:g} ms")  # fmt: skip
        if fit is not None:
            w = _cells(df, "what-if", switch, poll=fit[0])
            ax.plot(w.index, w["mean"], "^" + styles[switch], color="C2",
                    label=f"model, gil_poll_us {fit[0]:g} (what-if), {switch:g} ms")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xlabel("threads (persistent connections), every one with work waiting")
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


def _contrast(cells5: pd.Series, cells50: pd.Series) -> pd.Series:
    """log(served at 5 ms / served at 50 ms) per level: the machine's speed cancels."""
    return np.log(cells5 / cells50)


def _what_if(
    df: pd.DataFrame, rng: np.random.Generator | None = None
) -> tuple[float, list[float]] | None:
    """The grid's gil_poll_us whose simulated contrast between the intervals is
    closest (least squares of the log ratios over the levels) to the measured,
    and its 95% interval over resamples of the measured repeats (each level's
    runs at each interval drawn with replacement); None without what-if rows."""
    grid = sorted(df.loc[df["source"] == "what-if", "poll_us"].unique())
    if not grid:
        return None
    measured = df[df["source"] == "measured"]
    levels = sorted(measured["concurrency"].unique())
    sims = np.array([
        _contrast(_cells(df, "what-if", 5.0, g)["mean"], _cells(df, "what-if", 50.0, g)["mean"])
        .reindex(levels).to_numpy()
        for g in grid
    ])  # fmt: skip

    def best(target: np.ndarray) -> float:
        return float(grid[int(np.argmin(((sims - target) ** 2).sum(axis=1)))])

    def served(switch: float) -> list[np.ndarray]:
        part = measured[measured["switch_ms"] == switch]
        return [part.loc[part["concurrency"] == n, "throughput_rps"].to_numpy() for n in levels]

    at5, at50 = served(5.0), served(50.0)
    target = np.log([a.mean() / b.mean() for a, b in zip(at5, at50, strict=True)])
    rng = rng if rng is not None else np.random.default_rng(SEED)
    draws = []
    for _ in range(DRAWS):
        t = np.log([rng.choice(a, len(a)).mean() / rng.choice(b, len(b)).mean()
                    for a, b in zip(at5, at50, strict=True)])  # fmt: skip
        draws.append(best(t))
    return best(target), [float(x) for x in np.percentile(draws, [2.5, 97.5])]


def _fall(cells: pd.DataFrame, runs: int = 1) -> tuple[float, bool]:
    """The fall from the lowest level to the highest (a fraction of the lowest's
    served), and whether it is beyond the repeats: with two runs or more a
    level, the two levels' ranges apart (one run a level shows no noise)."""
    lo, hi = cells.iloc[0], cells.iloc[-1]
    apart = runs >= 2 and bool(lo["low"] > hi["high"] or lo["high"] < hi["low"])
    return 1 - hi["mean"] / lo["mean"], apart


def _level(df: pd.DataFrame, s5: pd.DataFrame, m5: pd.DataFrame, profile_speed_ops_s: float) -> str:
    """The model's served rate where few threads wait, against the server's, and
    this session's machine speed against the calibration's."""
    lo = int(m5.index[0])
    gap = compare(s5["mean"].iloc[0], m5["mean"].iloc[0], AGREE)
    text = (
        f"- With {lo} threads, where few wait, the calibrated model serves "
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


def _reproduces(model_fall: float, fall: float, collapses: bool) -> str:
    """Whether a simulated change from the lowest level to the highest matches
    the measured: both a fall of more than FALL or neither, and within AGREE."""
    if (model_fall > FALL) != collapses:
        return (
            "a fall where the server shows none."
            if model_fall > FALL
            else "it does not reproduce the measured collapse."
        )
    if abs(model_fall - fall) <= AGREE:
        return f"it reproduces the measured change (within {AGREE:.0%} points)."
    return f"the same direction, but more than {AGREE:.0%} points apart."


def _cpu(df: pd.DataFrame, source: str, switch: float) -> pd.Series:
    part = df[(df["source"] == source) & (df["switch_ms"] == switch)]
    return part.groupby("concurrency")["cpu_ms_per_request"].mean()


def findings(
    df: pd.DataFrame,
    *,
    profile_poll_us: float,
    profile_poll_identified: bool,
    profile_speed_ops_s: float = math.nan,
) -> str:
    """The findings, every direction and comparison chosen by a rule from the table."""
    lines = ["# Thread-per-connection past its capacity\n"]
    m5, m50 = _cells(df, "measured", 5.0), _cells(df, "measured", 50.0)
    lo, hi = int(m5.index[0]), int(m5.index[-1])
    runs = int(df[(df["source"] == "measured") & (df["switch_ms"] == 5.0)
                  & (df["concurrency"] == lo)].shape[0])  # fmt: skip
    fall, apart = _fall(m5, runs)
    collapses = fall > FALL and apart
    beyond = (
        "beyond the repeats (the two levels' ranges apart)"
        if apart
        else "not beyond the repeats (the two levels' ranges meet)"
        if runs >= 2
        else "with one run a level, whose noise this table does not show"
    )
    lines.append(
        f"Open arrivals at {df['param_rate'].iloc[0]:g} req/s of {df['param_cpu_ms'].iloc[0]:g} "
        f"ms of CPU each (more than one core's worth), {runs} run(s) a level and interval.\n"
    )
    lines.append("## Does it collapse?\n")
    verdict = (
        f"it falls by {fall:.0%}, {beyond}: a collapse, the more threads the less served"
        if collapses
        else f"it falls by {fall:.0%}, but {beyond}: no collapse is shown"
        if fall > FALL
        else f"it rises by {-fall:.0%}, so no collapse"
        if fall < -FALL
        else f"a change of {-fall:+.0%}, within {FALL:.0%}: no collapse"
    )
    lines.append(
        f"- At Python's 5 ms switch interval the server serves {m5['mean'].iloc[0]:,.0f} req/s "
        f"with {lo} threads and {m5['mean'].iloc[-1]:,.0f} with {hi}: {verdict}."
    )
    cpu = _cpu(df, "measured", 5.0)
    cost = compare(cpu.iloc[-1], cpu.iloc[0], STEADY)
    lines.append(
        "- The server's CPU a served request "
        + cost.pick(
            more=f"grows from {cpu.iloc[0]:.2f} to {cpu.iloc[-1]:.2f} ms",
            less=f"falls from {cpu.iloc[0]:.2f} to {cpu.iloc[-1]:.2f} ms",
            same=f"stays within {STEADY:.0%} ({cpu.iloc[0]:.2f} to {cpu.iloc[-1]:.2f} ms)",
        )
        + f" from {lo} to {hi} threads (the requests' own work is {CPU_MS:g} ms)."
    )
    alive = df[(df["source"] == "measured") & (df["concurrency"] == hi)]["threads_mean"].mean()
    held = compare(alive, hi + 1, STEADY)
    lines.append(
        f"- With {hi} connections the server held {alive:,.0f} threads on average "
        + held.pick(
            more="(more than one a connection)",
            less=f"of the {hi + 1} it would hold with every connection's thread started: its "
            "acceptor starts them one at a time and needs the GIL for each",
            same=f"(every connection's thread, and its acceptor: {hi + 1})",
        )
        + "."
    )

    lines.append("\n## Is it the switch interval?\n")
    fall50, _ = _fall(m50)
    gain = compare(m50["mean"].iloc[-1], m5["mean"].iloc[-1], STEADY)
    lines.append(
        f"- With {hi} threads, at ten times the interval (50 ms) the server serves "
        + gain.pick(
            more=f"{gain.relative:.0%} more",
            less=f"{-gain.relative:.0%} less",
            same=f"as much (within {STEADY:.0%})",
        )
        + f" than at 5 ms ({m50['mean'].iloc[-1]:,.0f} against {m5['mean'].iloc[-1]:,.0f} "
        f"req/s); from {lo} to {hi} threads it changes by {-fall50:+.0%} there."
    )
    if collapses:
        left = fall50 / fall
        if left < RECOVER:
            lines.append(
                f"\nAt the longer interval {max(left, 0):.0%} of the fall is left (under "
                f"{RECOVER:.0%}): the cost comes with how often the waiting threads wake "
                "to ask for the GIL (each once a switch interval), not with the threads alone."
            )
        else:
            lines.append(
                f"\nAt the longer interval {left:.0%} of the fall is left (at least "
                f"{RECOVER:.0%}): the switch interval does not explain it. "
                + hypothesis(
                    "the cost grows with the threads themselves (the kernel's scheduling "
                    "of many runnable threads), not with their wake-ups for the GIL",
                    "the same levels with the threads' voluntary and involuntary context "
                    "switches recorded (simlab measure's thread_switches_per_s)",
                )
            )
    else:
        lines.append("\nWith no collapse at 5 ms there is no fall for the interval to explain.")

    lines.append("\n## The model beside it\n")
    s5 = _cells(df, "simulated", 5.0)
    sim_fall, _ = _fall(s5)
    status = "identified" if profile_poll_identified else "not identified by its runs"
    lines.append(
        f"- The calibrated model (gil_poll_us {profile_poll_us:g} us, {status}) changes by "
        f"{-sim_fall:+.0%} from {lo} to {hi} threads at 5 ms, the server by {-fall:+.0%}: "
        + _reproduces(sim_fall, fall, collapses)
    )
    lines.append(_level(df, s5, m5, profile_speed_ops_s))
    fit = _what_if(df)
    if fit is not None:
        g, (g_lo, g_hi) = fit
        w5 = _cells(df, "what-if", 5.0, poll=g)
        w_fall, _ = _fall(w5)
        edge = max(df.loc[df["source"] == "what-if", "poll_us"])
        bound = " (the top of the grid tried: the data do not bound it)" if g >= edge else ""
        lines.append(
            f"- What-if: among the values tried, gil_poll_us = {g:g} us gives the 5-against-"
            f"50 ms contrast nearest the measured (least squares of the log ratios over the "
            f"levels; {g_lo:g} to {g_hi:g} us over resamples of the repeats){bound}; with it "
            f"the model changes by {-w_fall:+.0%} from {lo} to {hi} threads at 5 ms: "
            + _reproduces(w_fall, fall, collapses)
        )
        if held.relation == "less" and g > 0:
            lines.append(
                f"  The model gives each connection its thread from the start ({hi + 1} "
                f"threads, {hi} of them waiting) where the server held {alive:,.0f}: with "
                "more waiters than the server had, a smaller cost each makes the same "
                f"contrast, so {g:g} us understates one wake-up's cost."
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
