"""Whole-process benchmarks: what a user waits for, each command a process of its own.

Every row is a fresh process, timed from its start to its exit (imports,
set-up, the run, the summary and the output all included), with its peak
resident memory (``wait4``'s ``ru_maxrss``), all in this one run on this one
machine, so the ratios mean something where the absolute times only describe
the machine:

- simlab ``simulate`` on M/M/100 (lambda = 90/s, S ~ Exp(1 s), reactor-pool
  with 100 workers, no warm-up, one replication) with ``--engine des``,
  ``fast`` and ``auto`` on the ``ideal`` platform, and ``auto`` on the default
  platform (``cpython``: the calibrated profile when there is one);
- the same queue as a minimal SimPy script, in Ciw, and as a pure-Python
  heap recursion (``benchmarks/minimal/``);
- at 50,000 and 500,000 requests (5,000,000 with ``--full``);
- ``simlab --help``, ``simlab simulate --help`` and ``import simlab`` beside
  a bare ``python -c pass``; the default ``simlab plan``;
- the scale case: 100,000 connections at 10,000 requests/s for 60 s
  (reactor-pool, 400 workers, 1 ms of CPU and one 20 ms call, the ``jvm``
  platform with unlimited cores, ``--engine auto``);
- the summary against the kernel in one fast run of 500,000 requests, on
  the ideal and the default platform (``benchmarks/bench_summary.py``);
- the dashboard: the browser test (``tests/dashboard/test_browser.py``)
  times how long each Explore page control change takes to be answered,
  and its timings are tabulated here (``--no-dashboard`` skips it).

Each command runs once untimed first (numba's compile cache, bytecode), then
``--repeats`` times for every row up to 500,000 requests, the minimal
scripts' as simlab's, in passes over all those rows (the median is kept),
and ``--long-repeats`` times (3) for the 5,000,000 ones, the plan and the
scale case, in passes over those.
The results go to ``docs/benchmarks.md`` between its markers, with the
machine and every goal of the speed issue beside the ratio measured.

Run: ``make bench`` or ``python benchmarks/bench_whole.py [--full] [--quick]
[--shared] [--no-write]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform as host
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MINIMAL = ROOT / "benchmarks" / "minimal"
PAGE = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- Generated below by benchmarks/bench_whole.py: do not edit. -->"
END = "<!-- End of the generated part. -->"
LAM = 90.0
PYTHON = sys.executable
SIMLAB = [PYTHON, "-m", "simlab"]
MMC = [
    "simulate", "reactor-pool", "--connections", str(10**12), "--rate", str(LAM),
    "--cpu-ms", "0", "--io-ms", "1000", "--io-dist", "exp", "--workers", "100",
    "--warmup", "0", "--json",
]  # fmt: skip
# simlab holds at most 2,000,000 requests in a replication (``Model.max_requests``):
# a larger run is that many requests in replications of at most this many.
PER_REPLICATION = 1_000_000
SCALE = [
    "simulate", "reactor-pool", "--connections", "100000", "--rate", "10000",
    "--cpu-ms", "1", "--io-ms", "20", "--workers", "400", "--platform", "jvm",
    "--cores", "unlimited", "--duration", "60", "--warmup", "0", "--replications", "1",
    "--engine", "auto", "--json",
]  # fmt: skip


@dataclass
class Row:
    name: str
    argv: list[str]
    requests: int | None = None
    wall_s: float = float("nan")
    cpu_s: float = float("nan")
    peak_mib: float = float("nan")
    note: str = ""
    # (wall s, CPU s, peak MiB, exit status) of each run.
    runs: list[tuple[float, float, float, int]] = field(default_factory=list)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Bytecode is written and read, as on a user's machine.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def timed(argv: list[str]) -> tuple[float, float, float, int]:
    """(wall seconds, CPU seconds, peak resident MiB, exit status) of one process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd=ROOT
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024, proc.returncode


def warm_up() -> None:
    """Untimed: bytecode written, numba's compile caches filled, files in the page cache."""
    subprocess.run(
        [PYTHON, "-m", "compileall", "-q", "simlab", "benchmarks"],
        cwd=ROOT,
        env=_env(),
        check=False,
        stdout=subprocess.DEVNULL,
    )
    small = [*SIMLAB, *MMC, "--replications", "1", "--duration", "100", "--platform", "ideal"]
    for argv in (
        [*small, "--engine", "fast"],
        [*small, "--engine", "des"],
        [*SIMLAB, *MMC, "--replications", "1", "--duration", "100"],
    ):
        timed(argv)


