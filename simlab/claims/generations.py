"""Claims about the first and second generations of event-driven servers,
the ad service, the Python journey, and cores."""

from __future__ import annotations

import itertools
from typing import Any

import pandas as pd

from simlab.claims.base import Finding, claim, judge
from simlab.claims.evidence import Evidence, MissingFileError
from simlab.models import MODELS
from simlab.models.async_ import Async
from simlab.models.reactor_pool import ReactorPool

__all__ = ["JOURNEY_WORKLOAD"]

FIRST_GENERATION = ("nginx-php-fpm", "nginx-uwsgi", "tomcat-nio")  # real peers (simlab.real.peers)
SECOND_GENERATION = ("go", "node")  # real peers, beside simlab's own async server
HUNDREDS = 500  # "几百个": a few hundred threads or processes at most
TENS_OF_THOUSANDS = 10_000  # "几万": the connections the claim is about
FEW = 10  # "彻底消除": a handful of threads, whatever the connections
WITHIN = 0.10  # a count "matches" the notes' within 10%
SAME_CORE = 0.03  # throughputs within 3% are "the same" (as experiments/multicore.py)

# The dashboard's Python journey loads the experiment's own workload, so that
# both tell the same story: 1 req/s per client, 1 ms CPU, one 20 ms backend
# call, one request per connection (each client connects anew), at one of the
# experiment's levels.
JOURNEY_WORKLOAD: dict[str, Any] = {
    "connections": 320,
    "rate": 320.0,
    "cpu_ms": 1.0,
    "io_ms": 20.0,
    "calls": 1,
    "rpc": 1,
    "platform": "cpython",
    "cores": 2,
    "workers": 16,
    "processes": 1,
}


def _largest(ev: Evidence, targets: tuple[str, ...]) -> dict[str, tuple[int, float]]:
    """(most connections measured, threads plus processes there) of each real target."""
    out: dict[str, tuple[int, float]] = {}
    for s in ev.measurements():
        name = str(s.get("model"))
        if name not in targets:
            continue
        n = int((s.get("workload") or {}).get("connections") or 0)
        units = float(s["threads"]["peak"])
        if n > out.get(name, (0, 0.0))[0]:
            out[name] = (n, units)
    try:
        big = ev.results("jvm_ten_thousand_threads")
    except MissingFileError:
        return out
    for _, r in big[big["source"] == "measured"].iterrows():
        name = str(r["target"])
        if name in targets and int(r["connections"]) > out.get(name, (0, 0.0))[0]:
            out[name] = (int(r["connections"]), float(r["threads"]))
    return out


@claim(
    "first-generation",
    "first generation",
    "nginx负责通信层，PHP-FPM负责业务逻辑层……uwsgi……tomcat nio……"
    "用几百个甚至区区几十个线程/进程，满足了几万甚至几十万的并发连接",
    "nginx + PHP-FPM, nginx + uWSGI and Tomcat NIO serve tens or hundreds of thousands of "
    "connections with a few hundred, or a few dozen, threads or processes.",
    "simlab measure nginx-php-fpm|nginx-uwsgi|tomcat-nio; "
    "python experiments/jvm_ten_thousand_threads.py --findings-only",
)
def first_generation(ev: Evidence) -> Finding:
    seen = _largest(ev, FIRST_GENERATION)
    missing = [t for t in FIRST_GENERATION if t not in seen]
    if missing:
        return Finding("not yet measured", f"no measurement of {', '.join(missing)}", {})
    numbers: dict[str, Any] = {}
    for t, (n, units) in seen.items():
        numbers[f"{t}_connections"] = n
        numbers[f"{t}_threads"] = units
    few = all(u <= HUNDREDS for _, u in seen.values())
    at_scale = all(n >= TENS_OF_THOUSANDS for n, _ in seen.values())
    text = "measured: " + "; ".join(
        f"{t} held {n:,} connections with {u:.0f} threads" for t, (n, u) in seen.items()
    )
    return judge(
        holds=few and at_scale,
        partly=few,
        yes=f"{text}: a few hundred at most, at the notes' scale",
        part=f"{text}: a few dozen threads each, but not every server was measured at "
        f"{TENS_OF_THOUSANDS:,}+ connections on this 2-core machine",
        no=f"{text}: more than {HUNDREDS} threads",
        numbers=numbers,
    )


