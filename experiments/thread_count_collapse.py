"""Does a threaded server's throughput collapse as threads grow (SEDA's Figures 2 and 4)?

Welsh et al. (SOSP 2001) showed a thread-per-connection server whose
throughput rises with threads, then falls, while its latency climbs; and an
event-driven server whose throughput stays flat under growing load while its
latency grows linearly. Here both are driven in closed loop (each client
resends as soon as it is answered) at growing concurrency, for real on this
machine and in the calibrated simulation, and the Universal Scalability Law
is fitted to each: a contention term sigma and a coherency term kappa, whose
confidence interval says whether a collapse (kappa > 0) is there at all.

Run: ``python experiments/thread_count_collapse.py [--quick]``.
"""

from __future__ import annotations

import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

import simlab
from simlab import Architecture
from simlab.experiment import Experiment, arguments, rewrite_findings
from simlab.findings import (
    Scaling,
    compare,
    elasticity,
    hypothesis,
    machine_cores,
    scaling,
    within_noise,
)
from simlab.usl import UslFit, fit_usl, usl_study

NAME = "thread_count_collapse"
SEED = 1
LEVELS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
QUICK_LEVELS = (1, 4, 16, 32)
CPU_MS, IO_MS, CALLS = 2.0, 5.0, 1
# --quick (the tests): 1 s per level, still over 100 requests at one client and
# thousands at 32, whose p50s differ several times over.
SECONDS, QUICK_SECONDS = 4.0, 1.0
SERVERS = ("thread-per-connection", "async")
# The findings' rules (every direction or comparison in findings.md is one of these):
FLAT = 0.10  # throughput within 10% of its peak is flat: Little's law then makes R ~ N
FALL = 0.10  # throughput falls when the top level is > 10% below the peak, beyond noise
LINEAR_TOL = 0.15  # p50 ~ N^b grows linearly when b's 95% CI lies within 1 +- 0.15
STEADY = 0.05  # a median that moves less than 5% stays put
MEDIAN_MEAN = 0.25  # a median within 25% of Little's mean N / X is "close to" it
CORE_TOL = 0.10  # a plateau more than 10% above one core's worth uses more than one core
SERVERS_SAME = 0.05  # two servers' throughputs within 5% are the same
AGREE = 0.10  # a simulated plateau within 10% of the measured one agrees


def _findings_from(df: pd.DataFrame, params: dict[str, Any]) -> str:
    """The findings of a saved run, with the parameters it recorded in meta.json."""
    return findings(df, cpu_ms=params["cpu_ms"])


def main() -> None:
    args = arguments(__doc__ or "")
    if args.findings_only:
        rewrite_findings(NAME, _findings_from, args.out)
        return
    levels = QUICK_LEVELS if args.quick else LEVELS
    seconds = QUICK_SECONDS if args.quick else SECONDS
    platform = simlab.load_platform("cpython")
    params = {"cpu_ms": CPU_MS, "io_ms": IO_MS, "calls": CALLS, "seconds": seconds}
    with Experiment(NAME, seed=SEED, quick=args.quick, params=params, out=args.out) as ex:
        for server in SERVERS:
            result = usl_study(
                server,
                levels=levels,
                cpu_ms=CPU_MS,
                io_ms=IO_MS,
                calls=CALLS,
                arch=Architecture(),
                platform=platform,
                duration=seconds,
                warmup=1.0,
                seed=SEED,
                out_dir=ex.folder / server,
            )
            for p in result["points"]:
                for source in ("measured", "simulated"):
                    ex.add(
                        server=server,
                        source=source,
                        concurrency=p["n"],
                        throughput_rps=p[source],
                        p50_ms=p[f"{source}_p50_ms"],
                    )
            print(
                f"{server}: measured sigma {result['measured_fit']['sigma']:.3f} "
                f"kappa {result['measured_fit']['kappa']:.5f}"
            )
        _plot(ex)
        ex.findings(findings(ex.results(), cpu_ms=CPU_MS))
    print(f"wrote {ex.target}")


