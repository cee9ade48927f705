"""Claims about what connections, threads and requests cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from simlab.claims.base import Finding, claim, judge
from simlab.claims.evidence import Evidence, fixed_seconds
from simlab.findings import SHARE_LEFT, ranges_apart, share_left
from simlab.models.async_ import Async
from simlab.models.reactor_pool import ReactorPool
from simlab.models.thread_per_connection import ThreadPerConnection

__all__ = ["communication_overhead"]

TEN_GB_MIB = 1e10 / 2**20  # "10G": the notes' round number, in MiB
ABOUT = 0.25  # "about" / "typical" taken as within 25%
NEGLIGIBLE = 0.1  # "almost no CPU": under a tenth of the business CPU per request
LIGHT = 10.0  # "heavy" against "light": at least 10x apart
FALL = 0.10  # throughput more than 10% below its peak is a fall (as thread_count_collapse)


def _near_ten_gb(mib: float) -> bool:
    return bool(abs(mib / TEN_GB_MIB - 1) <= ABOUT)


def _slope_kib(df: pd.DataFrame, x: str, y: str) -> float:
    """The KiB per unit of ``x`` of a MiB column ``y`` (least squares)."""
    if df[x].nunique() < 2:
        return float("nan")
    return float(np.polyfit(df[x], df[y], 1)[0] * 1024)


@claim(
    "idle-connections",
    "connections",
    "这种并发实际说的是并发的不活跃的长连接，并不是并发请求",
    "The concurrency meant is that of idle long connections, not of concurrent requests.",
    "python experiments/c10k_idle_connections.py --findings-only",
)
def idle_connections(ev: Evidence) -> Finding:
    df = ev.results("c10k_idle_connections")
    m = df[df["source"] == "measured"]
    top = int(m["connections"].max())
    rate = float(df["param_rate"].iloc[0])
    busy = rate * float(df["param_cpu_s"].iloc[0])
    tpc = m[m["model"] == ThreadPerConnection.name]
    loop = m[m["model"] == Async.name]
    tpc_kib = _slope_kib(tpc, "connections", "resident_mib")
    loop_kib = _slope_kib(loop, "connections", "resident_mib")
    loop_threads = float(loop[loop["connections"] == top]["threads"].max())
    numbers = {
        "connections": top,
        "rate_rps": rate,
        "requests_on_cpu": busy,
        "thread_per_connection_kib_per_connection": tpc_kib,
        "async_kib_per_connection": loop_kib,
        "async_threads": loop_threads,
    }
    text = (
        f"measured on this machine: {top:,} connections at {rate:g} req/s keep "
        f"{busy:.2f} requests on a CPU on average; holding them costs {tpc_kib:.1f} KiB "
        f"resident per connection with a thread each, {loop_kib:.1f} KiB on one loop "
        f"({loop_threads:.0f} thread)"
    )
    # The claim is about what is concurrent: connections, not requests. It holds
    # when fewer than 1% of the connections have a request on a CPU at a time.
    return judge(
        holds=busy < 0.01 * top,
        yes=f"{text}: the concurrency is in the connections, not the requests",
        no=f"{text}: the requests are not few beside the connections",
        numbers=numbers,
    )


def communication_overhead(ev: Evidence) -> pd.DataFrame:
    """Per real target, the median over its measurements (``data/measurements``) of
    the server's CPU per request beyond the handler's own fixed CPU (ms), with that
    CPU (``cpu_ms``) and how many runs the median is over (``runs``)."""
    rows = []
    for s in ev.measurements():
        cpu_s = fixed_seconds((s.get("workload") or {}).get("cpu"))
        thr, busy = s.get("throughput_rps"), s.get("cpu_busy_cores")
        if cpu_s is None or not thr or busy is None:
            continue
        name = str(s.get("model"))
        overhead_ms = busy / thr * 1e3 - cpu_s * 1e3
        rows.append((name, overhead_ms, cpu_s * 1e3))
    per = pd.DataFrame(rows, columns=["target", "overhead_ms", "cpu_ms"])
    runs = per.groupby("target", sort=True).size()
    per = per.groupby("target", sort=True).median()
    per["runs"] = runs
    return per


@claim(
    "communication-cpu",
    "layers",
    "通信层特点：都是IO行为，几乎不大消耗CPU",
    "The communication layer is all I/O and uses almost no CPU.",
    "simlab measure <target> (data/measurements/*.json: cpu_busy_cores / throughput - cpu)",
)
def communication_cpu(ev: Evidence) -> Finding:
    per = communication_overhead(ev)
    if per.empty:
        return Finding("not yet measured", "no measurement with a fixed CPU demand", {})
    numbers = {f"{t}_ms_per_request": round(float(r.overhead_ms), 3) for t, r in per.iterrows()}
    profile = ev.profile()["parameters"]
    parse_ms = float(profile["parse_us"]["value"]) / 1e3
    numbers["cpython_profile_parse_ms"] = round(parse_ms, 3)
    share = per["overhead_ms"] / per["cpu_ms"]
    lo, hi = float(per["overhead_ms"].min()), float(per["overhead_ms"].max())
    text = (
        f"the server's CPU per request beyond the handler's own {per['cpu_ms'].iloc[0]:g} ms "
        "(parsing, responding, the backend call's I/O, scheduling), measured on "
        f"{len(per)} servers: {lo:.2f} to {hi:.2f} ms "
        f"({', '.join(f'{t} {r.overhead_ms:.2f}' for t, r in per.iterrows())}); the "
        f"calibrated CPython profile's parse and respond alone is {parse_ms:.2f} ms"
    )
    # The claim's first half (all I/O: the layer's time is waiting) is not in
    # question; only its CPU half is, so a CPU cost that is not negligible
    # refines the claim rather than contradicting it.
    negligible = share < NEGLIGIBLE
    return judge(
        holds=bool(negligible.all()),
        partly=True,
        yes=f"{text}: under a tenth of the business CPU everywhere",
        part=f"{text}: not negligible on {int((~negligible).sum())} of {len(per)} servers "
        "(at least a tenth of the business CPU); the layer waits on I/O but each request "
        "still costs real CPU, comparable with a small handler's",
        no="",
        numbers=numbers,
    )


@claim(
    "ten-thousand-threads",
    "memory",
    "1个tcp连接对应1个线程，10K个连接需要10K个线程，典型的内存消耗是10G",
    "One thread per TCP connection: 10K connections need 10K threads, typically 10 GB.",
    "python experiments/jvm_ten_thousand_threads.py --findings-only",
)
def ten_thousand_threads(ev: Evidence) -> Finding:
    df = ev.results("jvm_ten_thousand_threads")
    m = df[(df["source"] == "measured") & (df["target"] == "java-threads")].sort_values(
        "connections"
    )
    lo, hi = m.iloc[0], m.iloc[-1]
    n = float(hi["connections"] - lo["connections"])
    reserved = (hi["virtual_mib"] - lo["virtual_mib"]) / n * 10_000
    resident = (
        ((hi["pss_mib"] + hi["kernel_own_mib"]) - (lo["pss_mib"] + lo["kernel_own_mib"]))
        / n
        * 10_000
    )
    numbers = {
        "threads": int(hi["threads"]),
        "reserved_gib_per_10k": round(reserved / 1024, 2),
        "resident_gib_per_10k": round(resident / 1024, 2),
        "notes_gib": round(TEN_GB_MIB / 1024, 2),
    }
    text = (
        f"a real JVM with {int(hi['threads']):,} threads: 10,000 threads reserve "
        f"{reserved / 1024:.1f} GiB and hold {resident / 1024:.2f} GiB resident with their "
        f"kernel memory (the notes: {TEN_GB_MIB / 1024:.1f} GiB)"
    )
    kinds = ("reserved address space", "resident memory")
    if not _near_ten_gb(reserved):
        kinds = kinds[::-1]
    return judge(
        holds=_near_ten_gb(reserved) and _near_ten_gb(resident),
        partly=_near_ten_gb(reserved) or _near_ten_gb(resident),
        yes=f"{text}: both match",
        part=f"{text}: true of {kinds[0]}, not of {kinds[1]}",
        no=f"{text}: neither matches within {ABOUT:.0%}",
        numbers=numbers,
    )


@claim(
    "few-threads-suffice",
    "layers",
    "不需要10K个线程，只要100个甚至10个就够了",
    "The business layer does not need 10K threads: 100 or even 10 suffice.",
    "simlab plan --platform cpython --connections 10000 --rate 100 --cpu-ms 1 --io-ms 100 "
    "--models reactor-pool --slo-p99-ms 500 --analytic",
)
def few_threads(ev: Evidence) -> Finding:
    from simlab.claims.sims import plan_workers  # noqa: PLC0415 - loads the planner

    workers, p99_ms = plan_workers(
        ReactorPool.name, ev.platform(), rate=100.0, io_ms=100.0, p99_ms=500.0
    )
    numbers = {"workers": workers, "p99_ms": p99_ms, "connections": 10_000, "rate_rps": 100}
    text = (
        f"the planner on the calibrated cpython profile sizes a reactor-pool for 10,000 "
        f"connections, 100 req/s, 1 ms CPU and 100 ms of backend wait at {workers} workers "
        f"(p99 {p99_ms:.0f} ms, goal 500 ms)"
    )
    return judge(
        holds=workers is not None and workers <= 100,
        yes=f"{text}: within the notes' 100",
        no=f"{text}: more than 100",
        numbers=numbers,
    )


@claim(
    "threads-heavy-coroutines-light",
    "memory",
    "多核的多线程虽然是并发，但是太重量，切换时间和内存消耗都比较大，而协程很轻",
    "Threads are heavy (switching time and memory); coroutines are light.",
    "simlab calibrate (data/profiles/cpython.json); "
    "python experiments/thread_count_collapse.py --findings-only; "
    "python experiments/gil_overload_collapse.py --findings-only",
)
def threads_heavy(ev: Evidence) -> Finding:
    params = ev.profile()["parameters"]
    p = {k: v["value"] if isinstance(v, dict) else v for k, v in params.items()}
    thread_kib = float(p["thread_kib"]) + float(p["thread_kernel_kib"])
    task_kib = float(p["task_kib"])
    df = ev.results("thread_count_collapse")
    m = df[(df["source"] == "measured") & (df["server"] == ThreadPerConnection.name)]
    peak = float(m["throughput_rps"].max())
    last = m.sort_values("concurrency").iloc[-1]
    fall = 1 - float(last["throughput_rps"]) / peak
    over = _overload(ev.results("gil_overload_collapse"))
    # The profile's per-switch and per-task CPU are only usable when their
    # fits are identified (a 95% CI clear of zero); otherwise the measured
    # throughput with many threads is the evidence on switching.
    switch = _identified(params.get("context_switch_us"))
    task = _identified(params.get("task_us"))
    numbers: dict[str, Any] = {
        "thread_resident_kib": round(thread_kib, 1),
        "thread_reserved_kib": round(float(p["stack_kib"]), 0),
        "coroutine_kib": round(task_kib, 2),
        "context_switch_us": "not identified" if switch is None else round(switch, 2),
        "coroutine_task_us": "not identified" if task is None else round(task, 1),
        "threads_measured": int(last["concurrency"]),
        "throughput_fall_from_peak": round(fall, 3),
        "overload_connections": over.connections,
        "overload_threads_mean": round(over.threads, 1),
        "overload_fall_at_5ms": round(over.fall, 3),
        "overload_fall_at_50ms": round(over.fall_at_50, 3),
    }
    memory_heavy = thread_kib >= LIGHT * task_kib
    fitted_heavier = switch is not None and task is not None and switch >= task
    # Past its capacity: a fall from the fewest connections to the most, beyond
    # the runs, at CPython's default switch interval. If ten times the interval
    # leaves at least half of it (the share's whole interval over the runs), the
    # threads cost throughput whatever the interval: the claim holds in switching.
    # If it leaves under half, or the runs do not settle which, the fall comes
    # with the interval's setting: that refines the claim, it does not confirm it.
    over_falls = over.fall > FALL and over.beyond
    interval_free = over_falls and over.left is not None and over.left[0] >= SHARE_LEFT
    halved = over_falls and over.left is not None and over.left[1] < SHARE_LEFT
    switch_heavy = fitted_heavier or fall > FALL or interval_free
    fits = (
        f"the fitted switch costs {switch:.2g} us against {task:.0f} us per task"
        if switch is not None and task is not None
        else "the profile's switch and task CPU are not identified (95% CIs span zero)"
    )
    text = (
        f"calibrated CPython: a thread holds {thread_kib:.0f} KiB resident "
        f"({float(p['stack_kib']):,.0f} KiB reserved) against a coroutine's {task_kib:.2f} "
        f"KiB; {fits}; measured, {int(last['concurrency'])} threads serve {fall:.0%} below "
        f"the peak (a fall being more than {FALL:.0%}); past its capacity, "
        f"{over.connections} connections ({over.threads:.0f} threads) serve "
        + (f"{over.fall:.0%} less" if over.fall >= 0 else f"{-over.fall:.0%} more")
        + " than the fewest measured at Python's 5 ms switch interval"
        + ("" if over.beyond else " (the two levels' runs meet: not beyond their noise)")
        + (
            f" and {over.fall_at_50:.0%} less at 50 ms"
            if over.fall_at_50 >= 0
            else f" and {-over.fall_at_50:.0%} more at 50 ms"
        )
    )
    gil = "in switching past capacity at CPython's default switch interval, " + (
        f"a fall that ten times the interval leaves under {SHARE_LEFT:.0%} as large"
        if halved
        else f"a fall of which ten times the interval leaves {over.share:.0%}, under or over "
        f"{SHARE_LEFT:.0%} these runs do not settle"
    )
    gil_only = over_falls and not interval_free
    return judge(
        holds=memory_heavy and switch_heavy,
        partly=memory_heavy or switch_heavy or gil_only,
        yes=f"{text}: heavy in memory and in switching",
        part=f"{text}: heavy in "
        + (
            f"memory, and {gil}"
            if memory_heavy and gil_only
            else "memory only: switching many threads costs no throughput shown here"
            if memory_heavy
            else "switching only"
            if switch_heavy
            else gil.removeprefix("in ")
        ),
        no=f"{text}: neither heavier in memory nor in switching",
        numbers=numbers,
    )


@dataclass(frozen=True)
class _Overload:
    """``gil_overload_collapse``'s measured ends: how much less the most
    connections serve than the fewest at Python's 5 ms switch interval (a
    fraction), whether that is beyond the runs (``findings.ranges_apart``), the
    same fall at 50 ms, the share of the first the second is with its interval
    over the runs (``findings.share_left``), and the threads the server held
    on the most connections."""

    connections: int
    threads: float
    fall: float
    beyond: bool
    fall_at_50: float
    share: float
    left: tuple[float, float] | None


def _overload(df: pd.DataFrame) -> _Overload:
    m = df[df["source"] == "measured"]
    levels = sorted(m.loc[m["switch_ms"] == 5.0, "concurrency"].unique())

    def runs(switch: float, n: int, column: str = "throughput_rps") -> pd.Series:
        part = m[(m["switch_ms"] == switch) & (m["concurrency"] == n)]
        return part[column]

    lo, hi = levels[0], levels[-1]

    def fall(switch: float) -> float:
        return 1 - float(runs(switch, hi).mean()) / float(runs(switch, lo).mean())

    share, left = share_left(runs(5.0, lo), runs(5.0, hi), runs(50.0, lo), runs(50.0, hi))
    return _Overload(
        connections=int(hi),
        threads=float(runs(5.0, hi, "threads_mean").mean()),
        fall=fall(5.0),
        beyond=ranges_apart(runs(5.0, lo), runs(5.0, hi)),
        fall_at_50=fall(50.0),
        share=share,
        left=left,
    )


def _identified(fit: Any) -> float | None:
    """A fitted value whose 95% CI excludes zero, else None (not identified)."""
    if not isinstance(fit, dict):
        return None
    ci = fit.get("ci95")
    if not ci or ci[0] is None or ci[1] is None or ci[0] <= 0 <= ci[1]:
        return None
    return float(fit["value"])


@claim(
    "loop-waits",
    "event loop",
    "那在它执行当前循环的网络请求时，其他网络请求是不是就处于等待状态？这跟单线程有什么区别？",
    "While the loop runs one request, do the others wait? How is that unlike one thread?",
    "python experiments/thread_count_collapse.py --findings-only",
)
def loop_waits(ev: Evidence) -> Finding:
    df = ev.results("thread_count_collapse")
    m = df[(df["source"] == "measured") & (df["server"] == Async.name)].sort_values("concurrency")
    cpu_ms, io_ms = float(df["param_cpu_ms"].iloc[0]), float(df["param_io_ms"].iloc[0])
    one_thread = 1e3 / (cpu_ms + io_ms)  # one request at a time, waits included
    one_core = 1e3 / cpu_ms  # the loop's CPU alone
    peak = float(m["throughput_rps"].max())
    from simlab.findings import elasticity, scaling  # noqa: PLC0415

    flat = m[m["throughput_rps"] >= 0.9 * peak]
    b = elasticity(flat["concurrency"], flat["p50_ms"])
    shape = scaling(b, tol=0.15)  # "linear" within 0.85 to 1.15, as thread_count_collapse
    numbers = {
        "async_peak_rps": peak,
        "one_request_at_a_time_rps": round(one_thread, 1),
        "one_core_rps": round(one_core, 1),
        "p50_elasticity": round(b.slope, 2),
    }
    text = (
        f"measured: one loop serves {peak:.0f} req/s at most ({cpu_ms:g} ms CPU, {io_ms:g} ms "
        f"wait), {peak / one_thread:.1f}x a server doing one request at a time "
        f"({one_thread:.0f} req/s) and {peak / one_core:.0%} of one core's worth; once "
        f"throughput is flat its median grows as clients^{b.slope:.2f} ({shape})"
    )
    return judge(
        holds=peak > 1.5 * one_thread and shape == "linear",
        partly=peak > 1.5 * one_thread,
        yes=f"{text}: yes, the others wait for the CPU (queueing, linear in clients), "
        "but not for each other's I/O, which is the difference from one thread",
        part=f"{text}: the loop overlaps the waits; the queueing shape is not shown",
        no=f"{text}: the loop does no better than one request at a time",
        numbers=numbers,
    )
