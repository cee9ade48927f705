"""Claims whose evidence is a newer experiment: the big box, a million
connections, thread ratios, callbacks against coroutines, several loops in one
process, flash sales and slow clients.

While an experiment has not landed, its ``results.csv`` is absent and the row
says "not yet measured", naming the file (``simlab.claims.evidence.MissingFileError``).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from simlab.claims.base import Finding, claim, judge
from simlab.claims.evidence import Evidence
from simlab.models.async_ import Async

__all__: list[str] = []

HUNDRED_K = 100_000  # "十几万": a hundred thousand and more
MILLION = 1_000_000
ORDER_TOL = 0.25  # "2-3个数量级" within a quarter of an order, as experiments/thread_ratio.py
NOTES_RATE_PER_10K = 100.0  # "10K个连接，可能每秒只有100个请求"
# Runtimes the notes name that no package registry reachable here provides:
# swoole is a PECL extension (no Debian or PyPI package), Vert.x a Maven
# artifact (no Debian package; Maven Central is not reachable from this lab).
# Checked on 2026-12-01 with apt-cache search on an up-to-date package list.
UNOBTAINABLE = ("swoole", "vertx")


def _needs(df: pd.DataFrame, columns: tuple[str, ...], name: str) -> str | None:
    lacking = [c for c in columns if c not in df.columns]
    return f"{name} lacks the column(s) {', '.join(lacking)}" if lacking else None


@claim(
    "big-box",
    "scale",
    "一台多核(比如24核)内存大点的(比如64G内存)的现代服务器，可以支持十几万的长连接",
    "A modern server with 24 cores and 64 GB holds a hundred thousand and more long connections.",
    "python experiments/big_box.py --findings-only",
)
def big_box(ev: Evidence) -> Finding:
    df = ev.results("big_box")
    df = df[df["question"] == "notes-rate"]
    best = df.sort_values("connections_held", ascending=False).iloc[0]
    fit = df[df["connections_held"] >= HUNDRED_K]
    numbers: dict[str, Any] = {
        f"{r['platform']}/{r['model']}/{int(r['processes'])}p": int(r["connections_held"])
        for _, r in df.iterrows()
    }
    text = (
        f"planned for 24 cores and 64 GiB at {NOTES_RATE_PER_10K:g} req/s per 10K connections: "
        f"{len(fit)} of {len(df)} designs hold {HUNDRED_K:,}+ (the most: {best['model']} on "
        f"{best['platform']} with {int(best['processes'])} processes, "
        f"{int(best['connections_held']):,}, limited by {best['limit']})"
    )
    return judge(
        holds=len(fit) == len(df),
        partly=len(fit) > 0,
        yes=f"{text}: every design does",
        part=f"{text}: some designs do, not all",
        no=f"{text}: none does",
        numbers=numbers,
    )


@claim(
    "million",
    "scale",
    "单机如何处理高并发？百万？",
    "How does one machine handle high concurrency? A million connections?",
    "python experiments/big_box.py --findings-only",
)
def million(ev: Evidence) -> Finding:
    df = ev.results("big_box")
    df = df[df["question"] == "million"]
    fit = df[df["fits"].astype(bool)]
    numbers = {
        f"{r['platform']}/{r['model']}/{int(r['processes'])}p": (
            round(float(r["max_rate_rps"]), 1) if bool(r["fits"]) else "does not fit"
        )
        for _, r in df.iterrows()
    }
    served = fit[fit["max_rate_rps"] >= MILLION / 10_000 * NOTES_RATE_PER_10K]
    text = (
        f"a million connections in 64 GiB on 24 cores: {len(fit)} of {len(df)} designs fit; "
        f"{len(served)} of them serve the notes' rate for them "
        f"({MILLION / 10_000 * NOTES_RATE_PER_10K:,.0f} req/s)"
    )
    return judge(
        holds=len(served) > 0 and len(fit) == len(df),
        partly=len(served) > 0,
        yes=f"{text}: every design fits",
        part=f"{text}: those that do: {', '.join(sorted(set(served['model'])))}",
        no=f"{text}: none does",
        numbers=numbers,
    )


@claim(
    "thread-ratio",
    "first generation",
    "业务逻辑层需要的线程数，比通信层小2-3个数量级",
    "The business layer needs 2-3 orders of magnitude fewer threads than the communication layer.",
    "python experiments/thread_ratio.py --findings-only",
)
def thread_ratio(ev: Evidence) -> Finding:
    df = ev.results("thread_ratio")
    # The notes' case: the first generation with requests under 100 ms.
    first = df[(df["generation"] == "first") & df["notes_case"].astype(bool)]
    orders = first["orders"].astype(float)
    numbers = {
        f"{r['scenario']}/{r['model']}": round(float(r["orders"]), 2) for _, r in df.iterrows()
    }
    text = (
        f"first generation with requests under 100 ms, simulated: business threads are "
        f"{orders.min():.1f} to "
        f"{orders.max():.1f} orders of magnitude fewer than connections"
    )
    inside = orders.between(2 - ORDER_TOL, 3 + ORDER_TOL)
    return judge(
        holds=bool(inside.all()),
        partly=bool(inside.any()),
        yes=f"{text}: 2 to 3 (within a quarter of an order)",
        part=f"{text}: 2 to 3 in some scenarios only",
        no=f"{text}: not 2 to 3",
        numbers=numbers,
    )


@claim(
    "callbacks-vs-coroutines",
    "second generation",
    "事件驱动有两件常见的外衣，一件是异步回调，另一件是coroutine",
    "Event-driven code wears two coats: asynchronous callbacks and coroutines.",
    "python experiments/callbacks_vs_coroutines.py --findings-only",
)
def callbacks_vs_coroutines(ev: Evidence) -> Finding:
    if not ev.has_results("callbacks_vs_coroutines"):
        return _coats_when_idle(ev)
    from simlab.claims.coats import hop_relation, summarise  # noqa: PLC0415 - loads scipy

    df = ev.results("callbacks_vs_coroutines")
    lacking = _needs(
        df, ("kind", "coat", "pss_kib", "cpu_us_per_request"), "callbacks_vs_coroutines"
    )
    if lacking:
        return Finding("not yet measured", lacking, {})
    per = summarise(df).set_index("coat")
    styles = set(per["style"])
    if not {"callbacks", "coroutines"} <= styles:
        return Finding("not yet measured", "callbacks_vs_coroutines lacks one of the coats", {})
    numbers: dict[str, Any] = {}
    for coat, r in per.iterrows():
        numbers[f"{coat}_kib_per_pending"] = round(float(r["kib_per_pending"]), 2)
        numbers[f"{coat}_us_per_hop"] = (
            round(float(r["hop_us"]), 3) if r["hop_identified"] else "not identified"
        )
    failed = df[df["kind"] == "failed"]
    for _, r in failed.iterrows():
        numbers[f"{r['coat']}_failed"] = str(r["error"])[:200]
    params = ev.profile()["parameters"]
    thread_kib = float(params["thread_kib"]["value"]) + float(params["thread_kernel_kib"]["value"])
    light = per["kib_per_pending"] * COAT_LIGHTER <= thread_kib
    # The two coats on one runtime (Node.js): how far apart are they in each cost?
    # A CPU per hop counts only when the two 95% intervals do not overlap.
    apart = 1.0
    if {"node-callbacks", "node-promises"} <= set(per.index):
        rows = dict(per.iterrows())
        cb, pr = rows["node-callbacks"], rows["node-promises"]
        cols = ["kib_per_pending"] + (["hop_us"] if hop_relation(cb, pr) != "same" else [])
        for col in cols:
            a, b = float(cb[col]), float(pr[col])
            apart = max(apart, max(a, b) / min(a, b)) if min(a, b) > 0 else math.inf
    numbers["node_coats_apart"] = round(apart, 2)
    text = (
        "measured, KiB per pending operation and CPU us per hop: "
        + ", ".join(
            f"{c} ({r['style']}) {r['kib_per_pending']:.2f} KiB, "
            + (f"{r['hop_us']:.3f} us" if r["hop_identified"] else "hop not identified")
            for c, r in per.iterrows()
        )
        + f"; a native thread holds {thread_kib:.0f} KiB"
        + (f"; not measured: {', '.join(failed['coat'])}" if len(failed) else "")
    )
    return judge(
        holds=bool(light.all()) and apart <= COATS_CLOSE,
        partly=bool(light.all()),
        yes=f"{text}: both coats hold a waiting request in a tenth of a thread or less, and "
        f"on one runtime they cost within {COATS_CLOSE:g}x of each other",
        part=f"{text}: both coats free the waiting request from a thread, but on one runtime "
        f"the coats' costs are {apart:.1f}x apart (more than {COATS_CLOSE:g}x): the coat "
        "is not free",
        no=f"{text}: {', '.join(per.index[~light])} hold a pending operation in more than a "
        "tenth of a thread",
        numbers=numbers,
    )


# Real peers by the coat they wear (simlab.real.peers; simlab's own async server).
CALLBACKS = ("node",)
COROUTINES = ("go", Async.name)
FEW_THREADS = 10
COAT_LIGHTER = 10.0  # "light": a pending operation in a tenth of a thread's memory or less
COATS_CLOSE = 2.0  # two coats "the same" when each cost is within 2x of the other's


def _used_mib(r: pd.Series) -> float:
    """Resident (PSS) plus the server's own kernel memory, as jvm_ten_thousand_threads counts."""
    return float(r["pss_mib"]) + float(r["kernel_own_mib"])


