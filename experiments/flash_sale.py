"""A flash sale: what does a 20x spike do to each architecture, and how long until it recovers?

The notes open with a burst. Each of the six models serves a steady stream
of app users (one request per connection: 1 ms of CPU and one 50 ms
backend call) when the rate jumps twentyfold for ten seconds and comes
back down. Simulated on the calibrated profile: the backlog each builds,
its memory and threads at the peak, and how long after the spike it is
healthy again (the recovery rule of ``simlab.overload.timeline``). Then
measured for real, scaled down, for the thread-pool, reactor-pool and async
servers, beside their simulations; and once more for a thread-pool whose
waiting connections sit in a small kernel listen queue: a full queue drops
SYNs, which the client's kernel sends again after 1 s, then 3 s.

Run: ``python experiments/flash_sale.py [--quick]``.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

import simlab
from simlab.experiment import Experiment, arguments, rewrite_findings
from simlab.overload.rules import compare, recovery_text
from simlab.real.measure import MeasureOptions, measure
from simlab.registry import MODEL_NAMES
from simlab.scenario import build

NAME = "flash_sale"
SEED = 1
SPIKE = 20.0
CPU_MS, IO_MS, WORKERS = 1.0, 50.0, 32
SIM_BASE_RPS, SIM_CLIENTS = 50.0, 1_000_000
SIM_BEFORE_S, SIM_SPIKE_S, SIM_AFTER_S, SIM_WARMUP_S = 20.0, 10.0, 60.0, 5.0
SIM_REPLICATIONS = 3
# For real: the same shape, smaller, on two cores shared with the load generator.
REAL_BASE_RPS, REAL_CLIENTS, REAL_WORKERS = 20.0, 3_000, 8
REAL_BEFORE_S, REAL_SPIKE_S, REAL_AFTER_S, REAL_WARMUP_S = 10.0, 5.0, 30.0, 3.0
QUICK_SIM = (8.0, 4.0, 12.0, 2.0)
# --quick (the tests): each real run 1 + 2 + 2 + 3 = 8 s (the full runs' 48 s would
# cost the tests minutes); the findings name the spike's length, meta.json every part.
QUICK_REAL = (2.0, 2.0, 3.0, 1.0)
REAL_MODELS = ("thread-pool", "reactor-pool", "async")
QUICK_MODELS = ("thread-pool", "async")
# The thread-pool again, its waiting connections in a kernel listen queue of
# this many: overflowing SYNs are dropped and sent again by the client's kernel.
SYN_BACKLOG, SYN_RETRIES = 8, 6
KEPT_UP = 0.95  # goodput over the offered rate before the spike, for "keeps up"
GREW = 0.1  # memory at the peak more than 10% above its level before: it grew


def options(base: float, shape: tuple[float, float, float, float], **extra: Any) -> dict:
    before, during, after, warmup = shape
    return {
        "rate": f"{base:g}/s for {before:g}s, {base * SPIKE:g}/s for {during:g}s, "
        f"{base:g}/s for {after:g}s",
        "requests_per_connection": 1,
        "cpu_ms": CPU_MS,
        "io_ms": IO_MS,
        "warmup": warmup,
        "seed": SEED,
        **extra,
    }


def record(ex: Experiment, source: str, model: str, variant: str, summary: Any) -> list[dict]:
    o = summary.overload
    windows = [w.to_dict() for w in summary.timeline]
    rec = o.recovery
    end = summary.warmup_s + summary.duration_s
    frame = pd.DataFrame(windows)
    first_change = summary.workload.schedule.times[1]
    before = frame[(frame["t_s"] >= summary.warmup_s) & (frame["t_s"] + 1 <= first_change)]
    ex.add(
        source=source,
        model=model,
        variant=variant,
        recovered_s=rec.recovered_s,
        after_s=end - rec.spike_end_s,
        at_server_peak=float(frame["at_server"].max()),
        memory_peak_mib=float(frame["memory_mib"].max()),
        memory_before_mib=float(frame.loc[frame["t_s"] + 1 <= first_change, "memory_mib"].mean()),
        threads_peak=float(frame["threads"].max()),
        kept_up_before=bool(before["goodput_rps"].sum() >= KEPT_UP * before["offered_rps"].sum()),
        p99_ms=summary.latency_ms.p99,
        throughput_rps=summary.throughput_rps,
        dropped=summary.dropped,
        stable=summary.stable,
        engine=summary.engine,
    )
    verdict = recovery_text(rec.recovered_s, end - rec.spike_end_s)
    print(
        f"{source:9s} {model:22s} {variant:12s} {verdict}"
        f"; {frame['at_server'].max():,.0f} at the server at the peak",
        flush=True,
    )
    return [{"source": source, "model": model, "variant": variant, **w} for w in windows]


def simulated(ex: Experiment, quick: bool) -> list[dict]:
    shape = QUICK_SIM if quick else (SIM_BEFORE_S, SIM_SPIKE_S, SIM_AFTER_S, SIM_WARMUP_S)
    out = []
    for model in MODEL_NAMES:
        s = build(
            options(
                SIM_BASE_RPS, shape, connections=SIM_CLIENTS, workers=WORKERS,
                replications=1 if quick else SIM_REPLICATIONS,
            )
        )  # fmt: skip
        r = simlab.simulate(model, s.workload, s.platform, s.architecture, tables=False,
                            **s.run.kwargs())  # fmt: skip
        out += record(ex, "simulated", model, "full scale", r.summary)
    return out


def real_shape(quick: bool) -> tuple[float, float, float, float]:
    """The real runs' seconds: before, spike, after, warm-up."""
    return QUICK_REAL if quick else (REAL_BEFORE_S, REAL_SPIKE_S, REAL_AFTER_S, REAL_WARMUP_S)