@claim(
    "requests-grow",
    "first generation",
    "导致一个请求不能在100ms内完成，可能增加到了500ms甚至几秒钟，其中大部分时间是在等待网络，"
    "白白的占用了一个线程等IO",
    "Requests grow to 500 ms or seconds, mostly waiting on the network, each holding a "
    "thread idle.",
    "python experiments/business_io_growth.py --findings-only",
)
def requests_grow(ev: Evidence) -> Finding:
    df = ev.results("business_io_growth")
    rp = df[df["model"] == ReactorPool.name].sort_values("io_ms")
    loop = df[df["model"] == Async.name]
    lo, hi = rp.iloc[0], rp.iloc[-1]
    per_busy = float(hi["threads"]) / float(hi["little_busy"])
    numbers = {
        "io_ms_from": float(lo["io_ms"]),
        "io_ms_to": float(hi["io_ms"]),
        "threads_from": int(lo["threads"]),
        "threads_to": int(hi["threads"]),
        "little_busy_to": float(hi["little_busy"]),
        "async_threads_max": int(loop["threads"].max()),
    }
    text = (
        f"simulated at {float(df['param_rate'].iloc[0]):g} req/s: as the wait grows from "
        f"{lo['io_ms']:g} to {hi['io_ms']:g} ms the reactor-pool needs {int(lo['threads'])} "
        f"to {int(hi['threads']):,} threads ({per_busy:.2f}x Little's busy workers), async "
        f"at most {int(loop['threads'].max())}"
    )
    return judge(
        holds=abs(per_busy - 1) <= WITHIN and loop["threads"].max() <= FEW,
        yes=f"{text}: each waiting request holds a thread",
        no=f"{text}: the threads do not follow the waits",
        numbers=numbers,
    )


def _ad(ev: Evidence) -> tuple[pd.Series, pd.Series, pd.DataFrame]:
    df = ev.results("ad_service_fanout")
    full = df[(df["source"] == "simulated") & (df["fanout"] == "sequential")]
    full = full[full["rate"] == full["rate"].max()]
    rp = full[full["model"] == ReactorPool.name].iloc[0]
    loop = full[full["model"] == Async.name].iloc[0]
    return rp, loop, df


@claim(
    "return-to-one-to-one",
    "second generation",
    "在极端的业务下，他们甚至重新回来1:1这个比例",
    "In extreme cases the business threads return to 1:1 with the connections.",
    "python experiments/ad_service_fanout.py --findings-only",
)
def one_to_one(ev: Evidence) -> Finding:
    rp, _, _ = _ad(ev)
    # Each ad request holds its client's connection for its whole time, so the
    # connections in use are the requests in flight: rate x time (Little).
    in_flight = float(rp["rate"]) * float(rp["p50_ms"]) / 1e3
    ratio = float(rp["threads"]) / in_flight
    numbers = {
        "threads": int(rp["threads"]),
        "connections_in_use": round(in_flight),
        "ratio": ratio,
    }
    text = (
        f"simulated ad service: {int(rp['threads']):,} threads for {in_flight:,.0f} "
        f"connections in use ({ratio:.2f} threads per connection)"
    )
    return judge(
        holds=abs(ratio - 1) <= WITHIN,
        yes=f"{text}: 1:1 within {WITHIN:.0%}",
        no=f"{text}: not 1:1",
        numbers=numbers,
    )