def _coats_when_idle(ev: Evidence) -> Finding:
    """Until the pending-operation measurements land: the two coats compared on
    what is measured, holding 10,000 idle connections."""
    df = ev.results("jvm_ten_thousand_threads")
    m = df[df["source"] == "measured"].sort_values("connections")
    lo, hi = int(m["connections"].min()), int(m["connections"].max())
    numbers: dict[str, Any] = {}
    kib: dict[str, float] = {}
    threads: dict[str, float] = {}
    for target in (*CALLBACKS, *COROUTINES):
        t = m[m["target"] == target]
        if len(t) < 2:
            continue
        a, b = t.iloc[0], t.iloc[-1]
        kib[target] = (_used_mib(b) - _used_mib(a)) * 1024 / (hi - lo)
        threads[target] = float(b["threads"])
        numbers[f"{target}_kib_per_connection"] = round(kib[target], 1)
        numbers[f"{target}_threads"] = int(threads[target])
    if not any(t in kib for t in CALLBACKS) or not any(t in kib for t in COROUTINES):
        return Finding("not yet measured", "no measured callback and coroutine peers", numbers)
    missing = ev.shown(ev.root / "experiments" / "callbacks_vs_coroutines" / "results.csv")
    numbers["pending_operations"] = f"missing {missing}"
    thread_kib = float(ev.profile()["parameters"]["thread_kernel_kib"]["value"])
    light = all(v <= thread_kib for v in kib.values())
    few = all(v <= FEW_THREADS for v in threads.values())
    text = (
        f"measured holding {hi:,} idle connections: "
        + ", ".join(
            f"{t} ({'callbacks' if t in CALLBACKS else 'coroutines'}) {kib[t]:.1f} KiB per "
            f"connection with {int(threads[t])} threads"
            for t in kib
        )
        + f", each under a thread's kernel memory alone ({thread_kib:.0f} KiB); memory per "
        f"pending operation and CPU per hop are not yet measured ({missing})"
    )
    return judge(
        holds=light and few,
        yes=f"{text}: both coats hold connections without a thread each",
        no=f"{text}: one coat costs a thread's worth",
        numbers=numbers,
    )