def real(ex: Experiment, quick: bool) -> list[dict]:
    shape = real_shape(quick)
    runs: list[tuple[str, str, dict]] = [
        (m, "small", {}) for m in (QUICK_MODELS if quick else REAL_MODELS)
    ]
    runs.append(("thread-pool", "syn drops", {"backlog": SYN_BACKLOG, "syn_retries": SYN_RETRIES}))
    out = []
    for model, variant, extra in runs:
        s = build(
            options(
                REAL_BASE_RPS, shape, connections=REAL_CLIENTS, workers=REAL_WORKERS,
                replications=3, **extra,
            )
        )  # fmt: skip
        m = measure(
            MeasureOptions(
                target=model,
                workload=s.workload,
                architecture=s.architecture,
                duration=s.run.duration,
                warmup=s.run.warmup,
                seed=SEED,
                save=False,
                timeline=True,
            )
        ).summary
        out += record(ex, "measured", model, variant, m)
        sim = simlab.simulate(model, s.workload, s.platform, s.architecture, tables=False,
                              **s.run.kwargs())  # fmt: skip
        out += record(ex, "simulated", model, variant, sim.summary)
    return out


def plots(ex: Experiment, timeline: pd.DataFrame) -> None:
    full = timeline[timeline["variant"] == "full scale"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for model, part in full.groupby("model", sort=False):
        axes[0].plot(part["t_s"], part["at_server"], label=model)
        axes[1].plot(part["t_s"], part["memory_mib"], label=model)
        axes[2].plot(part["t_s"], part["p99_ms"], label=model)
    axes[0].set_ylabel("requests at the server")
    axes[1].set_ylabel("resident memory (MiB)")
    axes[2].set_ylabel("p99 of the answers each second (ms)")
    for ax in axes:
        ax.set_xlabel("time (s)")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[0].set_title(f"A x{SPIKE:g} spike, simulated at full scale")
    ex.figure("flash_sale", fig)
    plt.close(fig)
    small = timeline[timeline["variant"] != "full scale"]
    runs = list(dict.fromkeys(zip(small["model"], small["variant"], strict=True)))
    fig, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 4), squeeze=False)
    for ax, (model, variant) in zip(axes[0], runs, strict=True):
        for source, style in (("measured", "-"), ("simulated", "--")):
            part = small[(small["model"] == model) & (small["variant"] == variant)]
            part = part[part["source"] == source]
            ax.plot(part["t_s"], part["at_server"], style, label=source)
        ax.set_title(f"{model} ({variant})", fontsize=9)
        ax.set_xlabel("time (s)")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("requests at the server")
    axes[0][0].legend()
    ex.figure("real_vs_simulated", fig)
    plt.close(fig)