def measure_interleaved(rows: list[Row], repeats: int) -> None:
    """Run each of ``rows`` ``repeats`` times, one pass over all of them at a
    time, so that a slow spell of the machine (on the virtual machine simlab
    was built on, a run's system time can jump by a fifth of a second for
    seconds on end) falls on every row of a pass rather than on every run
    of one row: a ratio of medians then compares rows timed in the same
    spells."""
    for done in range(repeats):
        for row in rows:
            row.runs.append(timed(row.argv))
            if done == repeats - 1:
                settle(row)


def settle(row: Row) -> None:
    """The row's numbers from its runs: the medians, the largest peak."""
    runs = row.runs
    if any(code != 0 for *_, code in runs):
        row.note = f"exit status {next(code for *_, code in runs if code != 0)}"
    row.wall_s = statistics.median(r[0] for r in runs)
    row.cpu_s = statistics.median(r[1] for r in runs)
    row.peak_mib = max(r[2] for r in runs)
    spread = f" [{min(r[0] for r in runs):.2f}, {max(r[0] for r in runs):.2f}]"
    print(
        f"{row.name:<44} {row.wall_s:9.2f} s{spread if len(runs) > 1 else ''} "
        f"{row.cpu_s:9.2f} cpu-s {row.peak_mib:8.0f} MiB {row.note}",
        flush=True,
    )