@claim(
    "swoole-vertx",
    "second generation",
    "swoole 1的异步回调和swoole 2的coroutine……VertX的异步回调",
    "swoole 1's callbacks, swoole 2's coroutines, Vert.x's callbacks.",
    "apt-cache search --names-only 'swoole|vertx' (no package: swoole is on PECL, Vert.x on "
    "Maven, neither reachable here)",
)
def swoole_vertx(ev: Evidence) -> Finding:
    present: set[str] = set()
    if ev.has_results("callbacks_vs_coroutines"):
        df = ev.results("callbacks_vs_coroutines")
        if "runtime" in df.columns:
            # Only rows that measured something: the experiment's "unavailable" rows name them too.
            measured = df[df["kind"].isin(["pending", "hops"])] if "kind" in df.columns else df
            present = {str(r).lower() for r in measured["runtime"]} & set(UNOBTAINABLE)
    if present:
        return Finding(
            "confirmed",
            f"measured in callbacks_vs_coroutines: {', '.join(sorted(present))}",
            {"measured": sorted(present)},
        )
    return Finding(
        "not testable here",
        f"no measured rows for {', '.join(UNOBTAINABLE)}: neither is obtainable from the "
        "package registries reachable from this lab",
        {"runtimes": list(UNOBTAINABLE)},
    )