def _findings_from(df: pd.DataFrame, params: dict[str, Any]) -> str:
    """The findings of a saved run, with the parameters it recorded in meta.json."""
    return findings(
        df,
        spike=float(params["spike"]),
        sim_base_rps=float(params["sim_base_rps"]),
        real_base_rps=float(params["real_base_rps"]),
        real_spike_s=float(params["real_spike_s"]),
    )


def findings(
    df: pd.DataFrame, *, spike: float, sim_base_rps: float, real_base_rps: float,
    real_spike_s: float,
) -> str:  # fmt: skip
    """The findings, every verdict from the table: recovery (``recovered_s``, NaN
    when not recovered), memory growth (``GREW``), keeping up before the spike."""
    full = df[df["variant"] == "full scale"].set_index("model")
    lines = [
        f"# Flash sale: a x{spike:g} spike\n",
        f"Simulated at full scale ({sim_base_rps:g} req/s of app users, each request "
        f"{CPU_MS:g} ms of CPU and one {IO_MS:g} ms backend call on a new connection; "
        f"{WORKERS} workers where a model has a pool), a {sim_base_rps * spike:g} req/s spike:\n",
        "| model | keeps up before | at the server, peak | memory peak (MiB) | threads | "
        "after the spike |",
        "|---|---|---|---|---|---|",
    ]
    for model, r in full.iterrows():
        rec = None if pd.isna(r["recovered_s"]) else float(r["recovered_s"])
        lines.append(
            f"| {model} | {'yes' if _true(r['kept_up_before']) else 'no'} | "
            f"{r['at_server_peak']:,.0f} | {r['memory_peak_mib']:,.0f} | "
            f"{r['threads_peak']:,.0f} | {recovery_text(rec, float(r['after_s']))} |"
        )
    done = full[full["recovered_s"].notna()]
    if len(done) > 1:
        fastest = done["recovered_s"].idxmin()
        slowest = done["recovered_s"].idxmax()
        if done.loc[fastest, "recovered_s"] == done.loc[slowest, "recovered_s"]:
            lines.append(
                f"\nEvery model that recovered was healthy again "
                f"{done.loc[fastest, 'recovered_s']:g} s after the spike."
            )
        else:
            lines.append(
                f"\nOf those that recovered, {fastest} was healthy again soonest "
                f"({done.loc[fastest, 'recovered_s']:g} s after the spike) and {slowest} last "
                f"({done.loc[slowest, 'recovered_s']:g} s)."
            )
    stuck = full[full["recovered_s"].isna()].index.tolist()
    lines.append(
        f"Not recovered by the end of the run: {', '.join(stuck)}."
        if stuck
        else "Every model recovered before the end of the run."
    )
    never = [m for m, r in full.iterrows() if not _true(r["kept_up_before"])]
    if never:
        lines.append(f"Already behind before the spike (goodput under {KEPT_UP:.0%} of the "
                     f"offered rate): {', '.join(never)}.")  # fmt: skip
    grew = [
        m for m, r in full.iterrows()
        if compare(r["memory_peak_mib"], r["memory_before_mib"], GREW) == "more"
    ]  # fmt: skip
    if grew:
        growth = [
            f"{m} (x{full.loc[m, 'memory_peak_mib'] / full.loc[m, 'memory_before_mib']:.1f})"
            for m in grew
        ]
        lines.append(
            f"Memory grew by more than {GREW:.0%} during the spike for " + ", ".join(growth) + "."
        )
    else:
        lines.append(f"No model's memory grew by more than {GREW:.0%} during the spike.")
    small = df[df["variant"] != "full scale"]
    if not small.empty:
        lines.append(
            f"\nFor real ({real_base_rps:g} req/s, x{spike:g} for {real_spike_s:g} s, "
            f"{REAL_WORKERS} workers), measured beside its simulation:\n"
        )
        lines.append(
            "| model | run | recovery, measured | simulated | "
            "peak at the server, measured | simulated |"
        )
        lines.append("|---|---|---|---|---|---|")
        for (model, variant), part in small.groupby(["model", "variant"], sort=False):
            m = part[part["source"] == "measured"].iloc[0]
            s = part[part["source"] == "simulated"].iloc[0]
            lines.append(
                f"| {model} | {variant} | {_rec(m)} | {_rec(s)} | {m['at_server_peak']:,.0f} | "
                f"{s['at_server_peak']:,.0f} |"
            )
        lines += _agreement(small)
        lines += _syn_lines(small)
    return "\n".join(lines)


