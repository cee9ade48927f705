"""How wrong is a closed-loop latency measurement when the server stalls?

A real ``async`` server is frozen (SIGSTOP, then SIGCONT) for STALL_S seconds
in the middle of a RUN_S-second run, and measured twice: by a closed-loop
generator (each connection sends its next request when the previous answer
arrives, like wrk and most benchmarks) and by simlab's open-loop generator,
which sends on a Poisson schedule and measures every request from its
*intended* send time (the coordinated-omission correction of wrk2). Runs
without a stall give the baselines. The simple prediction: an open-loop
client at a steady rate sees a share STALL_S / RUN_S of its requests
delayed, by 0 to STALL_S seconds, so its p99 is about STALL_S - 0.01 RUN_S
when that share exceeds 1%.

Run: ``python experiments/coordinated_omission.py [--quick]``.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from simlab.experiment import Experiment, arguments, rewrite_findings
from simlab.findings import compare
from simlab.real import loadgen
from simlab.real.lock import exclusive
from simlab.real.processes import Managed, port_is_free, python

NAME = "coordinated_omission"
SEED = 1
RUN_S, STALL_S, STALL_AT_S = 20.0, 1.0, 8.0
# --quick (the tests): 3 s runs, the stall 1 s into the window: a sixth of the open
# loop's requests still wait on it, far past its p99; the closed loop's few do not.
QUICK_RUN_S, QUICK_STALL_S, QUICK_STALL_AT_S = 3.0, 0.5, 1.0
WARMUP_S = 1.0
OPEN_RATE = 1000.0  # requests/s, open loop
OPEN_CONNECTIONS = 400
CLOSED_CONNECTIONS = 10
QUERY = "cpu_ms=0.2&io_ms=2&calls=1"
PERCENTILES = (50.0, 90.0, 99.0, 99.9, 100.0)
# The findings' rules:
SHOWS = 2.0  # a percentile shows the stall at >= 2x the same generator's without it
PAUSE = 0.5  # a generator fell behind if it lost >= half a stall's worth of throughput
PREDICT_TOL = 0.25  # the open-loop p99 agrees with the prediction within 25%
SAME = 0.10  # two p99s within 10% are the same


def _stall(pgid: int, at: float, seconds: float, done: threading.Event) -> threading.Thread:
    """Freeze the server's process group ``at`` seconds from now for ``seconds``."""

    def run() -> None:
        if done.wait(at):
            return
        os.killpg(pgid, signal.SIGSTOP)
        try:
            done.wait(seconds)
        finally:
            os.killpg(pgid, signal.SIGCONT)  # always thawed, whatever happens

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def one_run(mode: str, stalled: bool, run_s: float, stall_s: float, stall_at: float) -> dict:
    # One real run at a time on the machine (simlab.real.lock), as simlab measure does.
    with (
        exclusive(),
        Managed([python(), "-m", "simlab.real.backend"], name="backend") as backend,
        Managed(
            [
                python(),
                "-m",
                "simlab.real.runner",
                "async",
                "--backend-port",
                str(backend.port),
                "--uvloop",
            ],
            name="async",
        ) as server,
    ):
        spec = loadgen.LoadSpec(
            host="127.0.0.1",
            port=server.port,
            connections=OPEN_CONNECTIONS if mode == "open" else CLOSED_CONNECTIONS,
            queries=(QUERY,),
            rate=OPEN_RATE if mode == "open" else None,
            think_s=None if mode == "open" else 0.0,
            warmup=WARMUP_S,
            duration=run_s,
            timeout=30.0,
            seed=SEED,
        )
        done = threading.Event()
        staller = None
        if stalled:
            assert server.proc.pid > 1
            staller = _stall(server.proc.pid, WARMUP_S + stall_at, stall_s, done)
        try:
            report = loadgen.run(spec)
        finally:
            done.set()
            if staller is not None:
                staller.join(timeout=stall_s + 5)
        port = server.port
    assert port_is_free(port)
    hist = loadgen.decode(report["latency_hist"])
    out = {f"p{p:g}_ms": hist.get_value_at_percentile(p) / 1000 for p in PERCENTILES}
    out["measured"] = report["measured"]
    out["completed"] = report["completed_in_window"]
    out["throughput_rps"] = report["completed_in_window"] / run_s
    return out