@claim(
    "ad-service",
    "second generation",
    "每一个http请求，需要对外发起60个http请求，按照一个100ms算，需要耗时6秒，"
    "如果每秒有1000个广告请求，就需要6000个线程才能不积压至服务崩溃",
    "An ad request makes 60 calls of 100 ms (6 s); at 1000 requests/s that needs 6000 threads.",
    "python experiments/ad_service_fanout.py --findings-only",
)
def ad_service(ev: Evidence) -> Finding:
    rp, loop, df = _ad(ev)
    real = df[(df["source"] == "measured") & (df["fanout"] == "sequential")]
    numbers: dict[str, Any] = {
        "workers": int(rp["workers"]),
        "p99_ms": float(rp["p99_ms"]),
        "async_threads": int(loop["threads"]),
    }
    for _, r in real.iterrows():
        numbers[f"measured_{r['model']}_busy_threads"] = round(float(r["busy"]), 1)
    text = (
        f"the planner, checked by simulation, sizes the reactor-pool at {int(rp['workers']):,} "
        f"workers (p99 {float(rp['p99_ms']) / 1e3:.2f} s); async needs "
        f"{int(loop['threads'])} threads"
    )
    return judge(
        holds=abs(float(rp["workers"]) / 6000 - 1) <= WITHIN,
        yes=f"{text}: the notes' 6,000 within {WITHIN:.0%}",
        no=f"{text}: not the notes' 6,000",
        numbers=numbers,
    )


@claim(
    "second-generation",
    "second generation",
    "第二代事件驱动模型应运而生，把业务逻辑也变成事件驱动，彻底消除浪费线程等待IO这个现象"
    "……Go的goroutine……Python 3的coroutine……nodejs的异步回调",
    "The second generation (Go's goroutines, Python 3's coroutines, Node.js's callbacks) "
    "makes the business layer event-driven: no thread waits on I/O.",
    "python experiments/jvm_ten_thousand_threads.py --findings-only; "
    "python experiments/ad_service_fanout.py --findings-only",
)
def second_generation(ev: Evidence) -> Finding:
    df = ev.results("jvm_ten_thousand_threads")
    m = df[df["source"] == "measured"]
    top = m[m["connections"] == m["connections"].max()]
    targets = (*SECOND_GENERATION, Async.name)
    rows = top[top["target"].isin(targets)]
    missing = [t for t in targets if t not in set(rows["target"])]
    if missing:
        return Finding("not yet measured", f"no measurement of {', '.join(missing)}", {})
    _, loop, _ = _ad(ev)
    numbers: dict[str, Any] = {
        f"{r['target']}_threads": int(r["threads"]) for _, r in rows.iterrows()
    }
    numbers["ad_service_async_threads"] = int(loop["threads"])
    text = (
        f"measured at {int(top['connections'].max()):,} connections: "
        + ", ".join(f"{r['target']} {int(r['threads'])} threads" for _, r in rows.iterrows())
        + f"; the simulated ad service's 6 s waits take async {int(loop['threads'])} threads"
    )
    return judge(
        holds=bool((rows["threads"] <= FEW).all()) and loop["threads"] <= FEW,
        yes=f"{text}: no thread per waiting request",
        no=f"{text}: threads still grow with the connections somewhere",
        numbers=numbers,
    )


def _sustained(df: pd.DataFrame, source: str) -> dict[str, int]:
    ok = df[(df["source"] == source) & df["within_goal"] & df["stable"]]
    best = ok.groupby("model")["clients"].max()
    # The journey's steps are the models the experiment ran, in the registry's
    # order (a front before a back pool, two-tier, is not one of them).
    ran = set(df["model"])
    return {name: int(best.get(name, 0)) for name in MODELS if name in ran}