def _plot(ex: Experiment) -> None:
    df = ex.table()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for (server, source), part in df.groupby(["server", "source"]):
        style = "s-" if source == "measured" else "o--"
        label = f"{server} ({source})"
        axes[0].plot(part["concurrency"], part["throughput_rps"], style, label=label)
        axes[1].plot(part["concurrency"], part["p50_ms"], style, label=label)
    for ax, label in zip(axes, ("throughput (req/s)", "median latency (ms)"), strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients (threads, for thread-per-connection)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    axes[1].set_yscale("log")
    fig.suptitle("SEDA's Figures 2 and 4 on this machine: closed loop, growing concurrency")
    ex.figure("collapse", fig)
    plt.close(fig)


def _series(df: pd.DataFrame, server: str, source: str) -> pd.DataFrame:
    part = df[(df["server"] == server) & (df["source"] == source)]
    return part.sort_values("concurrency").reset_index(drop=True)


def _fall(part: pd.DataFrame, fit: UslFit) -> tuple[bool, float, str]:
    """Whether throughput falls from its peak to the top level: by more than FALL and
    by more than the noise (1.96 sqrt 2 times the USL fit's residual sd, the spread of
    the difference of two readings); the drop, and the rule in words."""
    peak = float(part["throughput_rps"].max())
    last = float(part["throughput_rps"].iloc[-1])
    drop = 1 - last / peak
    noise = 1.96 * math.sqrt(2) * fit.residual_sd
    falls = drop > FALL and not within_noise(last, peak, fit.residual_sd)
    rule = (
        f"a fall being more than {FALL:.0%} and more than the noise, +-{noise:,.0f} req/s "
        "or 1.96 sqrt 2 times the fit's residual sd"
    )
    return falls, drop, rule


def _collapse(server: str, part: pd.DataFrame) -> str:
    """Whether throughput collapses: the USL's kappa CI and the fall from the peak
    (``_fall``) must both say so."""
    fit = fit_usl(part["concurrency"].tolist(), part["throughput_rps"].tolist())
    peak = part.loc[part["throughput_rps"].idxmax()]
    last = part.iloc[-1]
    falls, drop, rule = _fall(part, fit)
    k_lo, k_hi = fit.ci95["kappa"]
    retrograde = k_lo > 0
    where = (
        f"at the highest level, {peak['concurrency']:.0f} clients"
        if peak["concurrency"] == last["concurrency"]
        else f"with {peak['concurrency']:.0f} clients and is {drop:.0%} below that at "
        f"{last['concurrency']:.0f} clients"
    )
    head = (
        f"- **{server}**: measured throughput peaks at {peak['throughput_rps']:,.0f} req/s "
        f"{where} (median latency there {last['p50_ms']:,.1f} ms). USL: sigma "
        f"{fit.sigma:.3f}, kappa {fit.kappa:.2e} (95% CI {k_lo:.1e} to {k_hi:.1e})"
    )
    if retrograde and falls:
        verdict = (
            f": kappa's interval is above 0 and throughput falls from its peak ({rule}): "
            "a retrograde region, SEDA's collapse."
        )
    elif retrograde:
        verdict = (
            f": kappa's interval is above 0, but throughput does not fall from its peak "
            f"({rule}): the fit suggests a collapse that the readings do not show."
        )
    elif falls:
        verdict = (
            f": throughput falls from its peak ({rule}), but kappa's interval includes 0: "
            "a drop the USL does not confirm as retrograde."
        )
    elif drop <= 0:
        verdict = (
            ": kappa's interval includes 0 and the throughput is still at its highest at "
            "the top level, so no collapse is shown at these levels."
        )
    else:
        held = (
            ", held back by contention (sigma's interval excludes 0)"
            if fit.ci95["sigma"][0] > 0
            else ""
        )
        verdict = (
            f": kappa's interval includes 0 and the {drop:.0%} below the peak is not a fall "
            f"({rule}), so no collapse is shown at these levels; the throughput flattens "
            f"rather than falls{held}."
        )
    return head + verdict


def _latency(server: str, part: pd.DataFrame) -> tuple[str, Scaling | None]:
    """How the median grows once throughput is flat, against Little's law (R = N / X)."""
    peak = part["throughput_rps"].max()
    start = part.loc[part["throughput_rps"] >= (1 - FLAT) * peak, "concurrency"].min()
    flat = part[part["concurrency"] >= start]
    if len(flat) < 3:
        return f"**{server}**: fewer than 3 levels with flat throughput: no trend fitted.", None
    first, last = flat.iloc[0], flat.iloc[-1]
    change = compare(last["p50_ms"], first["p50_ms"], STEADY)
    moves = change.pick(
        more=f"grows {change.ratio:,.1f}-fold"
        if change.ratio >= 2
        else f"grows by {change.relative:.0%}",
        less=f"falls by {-change.relative:.0%}",
        same=f"stays within {STEADY:.0%}",
    )
    b = elasticity(flat["concurrency"], flat["p50_ms"])
    kind = scaling(b, LINEAR_TOL)
    shape = {
        "linear": "linearly with the clients, as Little's law gives for a flat throughput",
        "sub-linear": "slower than the clients: not the linear growth Little's law gives",
        "super-linear": "faster than the clients: more than Little's law gives",
        "undetermined": "in a way these levels cannot settle: linear growth is neither "
        "shown nor excluded",
    }[kind]
    text = (
        f"**{server}**: from N={first['concurrency']:.0f} (the first level within "
        f"{FLAT:.0%} of the peak throughput) to N={last['concurrency']:.0f} the measured "
        f"p50 {moves} ({first['p50_ms']:,.1f} to {last['p50_ms']:,.1f} ms); "
        f"p50 ~ N^{b.slope:.2f} ({b.ci()}; linear means within {1 - LINEAR_TOL:g} to "
        f"{1 + LINEAR_TOL:g}), so it grows {shape}."
    )
    little_ms = last["concurrency"] / last["throughput_rps"] * 1e3
    mean = compare(last["p50_ms"], little_ms, MEDIAN_MEAN)
    text += " " + mean.pick(
        more=f"Its median at N={last['concurrency']:.0f} is {mean.ratio:.1f}x Little's "
        f"mean N / X = {little_ms:,.0f} ms.",
        less=f"Its median at N={last['concurrency']:.0f} is {mean.ratio:.0%} of Little's "
        f"mean N / X = {little_ms:,.0f} ms: the latencies are skewed, some requests "
        "waiting far longer than the median. "
        + hypothesis(
            "the runnable threads are served unevenly, a few waiting through many "
            "scheduling rounds while most pass quickly",
            "the same levels recording p99 and the maximum per level (results.csv keeps "
            "only the median)",
        ),
        same=f"Its median at N={last['concurrency']:.0f} is within {MEDIAN_MEAN:.0%} of "
        f"Little's mean N / X = {little_ms:,.0f} ms.",
    )
    return text, kind


_ADVERB: dict[Scaling | None, str] = {
    "linear": "linearly",
    "sub-linear": "sub-linearly",
    "super-linear": "super-linearly",
    "undetermined": "in a way the levels cannot settle",
    None: "without a fitted trend (too few flat levels)",
}


def findings(df: pd.DataFrame, *, cpu_ms: float) -> str:
    """The findings, every direction and comparison chosen by a rule from the table."""
    lines = ["# Thread count and throughput collapse\n"]
    measured = {s: _series(df, s, "measured") for s in SERVERS}
    lines += [_collapse(server, measured[server]) for server in SERVERS]

    lines.append("\n## Latency once throughput is flat\n")
    kinds: dict[str, Scaling | None] = {}
    for server in SERVERS:
        text, kinds[server] = _latency(server, measured[server])
        lines.append(f"- {text}")
    lines.append(
        "\n"
        + {
            "linear": "The event-driven server's median growing linearly while its "
            "throughput stays flat is SEDA's Figure 4 shape.",
            "sub-linear": "The event-driven server's median does not grow linearly here, "
            "so SEDA's Figure 4 shape is not reproduced.",
            "super-linear": "The event-driven server's median does not grow linearly here, "
            "so SEDA's Figure 4 shape is not reproduced.",
            "undetermined": "Whether the event-driven server's median grows linearly, "
            "SEDA's Figure 4 shape, these levels cannot settle.",
            None: "Too few levels with flat throughput to judge SEDA's Figure 4 shape.",
        }[kinds.get("async")]
    )

    lines.append("\n## What limits the plateau\n")
    one_core = 1e3 / cpu_ms
    cores = machine_cores(df)
    peaks = {s: float(measured[s]["throughput_rps"].max()) for s in SERVERS}
    above = [s for s in SERVERS if compare(peaks[s], one_core, CORE_TOL).relation == "more"]
    listed = ", ".join(f"{s} {peaks[s]:,.0f}" for s in SERVERS)
    machine = f"{cores} cores ({cores * one_core:,.0f} req/s)" if cores else "several cores"
    if cores is not None and cores > 1 and not above:
        lines.append(
            f"Both servers level off at or below one core's worth of this work "
            f"(1000 / {cpu_ms:g} ms = {one_core:,.0f} req/s, within {CORE_TOL:.0%}; "
            f"peaks: {listed} req/s) although the machine has {machine}: the plateau is "
            "what one core could give, not what all of them could. "
            + hypothesis(
                "CPython's GIL serialises the threads' CPU, so one process runs Python on "
                "one core at a time",
                "the same levels with two server processes (experiments/multicore.py's "
                "layout): if the GIL is the limit, the plateau doubles",
            )
        )
    elif above:
        lines.append(
            f"{', '.join(above)} levels off above one core's worth of this work "
            f"(1000 / {cpu_ms:g} ms = {one_core:,.0f} req/s, by more than {CORE_TOL:.0%}; "
            f"peaks: {listed} req/s): its CPU work runs on more than one core."
        )
    else:
        lines.append(
            f"Peaks: {listed} req/s, against one core's worth of this work "
            f"(1000 / {cpu_ms:g} ms = {one_core:,.0f} req/s) on a one-core machine."
        )

    tpc, asy = measured["thread-per-connection"], measured["async"]
    top, peak = tpc.iloc[-1], tpc["throughput_rps"].max()
    falls, drop, rule = _fall(
        tpc, fit_usl(tpc["concurrency"].tolist(), tpc["throughput_rps"].tolist())
    )
    lines.append(
        f"\nWith {top['concurrency']:.0f} threads the threaded server serves "
        f"{top['throughput_rps']:,.0f} req/s against a peak of {peak:,.0f}, {drop:.0%} below: "
        + (
            f"a fall ({rule}), so many runnable threads cost throughput here, as SEDA measured."
            if falls
            else f"not a fall ({rule}), so the cost of many runnable threads that SEDA "
            "measured on 2001 hardware does not show at these levels here "
            "(experiments/gil_overload_collapse.py measures thread-per-connection past its "
            "capacity)."
        )
    )
    if top["concurrency"] in set(asy["concurrency"]):
        a = asy[asy["concurrency"] == top["concurrency"]].iloc[0]
        vs = compare(top["throughput_rps"], a["throughput_rps"], SERVERS_SAME)
        lines.append(
            f"At {top['concurrency']:.0f} clients thread-per-connection serves "
            + vs.pick(
                more=f"{vs.relative:.0%} more than async (",
                less=f"{-vs.relative:.0%} less than async (",
                same=f"as much as async (within {SERVERS_SAME:.0%}: ",
            )
            + f"{top['throughput_rps']:,.0f} against {a['throughput_rps']:,.0f} req/s)."
        )

    lines.append("\n## The simulation beside it\n")
    for server in SERVERS:
        sim = _series(df, server, "simulated")
        if sim.empty:
            continue
        agree = compare(sim["throughput_rps"].max(), peaks[server], AGREE)
        _, sim_kind = _latency(server, sim)
        lines.append(
            f"- **{server}**: the simulated peak, {sim['throughput_rps'].max():,.0f} req/s, "
            + agree.pick(
                more=f"is {agree.relative:.0%} above the measured one",
                less=f"is {-agree.relative:.0%} below the measured one",
                same=f"agrees with the measured one within {AGREE:.0%}",
            )
            + f"; its median grows {_ADVERB[sim_kind]}"
            + (
                ", as the measured one does."
                if sim_kind == kinds[server]
                else f", the measured one {_ADVERB[kinds[server]]}."
            )
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