def dashboard_timings() -> tuple[list[dict[str, object]], str]:
    """The browser test's timings of the Explore page's controls, and a note
    (empty when it ran). The test writes them where ``TIMINGS_ENV`` says."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"simlab-dashboard-{os.getpid()}.json"
    env = _env() | {"SIMLAB_DASHBOARD_TIMINGS": str(out)}
    test = ["tests/dashboard/test_browser.py", "-q", "-p", "no:cacheprovider"]
    proc = subprocess.run(
        [PYTHON, "-m", "pytest", *test],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    try:
        timings = json.loads(out.read_text())
        out.unlink()
    except (OSError, ValueError):
        return [], f"the browser test wrote no timings (exit status {proc.returncode})"
    note = "" if proc.returncode == 0 else f"the browser test failed (exit {proc.returncode})"
    return timings, note


def render_dashboard(timings: list[dict[str, object]], note: str) -> list[str]:
    lines = [
        "",
        "### The dashboard: each Explore control change, answered",
        "",
        "Measured by the browser test (`tests/dashboard/test_browser.py`, headless"
        " Chromium against `streamlit run app.py` on loopback) in this run: the time"
        " from the key press or click that commits a sidebar control's change until"
        " the page, finished, says what it was computed for (the scenario's values,"
        " the page's last line; watched in the page at each change of its DOM, one"
        " round trip a change); each"
        " control is changed and set back. *server s* is the page's own account of"
        " its script run (the line above the last); the rest is the websocket and"
        " the browser swapping the changed data into the charts already drawn."
        " The goal (at most 0.5 s a change) is reported, never asserted.",
        "",
    ]
    if not timings:
        return [*lines, f"Not measured: {note or 'skipped (--no-dashboard)'}."]
    lines += ["| control | change | answered in s | server s | back | answered in s "
              "| server s | goal |",
              "|---|---|---:|---:|---|---:|---:|---|"]  # fmt: skip
    for t in timings:
        worst = max(float(str(t["s"])), float(str(t["back_s"])))
        server = float(str(t.get("server_s", "nan")))
        back_server = float(str(t.get("back_server_s", "nan")))
        lines.append(
            f"| {t['control']} | {t['to']} | {float(str(t['s'])):.2f} | {server:.2f} "
            f"| {t['back_to']} | {float(str(t['back_s'])):.2f} | {back_server:.2f} "
            f"| <= 0.5 s: {_met(worst <= 0.5)} |"
        )
    met = [str(t["control"]) for t in timings
           if max(float(str(t["s"])), float(str(t["back_s"]))) <= 0.5]  # fmt: skip
    lines += ["", f"Controls that meet 0.5 s both ways: {', '.join(met) or 'none'}."]
    if note:
        lines += ["", f"Note: {note}."]
    return lines


def summary_vs_kernel(requests: int) -> list[dict[str, object]]:
    """``benchmarks/bench_summary.py``'s in-process split of one fast run
    (kernel, inputs, summary), one dict per platform; empty if it failed."""
    proc = subprocess.run(
        [PYTHON, str(ROOT / "benchmarks" / "bench_summary.py"), "--requests", str(requests)],
        check=False,
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
    )
    out = []
    for line in proc.stdout.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def rows(sizes: list[int]) -> list[Row]:
    out = [
        Row("python -c pass", [PYTHON, "-c", "pass"]),
        Row("python -c 'import simlab'", [PYTHON, "-c", "import simlab"]),
        Row("simlab --help", [*SIMLAB, "--help"]),
        Row("simlab simulate --help", [*SIMLAB, "simulate", "--help"]),
    ]
    for n in sizes:
        reps = replications(n)
        duration = f"{n / reps / LAM:.4f}"
        sim = [*SIMLAB, *MMC, "--replications", str(reps), "--duration", duration]
        ideal = [*sim, "--platform", "ideal", "--engine"]
        out += [
            Row(f"minimal SimPy, {n:,}", [PYTHON, str(MINIMAL / "simpy_mmc.py"), str(n)], n),
            Row(f"pure-Python heap, {n:,}", [PYTHON, str(MINIMAL / "heap_mmc.py"), str(n)], n),
            Row(f"simlab des (ideal), {n:,}", [*ideal, "des"], n),
            Row(f"simlab fast (ideal), {n:,}", [*ideal, "fast"], n),
            Row(f"simlab auto (ideal), {n:,}", [*ideal, "auto"], n),
            Row(f"simlab auto (default platform), {n:,}", [*sim, "--engine", "auto"], n),
        ]
        if _has_ciw() and n <= 500_000:
            out.append(Row(f"Ciw, {n:,}", [PYTHON, str(MINIMAL / "ciw_mmc.py"), str(n)], n))
    out += [
        Row("simlab plan (default)", [*SIMLAB, "plan"]),
        Row("scale case (100K conns x 10K req/s x 60 s)", [*SIMLAB, *SCALE], 600_000),
    ]
    return out


def replications(n: int) -> int:
    """simlab's replications for ``n`` requests: one, or enough to stay under the cap."""
    return max(1, -(-n // PER_REPLICATION))


def _has_ciw() -> bool:
    # Found, not imported: this process stays small, and a child's peak
    # memory starts from its parent's at the fork.
    return importlib.util.find_spec("ciw") is not None


def ratio(base: Row | None, row: Row | None, *, cpu: bool = False) -> float | None:
    if base is None or row is None or row.note or base.note:
        return None
    return base.cpu_s / row.cpu_s if cpu else base.wall_s / row.wall_s


def goals(
    table: dict[str, Row], sizes: list[int], split: list[dict[str, object]] | None = None
) -> list[tuple[str, str, str, str]]:
    """(measure, goal, measured, met) for each goal of the speed issue."""

    def vs_simpy(name: str, n: int) -> tuple[float | None, str]:
        """The smaller of the wall and CPU ratios, and both shown: on a shared
        machine either can flatter a row (a wait for the CPU inflates one
        process's wall time, contention for caches its CPU time), so a goal
        is met only when both ratios meet it."""
        base, row = table.get(f"minimal SimPy, {n:,}"), table.get(f"{name}, {n:,}")
        wall, cpu = ratio(base, row), ratio(base, row, cpu=True)
        low = None if wall is None or cpu is None else min(wall, cpu)
        return low, f"{_x(wall)} (CPU time: {_x(cpu)})"

    out = []
    for n, want in ((500_000, 10.0), (5_000_000, 20.0)):
        goal = f">= {want:g}x minimal SimPy"
        if n not in sizes:
            how = "`--full`" if n > 500_000 else "without `--quick`"
            out.append((_auto(n), goal, f"not run (run {how})", "-"))
            continue
        r, shown = vs_simpy("simlab auto (default platform)", n)
        out.append((_auto(n), goal, shown, _met(r is not None and r >= want)))
    for n in sizes:
        r, shown = vs_simpy("simlab des (ideal)", n)
        ok = r is not None and r >= 1.5
        out.append(
            (f"DES, whole process, {n:,} requests", ">= 1.5x minimal SimPy", shown, _met(ok))
        )
    scale = table["scale case (100K conns x 10K req/s x 60 s)"]
    out.append(
        (
            "scale case",
            "<= 10 s and <= 1 GiB",
            f"{scale.wall_s:.1f} s, {scale.peak_mib / 1024:.2f} GiB",
            _met(not scale.note and scale.wall_s <= 10 and scale.peak_mib <= 1024),
        )
    )
    for name, limit in (("simlab --help", 0.25), ("simlab simulate --help", 0.25)):
        w, c = table[name].wall_s, table[name].cpu_s
        shown = f"{w:.2f} s (CPU {c:.2f} s)"
        out.append((f"`{name}`", f"<= {limit} s", shown, _met(w <= limit)))
    w = table["python -c 'import simlab'"].wall_s
    out.append(("`import simlab`", "<= 0.15 s", f"{w:.2f} s", _met(w <= 0.15)))
    for part in split or []:
        kernel, summary = float(str(part["kernel_s"])), float(str(part["summary_s"]))
        on_default = part["platform"] == "cpython"
        name = "the default platform's event loop" if on_default else "the ideal platform"
        out.append((
            f"summary of a {int(str(part['requests'])):,}-request fast run, {name}",
            "< 1/5 of the kernel's time",
            f"kernel {kernel:.2f} CPU s, summary {summary:.2f} CPU s ({summary / kernel:.2f}x)",
            _met(summary < kernel / 5),
        ))  # fmt: skip
    w = table["simlab plan (default)"].wall_s
    out.append(("default `simlab plan` (DES confirmation)", "<= 2 s", f"{w:.1f} s", _met(w <= 2)))
    return out


def _auto(n: int) -> str:
    return f"`--engine auto` on the calibrated default, whole process, {n:,} requests"


def _x(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return host.processor() or "unknown CPU"


def render(
    table: dict[str, Row],
    sizes: list[int],
    shared: bool,
    dashboard: tuple[list[dict[str, object]], str] = ([], ""),
    split: list[dict[str, object]] | None = None,
    repeats: int = 3,
    long_repeats: int = 1,
) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    lines = [
        BEGIN,
        "",
        "## Whole process: `benchmarks/bench_whole.py`",
        "",
        f"Measured {when} on {host.node() or 'this machine'}: {_cpu()}, "
        f"{os.cpu_count()} cores, Python {host.python_version()}, {host.system()} "
        f"{host.release()}; load average {load:.1f} at the end."
        + (
            " **The machine was shared** with other work at the time (this run at"
            f" `nice {os.nice(0)}`): absolute times are inflated, and noisy, more than"
            " the ratios, which come from the same run."
            if shared
            else ""
        ),
        "",
        "Each row is a fresh process timed from start to exit (imports, set-up, run,"
        " summary, output), its peak resident memory, the median of"
        f" {repeats} runs for every row up to 500,000 requests (taken in {repeats} passes"
        " over those rows, so that a slow spell of the machine falls on all of them;"
        " *wall s range* is the fastest and the slowest run), the median of"
        f" {long_repeats} for the longer ones, the plan and the scale case (in"
        f" {long_repeats} passes over them); CPU s is the process's user plus system time,"
        " steadier than"
        " the wall time on a busy machine. The queue is M/M/100, λ = 90/s,"
        " S ~ Exp(1 s): reactor-pool with 100 workers for simlab; the same queue in"
        " the minimal scripts"
        " (`benchmarks/minimal/`). *vs SimPy* is the minimal SimPy script's time over"
        " the row's, at the same number of requests.",
        "",
        "| command | requests | wall s | wall s range | CPU s | peak MiB | vs SimPy (wall) "
        "| vs SimPy (CPU) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table.values():
        base = table.get(f"minimal SimPy, {row.requests:,}") if row.requests else None
        r, rc = ratio(base, row), ratio(base, row, cpu=True)
        n = f"{row.requests:,}" if row.requests else ""
        wall = f"{row.wall_s:.2f}" + (f" ({row.note})" if row.note else "")
        walls = [run[0] for run in row.runs]
        spread = f"{min(walls):.2f}-{max(walls):.2f}" if len(walls) > 1 else ""
        lines.append(
            f"| {row.name} | {n} | {wall} | {spread} | {row.cpu_s:.2f} | {row.peak_mib:.0f} "
            f"| {_x(r)} | {_x(rc)} |"
        )
    lines += [
        "",
        "Ciw: "
        + (
            "run up to 500,000 requests (5,000,000 would take too long)."
            if _has_ciw()
            else "not installed (`pip install ciw`), so not run."
        ),
        "5,000,000 requests: "
        + (
            f"run; simlab runs them as {replications(5_000_000)} replications of"
            f" {5_000_000 // replications(5_000_000):,} (a replication holds at most"
            " 2,000,000 requests), side by side in one process per core, the command's"
            " own and workers forked from it (`--jobs auto`, its default; the CPU column"
            " adds up every process, the peak MiB is the largest one process's: together"
            " they hold more),"
            " the minimal scripts as one queue in one process."
            if 5_000_000 in sizes
            else "not run (`--full`)."
        ),
        "",
        "### The goals of the speed issue, measured in this run",
        "",
        "A ratio goal is met only when both the wall-time and the CPU-time ratios meet"
        " it: on a shared machine either can flatter a row.",
        "",
        "| measure | goal | measured | |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in goals(table, sizes, split)]
    if split:
        lines += [
            "",
            "The summary against the kernel comes from `benchmarks/bench_summary.py`, in one"
            " process, by its CPU clock: *kernel* is the compiled loop (the build made at"
            " install, `simlab/kernels.py`"
            + ("" if all(p.get("built_kernels") for p in split) else "; **not built here**")
            + "), *summary* everything after the replications (`simulation._result`: levels,"
            " peaks, means, percentiles and their intervals); drawing the inputs took "
            + ", ".join(f"{float(str(p['inputs_s'])):.2f} s ({p['platform']})" for p in split)
            + ".",
        ]
    lines += render_dashboard(*dashboard)
    lines += ["", END]
    return "\n".join(lines)


def write_page(section: str) -> None:
    text = PAGE.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + section + tail
    else:
        # The first time: after the introduction, before the first section.
        head, sep, tail = text.partition("\n## ")
        text = head + "\n" + section + "\n\n" + sep.lstrip("\n") + tail if sep else text + section
    PAGE.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="also 5,000,000 requests")
    ap.add_argument("--quick", action="store_true", help="50,000 requests only")
    ap.add_argument(
        "--repeats", type=int, default=5, help="runs of each row up to 500,000 requests"
    )
    ap.add_argument(
        "--long-repeats",
        type=int,
        default=3,
        help="runs of each 5,000,000-request row, the plan and the scale case",
    )
    ap.add_argument("--shared", action="store_true", help="say the machine was shared")
    ap.add_argument("--no-write", action="store_true", help="print, do not write the page")
    ap.add_argument("--no-dashboard", action="store_true", help="skip the browser's timings")
    args = ap.parse_args()
    sizes = [50_000] if args.quick else [50_000, 500_000]
    if args.full:
        sizes.append(5_000_000)
    warm_up()
    every = rows(sizes)
    # Every row up to 500,000 requests, SimPy's and Ciw's as simlab's, is the
    # median of its repeats, taken in passes over them all: a single run's
    # system time can jump by a fifth of a second (first touches of memory
    # another process just freed, on the virtual machine simlab was built on).
    short = [r for r in every if (r.requests or 0) <= 500_000 and "plan" not in r.name]
    measure_interleaved(short, args.repeats)
    # The rest likewise, fewer times: one 5,000,000-request run's system time
    # spread over a second from run to run (4 December), with the same faults.
    measure_interleaved([r for r in every if all(r is not s for s in short)], args.long_repeats)
    table = {row.name: row for row in every}
    dashboard: tuple[list[dict[str, object]], str] = ([], "")
    if not args.no_dashboard:
        dashboard = dashboard_timings()
        for t in dashboard[0]:
            print(f"dashboard: {t['control']} -> {t['to']} {float(str(t['s'])):.2f} s", flush=True)
    split = summary_vs_kernel(500_000)
    for part in split:
        print(f"summary vs kernel: {part}", flush=True)
    section = render(table, sizes, args.shared, dashboard, split, args.repeats, args.long_repeats)
    if args.no_write:
        print(section)
    else:
        write_page(section)
        print(f"wrote {PAGE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
