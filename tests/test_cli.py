"""The simlab command: options, JSON contract, and one-line errors with exit status 2."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import pytest

from simlab import Architecture, Workload, load_platform
from simlab.cli import main
from simlab.distributions import Exponential, Fixed
from simlab.models import MODELS
from simlab.streams import Deal

QUICK = ["--duration", "5", "--warmup", "1", "--replications", "2"]
CORRUPT = str(Path(__file__).parent / "data" / "corrupt-profile.json")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse exits for its own errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_simulate_json(capsys):
    code, out, err = run(capsys, "simulate", "async", "--json", *QUICK)
    assert code == 0, err
    s = json.loads(out)
    assert s["model"] == "async" and s["engine"] == "des"
    assert s["workload"]["connections"] == 10_000 and s["workload"]["rate_rps"] == 100
    assert s["threads"]["peak"] == 1


def test_options_reach_the_model(capsys):
    code, out, _ = run(
        capsys,
        "simulate",
        "reactor-pool",
        "--json",
        *QUICK,
        "--connections",
        "500",
        "--rate",
        "20",
        "--cpu-ms",
        "2",
        "--cpu-dist",
        "exp",
        "--io-ms",
        "10",
        "--io-dist",
        "lognormal:2",
        "--calls",
        "3",
        "--fanout",
        "parallel",
        "--requests-per-connection",
        "4",
        "--platform",
        "jvm",
        "--cores",
        "8",
        "--no-gil",
        "--set",
        "parse_us=12.5",
        "--workers",
        "7",
        "--processes",
        "2",
        "--backlog",
        "50",
        "--seed",
        "9",
    )
    assert code == 0
    s = json.loads(out)
    w, p, a = s["workload"], s["platform"], s["architecture"]
    assert (w["connections"], w["rate_rps"], w["calls"], w["fanout"]) == (500, 20, 3, "parallel")
    assert w["cpu"] == "Exponential(0.002)" and w["io"] == "LogNormal(0.01, cv=2.0)"
    assert w["requests_per_connection"] == 4
    assert (p["name"], p["cores"], p["gil"], p["parse_us"]) == ("jvm", 8, False, 12.5)
    assert a == {"workers": 7, "processes": 2, "backlog": 50}
    assert s["threads"]["peak"] == 2 * (7 + 1) + 1  # two copies and their master
    assert s["seed"] == 9


def test_words_for_unbounded_values(capsys):
    code, out, _ = run(
        capsys,
        "simulate",
        "thread-pool",
        "--json",
        *QUICK,
        "--cores",
        "unlimited",
        "--backlog",
        "unbounded",
        "--requests-per-connection",
        "persistent",
    )
    s = json.loads(out)
    assert code == 0
    assert s["platform"]["cores"] is None and s["architecture"]["backlog"] is None
    assert s["workload"]["requests_per_connection"] is None


def test_closed_loop_and_trace(capsys, tmp_path):
    code, out, _ = run(
        capsys, "simulate", "async", "--json", *QUICK, "--think-ms", "100", "--connections", "50"
    )
    assert code == 0 and json.loads(out)["workload"]["arrivals"] == "closed"
    trace = tmp_path / "t.csv"
    trace.write_text("time_s,connection\n0.5,0\n1.5,3\n2.0,0\n")
    code, out, _ = run(
        capsys,
        "simulate",
        "async",
        "--json",
        "--trace",
        str(trace),
        "--connections",
        "5",
        "--warmup",
        "0",
        "--duration",
        "5",
        "--replications",
        "1",
    )
    s = json.loads(out)
    assert code == 0 and s["requests"] == 3 and s["completed"] == 3


def test_compare_json_has_every_model(capsys):
    code, out, _ = run(capsys, "compare", "--json", *QUICK)
    assert code == 0
    results = json.loads(out)["results"]
    assert [r["model"] for r in results] == [
        "iterative",
        "process-per-connection",
        "thread-per-connection",
        "thread-pool",
        "reactor-pool",
        "async",
        "two-tier",
    ]


def test_theory_json(capsys):
    code, out, _ = run(
        capsys,
        "simulate",
        "reactor-pool",
        "--json",
        "--theory",
        *QUICK,
        "--platform",
        "ideal",
        "--cpu-ms",
        "0",
        "--io-dist",
        "exp",
        "--connections",
        "1000000",
    )
    t = json.loads(out)["theory"]
    assert code == 0 and t["applies"] and t["queue"] == "M/M/32" and t["exact"]
    code, out, _ = run(capsys, "simulate", "reactor-pool", "--json", "--theory", *QUICK)
    assert json.loads(out)["theory"]["applies"] is False


def test_theory_p99_only_when_it_holds():
    # With a random backend wait after the loop, M/M/1's sojourn tail plus the
    # mean wait is not the p99, so no p99 is offered.
    ideal = load_platform("ideal")
    random_io = Workload(connections=10**9, rate=70.0, cpu=Exponential(0.01), io=Exponential(0.2))
    fixed_io = random_io.with_(io=Fixed(0.2))
    a = MODELS["async"].analytic(random_io, ideal, Architecture(), Deal.of_run())
    b = MODELS["async"].analytic(fixed_io, ideal, Architecture(), Deal.of_run())
    assert not isinstance(a, str) and not isinstance(b, str)
    assert "latency_p99_ms" not in a.values
    assert "latency_p99_ms" in b.values


def test_human_tables(capsys):
    code, out, _ = run(capsys, "compare", *QUICK)
    assert code == 0 and "thread-per-connection" in out and "reserved" in out
    code, out, _ = run(capsys, "simulate", "async", "--theory", *QUICK, "--platform", "ideal")
    assert code == 0 and "theory" in out and "latency p99" in out


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["simulate", "nosuch"], "unknown model 'nosuch'"),
        (["simulate", "async", "--workers", "0"], "--workers"),
        (["simulate", "async", "--rate", "-3"], "--rate"),
        (["simulate", "async", "--rate", "abc"], "--rate"),
        (["simulate", "async", "--io-dist", "weird"], "--io-dist"),
        (["simulate", "async", "--cpu-dist", "lognormal:0"], "--cpu-dist"),
        (["simulate", "async", "--platform", "missing.json"], "--platform"),
        (["simulate", "async", "--set", "bogus=1"], "--set"),
        (["simulate", "async", "--set", "parse_us=lots"], "--set parse_us"),
        (["simulate", "async", "--duration", "0"], "--duration"),
        (["simulate", "async", "--replications", "0"], "--replications"),
        (["simulate", "async", "--cores", "zero"], "--cores"),
        (["simulate", "async", "--trace", "/nonexistent.csv"], "--trace"),
        (["compare", "--models", "async,bogus"], "unknown model 'bogus'"),
        (["simulate", "async", "--rate", "1", "--think-ms", "5"], "--think-ms"),
        (["simulate", "async", "--rate", "1000000"], "rate"),
        (["measure", "nosuch"], "unknown target 'nosuch'"),
        (["measure", "async", "--connections", "60000", "--sources", "1"], "connections"),
        (["measure", "async", "--duration", "-1"], "--duration"),
        (["measure", "memory", "--sizes", "5"], "--sizes"),
        (["measure", "async", "--pacing", "spin"], "--pacing"),
        (["serve", "nosuch"], "unknown model 'nosuch'"),
        (["validate", "--platform", "missing-profile.json"], "--platform"),
        (["simulate", "async", "--platform", CORRUPT], "cannot read"),
        (["validate", "--platform", CORRUPT], "cannot read"),
        (["calibrate", "--name", "../escape"], "--name"),
        (["calibrate", "--runtime", "cobol"], "--runtime"),
        (["calibrate", "--runtime", "jvm", "--quick"], "--quick"),
        (["calibrate", "--runtime", "go", "--refit", "--name", "absent"], "--refit"),
        (["calibrate", "--measure-missing"], "--measure-missing"),
        (["calibrate", "--runtime", "go", "--refit", "--measure-missing"], "--measure-missing"),
        (["validate", "--platform", "nosuch"], "--platform"),
        (["validate", "--gate-margin", "0.95"], "--gate-margin"),
        (["validate", "--gate-wait", "-1"], "--gate-wait"),
        (["calibrate", "--gate-retries", "9"], "--gate-retries"),
        (["calibrate", "--gate-budget", "lots"], "--gate-budget"),
        (["usl", "async", "--levels", "1,2"], "--levels"),
    ],
)
def test_bad_options_one_line_exit_2(capsys, argv, names):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("simlab: error:") and names in lines[0]


def test_console_script_errors_have_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "simlab", "simulate", "async", "--workers", "-1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_only_the_program_leaves_its_heap_at_exit(capsys):
    # Run as the program (main() with no argv), simulate freezes the collector
    # once its output is written, so that the exit skips the last collection;
    # called with its argv (a test, a script), main leaves the collector alone.
    program = (
        "import gc, sys\n"
        "from simlab.cli import main\n"
        "sys.argv = ['simlab', 'simulate', 'thread-pool', '--duration', '1', '--json']\n"
        "assert main() == 0\n"
        "print('frozen', gc.get_freeze_count())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(proc.stdout.split("frozen")[0])["engine"] == "des"
    assert int(proc.stdout.split("frozen")[1]) > 0
    before = gc.get_freeze_count()
    code, out, err = run(capsys, "simulate", "thread-pool", "--duration", "1", "--json")
    assert code == 0 and json.loads(out)["engine"] == "des", err
    assert gc.get_freeze_count() == before


def test_json_is_byte_identical_across_processes():
    cmd = [
        sys.executable,
        "-m",
        "simlab",
        "simulate",
        "thread-pool",
        "--json",
        *QUICK,
        "--requests-per-connection",
        "1",
    ]
    a = subprocess.run(cmd, capture_output=True, check=True, timeout=120).stdout
    b = subprocess.run(cmd, capture_output=True, check=True, timeout=120).stdout
    c = subprocess.run([*cmd, "--seed", "2"], capture_output=True, check=True, timeout=120).stdout
    assert a == b and a != c


def test_auto_says_why_it_runs_the_des(capsys):
    # On the default (calibrated) platform auto runs the fast engine, silently;
    # a bounded backlog drops requests, which it does not reproduce, and auto
    # says so in one stderr line and in the JSON.
    code, out, err = run(capsys, "simulate", "reactor-pool", "--engine", "auto", "--json", *QUICK)
    assert code == 0, err
    s = json.loads(out)
    assert s["engine"] == "fast" and "engine_reason" not in s and not err.strip()
    code, out, err = run(
        capsys, "simulate", "reactor-pool", "--engine", "auto", "--backlog", "5", "--json", *QUICK
    )
    assert code == 0, err
    s = json.loads(out)
    assert s["engine"] == "des" and "backlog" in s["engine_reason"]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--engine auto runs the DES" in lines[0] and "backlog" in lines[0]