def _findings_from(df: pd.DataFrame, params: dict[str, Any]) -> str:
    """The findings of a saved run, with the parameters it recorded in meta.json."""
    return findings(
        df,
        run_s=params["run_s"],
        stall_s=params["stall_s"],
        closed_connections=params["closed_connections"],
        open_rate=params["open_rate"],
    )


def main() -> None:
    args = arguments(__doc__ or "")
    if args.findings_only:
        rewrite_findings(NAME, _findings_from, args.out)
        return
    run_s = QUICK_RUN_S if args.quick else RUN_S
    stall_s = QUICK_STALL_S if args.quick else STALL_S
    stall_at = QUICK_STALL_AT_S if args.quick else STALL_AT_S
    params = {
        "run_s": run_s,
        "stall_s": stall_s,
        "open_rate": OPEN_RATE,
        "query": QUERY,
        "closed_connections": CLOSED_CONNECTIONS,
    }
    with Experiment(NAME, seed=SEED, quick=args.quick, params=params, out=args.out) as ex:
        for mode in ("closed", "open"):
            for stalled in (False, True):
                row = one_run(mode, stalled, run_s, stall_s, stall_at)
                ex.add(generator=mode, stalled=stalled, **row)
                print(f"{mode:6s} stalled={stalled!s:5s} p99 {row['p99_ms']:8.1f} ms")
        _plot(ex, stall_s)
        ex.findings(
            findings(
                ex.results(),
                run_s=run_s,
                stall_s=stall_s,
                closed_connections=CLOSED_CONNECTIONS,
                open_rate=OPEN_RATE,
            )
        )
    print(f"wrote {ex.target}")


def _predicted_p99_ms(run_s: float, stall_s: float) -> float:
    share = stall_s / run_s
    return max(0.0, stall_s - 0.01 * run_s) * 1e3 if share > 0.01 else 0.0


def _plot(ex: Experiment, stall_s: float) -> None:
    df = ex.table()
    fig, ax = plt.subplots(figsize=(9, 5))
    xs = np.arange(len(PERCENTILES))
    width = 0.2
    for k, ((gen, stalled), part) in enumerate(df.groupby(["generator", "stalled"])):
        values = [float(part[f"p{p:g}_ms"].iloc[0]) for p in PERCENTILES]
        label = f"{gen} loop, {'stalled' if stalled else 'no stall'}"
        ax.bar(xs + (k - 1.5) * width, values, width, label=label)
    ax.set_xticks(xs, [f"p{p:g}" for p in PERCENTILES])
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms)")
    ax.axhline(stall_s * 1e3, color="grey", ls=":", label=f"the stall ({stall_s:g} s)")
    ax.legend(fontsize=8)
    ax.set_title("One stall, two ways of measuring it")
    ex.figure("percentiles", fig)
    plt.close(fig)


def _shows(run: pd.Series, base: pd.Series) -> list[str]:
    """The percentiles in which the stall shows: at least SHOWS times the unstalled run's."""
    return [f"p{p:g}" for p in PERCENTILES if run[f"p{p:g}_ms"] >= SHOWS * base[f"p{p:g}_ms"]]


def _listed(names: list[str]) -> str:
    if not names:
        return "none of its percentiles show the stall"
    if names == ["p100"]:
        return "only its max shows the stall"
    return "the stall shows in " + ", ".join(names)


def _paused(run: pd.Series, base: pd.Series, stall_s: float) -> tuple[float, str]:
    """How many seconds of its unstalled throughput a generator lost, and what that says."""
    lost_s = (base["completed"] - run["completed"]) / base["throughput_rps"]
    verdict = (
        "it fell behind while the server was frozen"
        if lost_s >= PAUSE * stall_s
        else "it kept pace through the stall"
    )
    return lost_s, verdict