@claim(
    "process-threads-coroutines",
    "cores",
    "现在最流行的后端框架是单进程+多线程+每个线程再利用协程这样的组合方式",
    "The popular design: one process, several threads, coroutines on each thread.",
    "python experiments/multi_loop.py --findings-only",
)
def process_threads_coroutines(ev: Evidence) -> Finding:
    df = ev.results("multi_loop")
    cores = int(df["cores"].max())
    df = df[df["cores"] == cores]
    g = df.set_index(["gil", "design"])["throughput_rps"]
    numbers = {
        f"{'gil' if gil else 'no-gil'}/{design}": round(float(v), 1)
        for (gil, design), v in zip(g.index.tolist(), g.tolist(), strict=True)
    }
    loops_gil = float(g.get((True, "loops"), math.nan))
    procs_gil = float(g.get((True, "processes"), math.nan))
    loops_free = float(g.get((False, "loops"), math.nan))
    procs_free = float(g.get((False, "processes"), math.nan))
    text = (
        f"simulated on {cores} cores: one process with {cores} loops serves "
        f"{loops_gil:.0f} req/s with the GIL and "
        f"{loops_free:.0f} without; {cores} processes of one loop serve {procs_gil:.0f} and "
        f"{procs_free:.0f}"
    )
    same_free = abs(loops_free / procs_free - 1) <= 0.1
    same_gil = abs(loops_gil / procs_gil - 1) <= 0.1
    return judge(
        holds=same_free and same_gil,
        partly=same_free,
        yes=f"{text}: threads of loops do as well as processes",
        part=f"{text}: as well as processes without a GIL; under CPython's GIL the loops "
        "share one core",
        no=f"{text}: threads of loops fall short of processes even without a GIL",
        numbers=numbers,
    )


@claim(
    "flash-sale",
    "scale",
    "业务场景，有哪些高并发业务场景呢？……抢购，火车票、演唱会门票等等。",
    "Flash sales (train tickets, concert tickets) are the high-concurrency business case.",
    "python experiments/flash_sale.py --findings-only",
)
def flash_sale(ev: Evidence) -> Finding:
    df = ev.results("flash_sale")
    lacking = _needs(df, ("model", "p99_ms"), "flash_sale")
    if lacking:
        return Finding("not yet measured", lacking, {})
    p99 = df["p99_ms"].astype(float)
    spread = float(p99.max() / p99.min())
    numbers = {
        "p99_ms_lowest": round(float(p99.min()), 1),
        "p99_ms_highest": round(float(p99.max()), 1),
    }
    return judge(
        holds=spread >= 10,
        yes=f"the flash sale's rows span p99 {p99.min():.0f} to {p99.max():,.0f} ms "
        f"({spread:.0f}x): the burst, not the idle connections, is what strains the server",
        no=f"the flash sale's rows span p99 {p99.min():.0f} to {p99.max():,.0f} ms "
        f"({spread:.1f}x): the burst does not strain the servers",
        numbers=numbers,
    )


@claim(
    "slow-clients",
    "layers",
    "外部网络是慢速IO，收发一点数据可能要1秒甚至更久",
    "The outside network is slow: sending or receiving a little data can take a second or more.",
    "python experiments/slow_clients.py --findings-only",
)
def slow_clients(ev: Evidence) -> Finding:
    df = ev.results("slow_clients")
    lacking = _needs(df, ("model", "threads"), "slow_clients")
    if lacking:
        return Finding("not yet measured", lacking, {})
    most = df.groupby("model")["threads"].max()
    numbers = {str(k): float(v) for k, v in most.items()}
    return judge(
        holds=float(most.max()) > 10 * float(most.min()),
        yes=f"most threads by model with slow clients: {numbers}: a design that gives each "
        "slow client a thread pays for its slowness",
        no=f"most threads by model with slow clients: {numbers}: slowness costs no design "
        "many threads",
        numbers=numbers,
    )