@claim(
    "python-journey",
    "the journey",
    "再优化一下，让它变成异步IO模式……每一步都是加大客户端连接的数量。",
    "Each step of the Python journey (iterative, fork, threads, a pool, async) serves more "
    "clients.",
    "python experiments/python_server_journey.py --findings-only",
)
def python_journey(ev: Evidence) -> Finding:
    from simlab.claims.sims import journey_load  # noqa: PLC0415 - loads the planner

    df = ev.results("python_server_journey")
    meta = ev.meta("python_server_journey")["params"]
    best = _sustained(df, "measured")
    platform = ev.platform()
    steps = list(best.values())
    rises = all(b > a for a, b in itertools.pairwise(steps))
    never_falls = all(b >= a for a, b in itertools.pairwise(steps))
    numbers: dict[str, Any] = {f"{k}_clients": v for k, v in best.items()}
    ties = sorted({v for a, v in itertools.pairwise(steps) if v == a})
    why = []
    for level in ties:
        tied = [k for k, v in best.items() if v == level]
        nxt = 2 * level
        for name in tied:
            rho = journey_load(name, platform, clients=nxt, params=meta)
            numbers[f"{name}_cores_needed_at_{nxt}"] = round(rho, 2)
        parts = []
        for k in tied:
            rho = numbers[f"{k}_cores_needed_at_{nxt}"]
            state = "saturates it" if rho >= 1 else "under it, so the step fails on latency"
            parts.append(f"{k} {rho:.2f} ({state})")
        # The step after the tie, when it sustains the next level: does it need less?
        names = list(best)
        after = [k for k in names[names.index(tied[-1]) + 1 :] if best[k] >= nxt]
        beyond = ""
        if after:
            rho = journey_load(after[0], platform, clients=nxt, params=meta)
            numbers[f"{after[0]}_cores_needed_at_{nxt}"] = round(rho, 2)
            beyond = f"; {after[0]}, which sustains {nxt}, needs {rho:.2f}" + (
                ", so the one core separates them"
                if rho < 1
                else " too, so the one core does not separate them by itself"
            )
        why.append(
            f"{', '.join(tied)} tie at {level}: at the next level ({nxt} clients) the calibrated "
            f"costs put each process's CPU, in cores of the one its GIL allows, at "
            + ", ".join(parts)
            + beyond
        )
    text = "measured, most clients within the p99 goal: " + ", ".join(
        f"{k} {v}" for k, v in best.items()
    )
    return judge(
        holds=rises,
        partly=never_falls,
        yes=f"{text}: every step serves more",
        part=f"{text}: no step serves fewer, but some tie ({'; '.join(why)})",
        no=f"{text}: a step serves fewer than the one before",
        numbers=numbers,
    )


@claim(
    "journey-dashboard",
    "the journey",
    "每一步都是加大客户端连接的数量。",
    "The dashboard's journey and the experiment tell the same story (the same workload).",
    "simlab dashboard (The story, Python journey); "
    "python experiments/python_server_journey.py --findings-only",
)
def journey_dashboard(ev: Evidence) -> Finding:
    meta = ev.meta("python_server_journey")["params"]
    dash = JOURNEY_WORKLOAD
    pairs = {
        "per-client rate (req/s)": (dash["rate"] / dash["connections"], meta["per_client_rate"]),
        "CPU (ms)": (dash["cpu_ms"], meta["cpu_s"] * 1e3),
        "backend wait (ms)": (dash["io_ms"], meta["io_s"] * 1e3),
    }
    differ = [k for k, (a, b) in pairs.items() if abs(a - b) > 1e-9 * max(abs(b), 1)]
    numbers = {k: a for k, (a, _) in pairs.items()}
    return judge(
        holds=not differ,
        yes="the dashboard's journey loads the experiment's workload "
        f"({', '.join(f'{k} {a:g}' for k, (a, _) in pairs.items())}), one request per "
        "connection as in the experiment",
        no=f"the dashboard's journey differs from the experiment in {', '.join(differ)}",
        numbers=numbers,
    )


def _multicore(ev: Evidence) -> pd.DataFrame:
    """The multicore rows with CPython's GIL (its --no-gil rows are the notes' case,
    read by ``threads_many_cores``)."""
    df = ev.results("multicore")
    return df[df["gil"].astype(bool)] if "gil" in df.columns else df


@claim(
    "coroutines-one-core",
    "cores",
    "协程的缺点是无法充分利用CPU多核的好处",
    "Coroutines cannot use many cores.",
    "python experiments/multicore.py --findings-only",
)
def coroutines_one_core(ev: Evidence) -> Finding:
    df = _multicore(ev)
    sim = df[(df["source"] == "simulated") & (df["model"] == Async.name)]
    one = sim[sim["processes"] == 1].set_index("cores")["throughput_rps"]
    wide = int(sim["cores"].max())
    many = sim[sim["cores"] == wide]
    best = float(many["throughput_rps"].max())
    flat = float(one.max() / one.min() - 1) <= SAME_CORE
    real = df[(df["source"] == "measured") & (df["model"] == Async.name)]
    one_real = real[real["processes"] == 1].iloc[0]
    cores_used = float(one_real["cpu_utilization"]) * float(one_real["cores"])
    numbers = {
        "one_loop_rps_by_cores": {
            int(k): round(float(v), 1) for k, v in zip(one.index, one.tolist(), strict=True)
        },
        "measured_one_loop_cores_used": round(cores_used, 2),
        f"processes_rps_on_{wide}_cores": round(best, 1),
        "speedup_with_processes": round(best / float(one[wide]), 1),
    }
    text = (
        f"one loop serves {float(one.min()):.0f} req/s on {', '.join(str(c) for c in one.index)} "
        f"cores (simulated; measured it uses {cores_used:.2f} cores of 2); {wide} processes "
        f"of one loop each serve {best:,.0f} req/s ({best / float(one[wide]):.1f}x)"
    )
    return judge(
        holds=flat and best / float(one[wide]) < 1 + SAME_CORE,
        partly=flat,
        yes=f"{text}: coroutines stay on one core",
        part=f"{text}: true of one process's loop; processes of loops use every core",
        no=f"{text}: one loop uses more cores",
        numbers=numbers,
    )