def findings(
    df: pd.DataFrame, *, run_s: float, stall_s: float, closed_connections: int, open_rate: float
) -> str:
    """The findings, every direction and comparison chosen by a rule from the table."""
    t = df.set_index(["generator", "stalled"])
    closed, open_ = t.loc[("closed", True)], t.loc[("open", True)]
    base_c, base_o = t.loc[("closed", False)], t.loc[("open", False)]
    predicted = _predicted_p99_ms(run_s, stall_s)
    c_lost, c_paused = _paused(closed, base_c, stall_s)
    o_lost, o_paused = _paused(open_, base_o, stall_s)
    tail = closed["p99.9_ms"]
    beyond = int(closed["measured"] * 0.001)
    lines = [
        "# Coordinated omission\n",
        f"The server was frozen for {stall_s:g} s in a {run_s:g} s run. A percentile shows "
        f"the stall when it is at least {SHOWS:g}x the same generator's without the stall; a "
        "generator fell behind when it completed fewer requests than without the stall "
        f"by at least {PAUSE:g}x the stall's length of its unstalled throughput.\n",
        f"- **Closed loop** ({closed_connections} connections, like wrk): p99 "
        f"{closed['p99_ms']:,.1f} ms (without the stall {base_c['p99_ms']:,.1f} ms); "
        f"{_listed(_shows(closed, base_c))} (max {closed['p100_ms']:,.0f} ms, without the "
        f"stall {base_c['p100_ms']:,.0f} ms). Its p99.9 is {tail:,.1f} ms, so at most "
        f"{beyond:,} of its {closed['measured']:,.0f} requests took longer; with "
        f"{closed_connections} connections, at most {closed_connections} requests are in "
        "flight when the server freezes. It completed "
        f"{closed['completed']:,.0f} requests against {base_c['completed']:,.0f} without "
        f"the stall, {c_lost:,.1f} s of its unstalled throughput lost to a {stall_s:g} s "
        f"stall: {c_paused}"
        + (
            ": a closed loop sends only when answered, so it waited instead of sending, "
            "and the few requests that saw the stall are diluted by fast ones."
            if c_lost >= PAUSE * stall_s
            else "."
        ),
        f"- **Open loop** ({open_rate:g} req/s, latency from the intended send time): p99 "
        f"{open_['p99_ms']:,.1f} ms (without the stall {base_o['p99_ms']:,.1f} ms); "
        f"{_listed(_shows(open_, base_o))}. It completed {open_['completed']:,.0f} requests "
        f"against {base_o['completed']:,.0f} without the stall ({o_lost:,.1f} s of its "
        f"throughput): {o_paused}.",
    ]
    if predicted:
        err = compare(open_["p99_ms"], predicted, PREDICT_TOL)
        lines.append(
            f"\nThe simple prediction, a share {stall_s / run_s:.1%} of requests delayed by "
            f"0 to {stall_s:g} s, gives a p99 of {predicted:,.0f} ms; the open-loop "
            f"measurement is {err.relative:+.0%} from it, "
            + err.pick(
                more=f"further than {PREDICT_TOL:.0%} above: the stall delayed more than the "
                "prediction's share.",
                less=f"further than {PREDICT_TOL:.0%} below: the stall delayed less than the "
                "prediction's share.",
                same=f"within {PREDICT_TOL:.0%}.",
            )
        )
    else:
        lines.append(
            f"\nThe simple prediction: a share {stall_s / run_s:.1%} of requests delayed is "
            "under 1%, too few to move the p99."
        )
    vs = compare(open_["p99_ms"], closed["p99_ms"], SAME)
    lines.append(
        "The open-loop p99 measures from the intended send time, which is what users "
        "arriving at a steady rate experience; "
        + vs.pick(
            more=f"the closed-loop p99 understates it {vs.ratio:,.0f}-fold.",
            less=f"the closed-loop p99 is {1 / vs.ratio:,.1f}x above it: here the closed "
            "loop does not understate the stall.",
            same=f"the closed-loop p99 is within {SAME:.0%} of it: here the closed loop "
            "does not understate the stall.",
        )
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