def _true(x: Any) -> bool:
    """A boolean cell, as written or as read back from the CSV."""
    return str(x).strip().lower() in ("true", "1", "1.0")


def _agreement(small: pd.DataFrame) -> list[str]:
    """Whether the simulation said the same as the measurement: recovered or not."""
    same, differ = [], []
    for (model, variant), part in small.groupby(["model", "variant"], sort=False):
        m = part[part["source"] == "measured"].iloc[0]
        s = part[part["source"] == "simulated"].iloc[0]
        (same if pd.isna(m["recovered_s"]) == pd.isna(s["recovered_s"]) else differ).append(
            f"{model} ({variant})"
        )
    out = []
    if same:
        out.append(f"\nThe simulation agrees with the measurement on whether {', '.join(same)} "
                   "recovered.")  # fmt: skip
    if differ:
        out.append(f"\nThe simulation and the measurement disagree on whether "
                   f"{', '.join(differ)} recovered.")  # fmt: skip
    return out


def _syn_lines(small: pd.DataFrame) -> list[str]:
    """What the small listen queue changed, against the same server without it."""
    out = []
    for source in ("measured", "simulated"):
        pick = small[(small["model"] == "thread-pool") & (small["source"] == source)]
        syn, plain = pick[pick["variant"] == "syn drops"], pick[pick["variant"] == "small"]
        if syn.empty or plain.empty:
            continue
        a, b = syn.iloc[0], plain.iloc[0]
        if a["p99_ms"] > 1000 > b["p99_ms"]:
            out.append(
                f"\n{source.capitalize()}: with a listen queue of {SYN_BACKLOG} the p99 is "
                f"{a['p99_ms']:,.0f} ms against {b['p99_ms']:,.0f} ms without it: more than 1% "
                "of the requests waited over a second, the retransmission timeout of a SYN "
                "dropped by a full queue."
            )
        else:
            out.append(
                f"\n{source.capitalize()}: with a listen queue of {SYN_BACKLOG} the p99 is "
                f"{a['p99_ms']:,.0f} ms, against {b['p99_ms']:,.0f} ms without it."
            )
    return out


def _rec(r: pd.Series) -> str:
    if pd.isna(r["recovered_s"]):
        return f"not within {r['after_s']:g} s"
    return f"{r['recovered_s']:g} s"


def main() -> None:
    args = arguments(__doc__ or "")
    if args.findings_only:
        rewrite_findings(NAME, _findings_from, args.out)
        return
    before, real_spike_s, after, warmup = real_shape(args.quick)
    params = {
        "spike": SPIKE,
        "sim_base_rps": SIM_BASE_RPS,
        "real_base_rps": REAL_BASE_RPS,
        "real_spike_s": real_spike_s,
        "real_before_s": before,
        "real_after_s": after,
        "real_warmup_s": warmup,
    }
    with Experiment(NAME, seed=SEED, quick=args.quick, params=params, out=args.out) as ex:
        timeline = simulated(ex, args.quick) + real(ex, args.quick)
        frame = pd.DataFrame(timeline)
        frame.round(3).to_csv(ex.folder / "timeline.csv", index=False)
        plots(ex, frame)
        ex.findings(_findings_from(ex.results(), params))
    print(f"wrote {ex.target}")


if __name__ == "__main__":
    main()
