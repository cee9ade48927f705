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

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from simlab.experiment import Experiment, arguments
from simlab.real import loadgen
from simlab.real.processes import Managed, port_is_free, python

SEED = 1
RUN_S, STALL_S, STALL_AT_S = 20.0, 1.0, 8.0
QUICK_RUN_S, QUICK_STALL_S, QUICK_STALL_AT_S = 6.0, 0.5, 2.5
WARMUP_S = 1.0
OPEN_RATE = 1000.0  # requests/s, open loop
OPEN_CONNECTIONS = 400
CLOSED_CONNECTIONS = 10
QUERY = "cpu_ms=0.2&io_ms=2&calls=1"
PERCENTILES = (50.0, 90.0, 99.0, 99.9, 100.0)


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
    with (
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


def main() -> None:
    args = arguments(__doc__ or "")
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
    with Experiment(
        "coordinated_omission", seed=SEED, quick=args.quick, params=params, out=args.out
    ) as ex:
        for mode in ("closed", "open"):
            for stalled in (False, True):
                row = one_run(mode, stalled, run_s, stall_s, stall_at)
                ex.add(generator=mode, stalled=stalled, **row)
                print(f"{mode:6s} stalled={stalled!s:5s} p99 {row['p99_ms']:8.1f} ms")
        _plot(ex, stall_s)
        _findings(ex, run_s, stall_s)
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


def _findings(ex: Experiment, run_s: float, stall_s: float) -> None:
    df = ex.table().set_index(["generator", "stalled"])
    closed, open_ = df.loc[("closed", True)], df.loc[("open", True)]
    base_c, base_o = df.loc[("closed", False)], df.loc[("open", False)]
    predicted = _predicted_p99_ms(run_s, stall_s)
    err = (open_["p99_ms"] - predicted) / predicted if predicted else float("nan")
    ex.findings(
        f"# Coordinated omission\n\n"
        f"The server was frozen for {stall_s:g} s in a {run_s:g} s run.\n\n"
        f"- **Closed loop** ({CLOSED_CONNECTIONS} connections, like wrk): p99 "
        f"{closed['p99_ms']:,.1f} ms (without the stall {base_c['p99_ms']:,.1f} ms); only the "
        f"{CLOSED_CONNECTIONS} requests in flight saw the stall, because the generator stopped "
        f"sending while the server was frozen, so {closed['completed']:,.0f} fast requests "
        f"dilute them. Its max, {closed['p100_ms']:,.0f} ms, is the only trace of the stall.\n"
        f"- **Open loop** ({OPEN_RATE:g} req/s, latency from the intended send time): p99 "
        f"{open_['p99_ms']:,.1f} ms (without the stall {base_o['p99_ms']:,.1f} ms).\n\n"
        f"The simple prediction, a share {stall_s / run_s:.1%} of requests delayed by 0 to "
        f"{stall_s:g} s, gives a p99 of {predicted:,.0f} ms; the open-loop measurement is "
        f"{err:+.0%} from it. The open-loop p99 is the right one: it is what users arriving "
        f"at a steady rate experienced. The closed-loop p99 understates it "
        f"{open_['p99_ms'] / max(closed['p99_ms'], 1e-9):,.0f}-fold."
    )


if __name__ == "__main__":
    main()
