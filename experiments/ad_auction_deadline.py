"""The ad auction: how many of the 60 bids arrive within a deadline, and what does each way cost?

The notes' ad service fills 3 slots from 20 vendors: 60 calls per request,
at 1,000 requests/s. A real auction does not wait for the slowest vendor:
it takes the bids it has by a deadline. With a heavy-tailed call latency
(lognormal, mean 100 ms, cv 1), the share of bids received depends on how
the calls are made: one after another, all at once, or all at once with
hedging (a call still unanswered at its 95th percentile is sent again, and
the first answer counts). Simulated at full scale for deadlines from 100 ms
to 1 s, with the worker threads (reactor-pool) or tasks (async) each needs
(Little's law, read off the simulation); measured for real, scaled down,
with simlab's async server (``deadline_ms``, ``hedge_ms`` in the query,
the bids reported back in ``x-bids``).

Run: ``python experiments/ad_auction_deadline.py [--quick]``.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

import simlab
from simlab.experiment import Experiment, arguments, rewrite_findings
from simlab.overload.rules import compare
from simlab.real.measure import MeasureOptions, measure
from simlab.scenario import build

NAME = "ad_auction_deadline"
SEED = 1
CALLS, IO_MS, IO_CV, CPU_MS = 60, 100.0, 1.0, 1.0
RATE_RPS, CLIENTS = 1000.0, 10_000_000
DEADLINES_MS = (100.0, 200.0, 500.0, 1000.0)
MODES = ("sequential", "parallel", "hedged")
# The deadline sweep runs on a reactor-pool (its workers are the question);
# one async loop is simulated once, at one deadline, beside it.
SWEEP_MODEL, LOOP_MODEL, LOOP_MODE, LOOP_DEADLINE_MS = "reactor-pool", "async", "parallel", 500.0
HEDGE = "p95"
SIM_DURATION_S, SIM_WARMUP_S = 2.0, 1.0
# Enough workers that none waits for one: the rate x the deadline, and a margin.
WORKER_MARGIN = 1.5
REAL_RATE_RPS, REAL_CLIENTS, REAL_DURATION_S, REAL_WARMUP_S = 10.0, 2_000, 8.0, 2.0
REAL_DEADLINES_MS = (200.0, 500.0, 1000.0)
QUICK_DEADLINES_MS, QUICK_REAL_DEADLINES_MS = (200.0, 1000.0), (500.0,)
QUICK_MODES = ("sequential", "parallel")
# --quick (the tests): each real run 1 + 3 s (30 requests, 1,800 calls at 10/s).
QUICK_REAL_DURATION_S, QUICK_REAL_WARMUP_S = 3.0, 1.0
SAME = 0.05  # shares closer than this (relative) count as the same
AGREE = 0.10  # a simulated share within 10% of the measured one agrees
SLOWER = 0.25  # p99s within 25% of each other are close


def options(mode: str, deadline_ms: float, rate: float, clients: int, **extra: Any) -> dict:
    out: dict[str, Any] = {
        "connections": clients,
        "rate": rate,
        "requests_per_connection": 1,
        "cpu_ms": CPU_MS,
        "io_ms": IO_MS,
        "io_dist": f"lognormal:{IO_CV:g}",
        "calls": CALLS,
        "fanout": "sequential" if mode == "sequential" else "parallel",
        "fanout_deadline_ms": deadline_ms,
        "seed": SEED,
        **extra,
    }
    if mode == "hedged":
        out["hedge_ms"] = HEDGE
    return out


def simulated(ex: Experiment, deadlines: tuple[float, ...], modes: tuple[str, ...]) -> None:
    platform = simlab.load_platform("jvm").with_(cores=None)  # threads, not CPU, are the question
    cases = [(SWEEP_MODEL, mode, d) for mode in modes for d in deadlines]
    cases.append((LOOP_MODEL, LOOP_MODE, LOOP_DEADLINE_MS))
    for model, mode, deadline in cases:
        workers = int(RATE_RPS * deadline / 1e3 * WORKER_MARGIN) + 50
        s = build(
            options(
                mode, deadline, RATE_RPS, CLIENTS, workers=workers,
                duration=SIM_DURATION_S, warmup=SIM_WARMUP_S, replications=1,
            )
        )  # fmt: skip
        r = simlab.simulate(model, s.workload, platform, s.architecture, tables=False,
                            **s.run.kwargs())  # fmt: skip
        su = r.summary
        o = su.overload
        assert o is not None
        ex.add(
            source="simulated",
            model=model,
            mode=mode,
            deadline_ms=deadline,
            rate_rps=RATE_RPS,
            bids_share=o.bids_share,
            p50_ms=su.latency_ms.p50,
            p99_ms=su.latency_ms.p99,
            busy_threads=su.threads.busy_mean,
            in_flight=su.in_flight.mean,
            threads=su.threads.peak,
            hedged_per_request=o.hedged_calls_per_request,
        )
        print(f"simulated {model:12s} {mode:10s} {deadline:6.0f} ms: bids "
              f"{o.bids_share:.1%}, p99 {su.latency_ms.p99:.0f} ms", flush=True)  # fmt: skip


def real(
    ex: Experiment,
    deadlines: tuple[float, ...],
    modes: tuple[str, ...],
    duration: float = REAL_DURATION_S,
    warmup: float = REAL_WARMUP_S,
) -> None:
    for mode in modes:
        for deadline in deadlines:
            s = build(options(mode, deadline, REAL_RATE_RPS, REAL_CLIENTS))
            m = measure(
                MeasureOptions(
                    target="async",
                    workload=s.workload,
                    architecture=s.architecture,
                    duration=duration,
                    warmup=warmup,
                    seed=SEED,
                    save=False,
                )
            ).summary
            o = m.overload
            ex.add(
                source="measured",
                model="async",
                mode=mode,
                deadline_ms=deadline,
                rate_rps=REAL_RATE_RPS,
                bids_share=o.bids_share if o is not None else None,
                p50_ms=m.latency_ms.p50,
                p99_ms=m.latency_ms.p99,
                busy_threads=m.threads.busy_mean,
                in_flight=m.in_flight.mean,
                threads=m.threads.peak,
                hedged_per_request=None,
            )
            sim = simlab.simulate(
                "async", s.workload, s.platform, s.architecture, duration=duration * 3,
                warmup=warmup, seed=SEED, replications=2, tables=False,
            ).summary  # fmt: skip
            assert sim.overload is not None
            ex.add(
                source="simulated (small)",
                model="async",
                mode=mode,
                deadline_ms=deadline,
                rate_rps=REAL_RATE_RPS,
                bids_share=sim.overload.bids_share,
                p50_ms=sim.latency_ms.p50,
                p99_ms=sim.latency_ms.p99,
                busy_threads=sim.threads.busy_mean,
                in_flight=sim.in_flight.mean,
                threads=sim.threads.peak,
                hedged_per_request=sim.overload.hedged_calls_per_request,
            )
            print(f"measured  async {mode:10s} {deadline:6.0f} ms: bids "
                  f"{(o.bids_share if o else float('nan')):.1%} (simulated "
                  f"{sim.overload.bids_share:.1%})", flush=True)  # fmt: skip


def plots(ex: Experiment) -> None:
    df = ex.table()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    full = df[(df["source"] == "simulated") & (df["model"] == SWEEP_MODEL)]
    for mode, part in full.groupby("mode", sort=False):
        axes[0].plot(part["deadline_ms"], part["bids_share"] * 100, "o-", label=f"{mode} (sim)")
        axes[1].plot(part["deadline_ms"], part["busy_threads"], "o-", label=f"{mode}")
    small = df[df["source"] == "measured"]
    for mode, part in small.groupby("mode", sort=False):
        axes[0].plot(part["deadline_ms"], part["bids_share"] * 100, "s--", label=f"{mode} (real)")
    axes[0].set_ylabel(f"bids received of {CALLS} (%)")
    axes[1].set_ylabel(f"{SWEEP_MODEL} workers busy at {RATE_RPS:g} req/s (mean)")
    for ax in axes:
        ax.set_xlabel("deadline (ms)")
        ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    ex.figure("auction", fig)
    plt.close(fig)


def _findings_from(df: pd.DataFrame, params: dict[str, Any]) -> str:
    """The findings of a saved run, with the parameters it recorded in meta.json."""
    return findings(df, rate=float(params["rate"]), real_rate=float(params["real_rate"]))


def findings(df: pd.DataFrame, *, rate: float, real_rate: float) -> str:
    """The findings, every verdict from the table (``compare`` with ``SAME``)."""
    full = df[df["source"] == "simulated"]
    rp = full[full["model"] == SWEEP_MODEL].set_index(["mode", "deadline_ms"])
    asy = full[full["model"] == LOOP_MODEL]
    modes = list(dict.fromkeys(rp.index.get_level_values("mode")))
    deadlines = sorted(set(rp.index.get_level_values("deadline_ms")))
    lines = [
        "# The ad auction: bids within a deadline\n",
        f"{CALLS} calls per request, each lognormal (mean {IO_MS:g} ms, cv {IO_CV:g}), "
        f"{rate:g} requests/s, simulated; the request takes the bids it has at the "
        "deadline. Hedged: parallel, and a call still unanswered at its 95th percentile is "
        "sent again.\n",
        "| deadline | " + " | ".join(f"{m}: bids" for m in modes)
        + " | " + " | ".join(f"{m}: {SWEEP_MODEL} workers busy" for m in modes) + " |",
        "|---|" + "---|" * (2 * len(modes)),
    ]  # fmt: skip
    for d in deadlines:
        bids = " | ".join(f"{rp.loc[(m, d), 'bids_share']:.1%}" for m in modes)
        busy = " | ".join(f"{rp.loc[(m, d), 'busy_threads']:,.0f}" for m in modes)
        lines.append(f"| {d:g} ms | {bids} | {busy} |")
    last = deadlines[-1]
    if "sequential" in modes and "parallel" in modes:
        s, p = rp.loc[("sequential", last), "bids_share"], rp.loc[("parallel", last), "bids_share"]
        lines.append(
            f"\nAt {last:g} ms, calls made one after another collect {s:.1%} of the bids and "
            f"calls made at once {p:.1%}: "
            + {"more": "parallel wins", "less": "sequential wins", "same": "a tie"}[
                compare(p, s, SAME)
            ]
            + f" (within {SAME:.0%} counts as a tie)."
        )
    if "hedged" in modes and "parallel" in modes:
        for d in dict.fromkeys((deadlines[0], last)):
            h, p = rp.loc[("hedged", d), "bids_share"], rp.loc[("parallel", d), "bids_share"]
            extra = rp.loc[("hedged", d), "hedged_per_request"]
            word = {"more": "adds bids", "less": "loses bids", "same": "changes little"}[
                compare(h, p, SAME)
            ]
            cost = f", for {extra:.1f} extra calls per request." if pd.notna(extra) else "."
            lines.append(f"At {d:g} ms hedging {word} ({h:.1%} against {p:.1%}){cost}")
        hb = rp.loc[("hedged", last), "busy_threads"]
        pb = rp.loc[("parallel", last), "busy_threads"]
        held = {
            "more": "more workers busy than parallel ones",
            "less": "fewer workers busy than parallel ones",
            "same": f"as many workers busy as parallel ones (within {SAME:.0%})",
        }[compare(hb, pb, SAME)]
        lines.append(
            f"At {last:g} ms hedged requests keep {held} on the {SWEEP_MODEL} "
            f"({hb:,.0f} against {pb:,.0f}): a request ends at its last answer."
        )
    busy = rp["busy_threads"]
    lines.append(
        f"\nWorkers busy ({SWEEP_MODEL}) range from {busy.min():,.0f} to {busy.max():,.0f}: "
        "a worker is held until the deadline or the last answer, whichever comes first "
        f"(Little: {rate:g}/s x that time)."
    )
    for _, a in asy.iterrows():
        key = (a["mode"], a["deadline_ms"])
        if key not in rp.index:
            continue
        b = rp.loc[key]
        word = {"more": "above", "less": "below", "same": "close to"}[
            compare(a["p99_ms"], b["p99_ms"], SLOWER)
        ]
        lines.append(
            f"One {LOOP_MODEL} loop ({a['threads']:,.0f} thread(s)), {a['mode']} with a "
            f"{a['deadline_ms']:g} ms deadline, collects {a['bids_share']:.1%} of the bids; its "
            f"p99 of {a['p99_ms']:,.0f} ms is {word} the {SWEEP_MODEL}'s {b['p99_ms']:,.0f} ms "
            f"(within {SLOWER:.0%} counts as close)."
        )
    small = df[df["source"] == "measured"]
    sim_small = df[df["source"] == "simulated (small)"].set_index(["mode", "deadline_ms"])
    if not small.empty:
        lines.append(f"\nMeasured for real (async, {real_rate:g} req/s), beside its simulation:\n")
        lines.append(
            "| mode | deadline | bids, measured | bids, simulated | p99 measured | simulated |"
        )
        lines.append("|---|---|---|---|---|---|")
        agree = []
        for _, r in small.iterrows():
            s = sim_small.loc[(r["mode"], r["deadline_ms"])]
            lines.append(
                f"| {r['mode']} | {r['deadline_ms']:g} ms | {r['bids_share']:.1%} | "
                f"{s['bids_share']:.1%} | {r['p99_ms']:,.0f} ms | {s['p99_ms']:,.0f} ms |"
            )
            agree.append(compare(s["bids_share"], r["bids_share"], AGREE) == "same")
        lines.append(
            f"\nThe simulated share of bids is within {AGREE:.0%} of the measured one in "
            f"{sum(agree)} of {len(agree)} cases."
        )
    return "\n".join(lines)


def main() -> None:
    args = arguments(__doc__ or "")
    if args.findings_only:
        rewrite_findings(NAME, _findings_from, args.out)
        return
    quick = args.quick
    deadlines = QUICK_DEADLINES_MS if quick else DEADLINES_MS
    modes = QUICK_MODES if quick else MODES
    params = {
        "calls": CALLS,
        "io_ms": IO_MS,
        "io_cv": IO_CV,
        "rate": RATE_RPS,
        "real_rate": REAL_RATE_RPS,
        "real_duration_s": QUICK_REAL_DURATION_S if quick else REAL_DURATION_S,
        "real_warmup_s": QUICK_REAL_WARMUP_S if quick else REAL_WARMUP_S,
        "hedge": HEDGE,
    }
    with Experiment(NAME, seed=SEED, quick=quick, params=params, out=args.out) as ex:
        simulated(ex, deadlines, modes)
        real_deadlines = QUICK_REAL_DEADLINES_MS if quick else REAL_DEADLINES_MS
        real(ex, real_deadlines, modes, params["real_duration_s"], params["real_warmup_s"])
        plots(ex)
        ex.findings(_findings_from(ex.results(), params))
    print(f"wrote {ex.target}")


if __name__ == "__main__":
    main()