@claim(
    "threads-many-cores",
    "cores",
    "内核线程在调用的时候可以去不同的核心去操作。所以多线程是可以利用到多核的。",
    "Kernel threads are scheduled on any core, so threads can use many cores.",
    "python experiments/multicore.py --findings-only; "
    "simlab plan --max-rate --analytic --platform cpython --cores 8 --connections 256 "
    "--rate 100 --cpu-ms 2 --io-ms 10 --models reactor-pool --workers 16 --processes 1 "
    "--slo-p99-ms 1000 [--no-gil]",
)
def threads_many_cores(ev: Evidence) -> Finding:
    from simlab.claims.sims import gil_rates  # noqa: PLC0415 - loads the planner

    df = _multicore(ev)
    real = df[(df["source"] == "measured") & (df["model"] == ReactorPool.name)]
    one = real[real["processes"] == 1].iloc[0]
    cores_used = float(one["cpu_utilization"]) * float(one["cores"])
    rates = gil_rates(ReactorPool.name, ev.platform(), cores=8, workers=16)
    speedup = rates[False] / rates[True]
    numbers = {
        "measured_threads": int(one["threads"]),
        "measured_cores_used": round(cores_used, 2),
        "machine_cores": int(one["cores"]),
        "rps_8_cores_gil": round(rates[True], 1),
        "rps_8_cores_no_gil": round(rates[False], 1),
    }
    text = (
        f"measured, one CPython reactor-pool process with {int(one['threads'])} threads uses "
        f"{cores_used:.2f} of {int(one['cores'])} cores; on the calibrated profile with 8 "
        f"cores and 16 workers it serves {rates[True]:.0f} req/s with the GIL and "
        f"{rates[False]:.0f} without it ({speedup:.1f}x)"
    )
    gil_bound = cores_used <= 1 + SAME_CORE * 3
    return judge(
        holds=not gil_bound,
        partly=speedup > 1.5,
        yes=f"{text}: the threads use more than one core",
        part=f"{text}: true of kernel threads (and of CPython without the GIL, the --no-gil "
        "case); under CPython's GIL one process's threads share one core",
        no=f"{text}: the threads stay on one core even without the GIL",
        numbers=numbers,
    )


@claim(
    "processes-many-cores",
    "cores",
    "多进程可以利用多核嘛？",
    "Can processes use many cores?",
    "python experiments/multicore.py --findings-only",
)
def processes_many_cores(ev: Evidence) -> Finding:
    df = _multicore(ev)
    real = df[df["source"] == "measured"]
    numbers: dict[str, Any] = {}
    gains = []
    for name, g in real.groupby("model"):
        by = g.set_index("processes")["throughput_rps"]
        gain = float(by.get(2, float("nan")) / by[1])
        gains.append(gain)
        numbers[f"{name}_2_processes_over_1"] = round(gain, 2)
    text = (
        "measured on 2 cores, 2 processes serve "
        + ", ".join(f"{k.split('_2_')[0]} {v:.2f}x" for k, v in numbers.items())
        + " one process's throughput"
    )
    return judge(
        holds=all(g >= 1.5 for g in gains),
        yes=f"{text}: yes, each process gets its own core",
        no=f"{text}: a second process adds little",
        numbers=numbers,
    )
