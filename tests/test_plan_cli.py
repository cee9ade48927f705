"""``simlab plan``: the JSON contract, the inverse questions and one-line errors."""

from __future__ import annotations

import json

import pytest

from simlab.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


PLAN_KEYS = {
    "model",
    "feasible",
    "workers",
    "processes",
    "threads",
    "memory_mib",
    "virtual_mib",
    "latency_ms",
    "max_connections",
    "reason",
}


def test_plan_json_contract(capsys):
    code, out, err = run(capsys, "plan", "--json", "--memory-gib", "4", "--replications", "3")
    assert code == 0, err
    d = json.loads(out)
    assert {p["model"] for p in d["plans"]} == {
        "iterative",
        "process-per-connection",
        "thread-per-connection",
        "thread-pool",
        "reactor-pool",
        "async",
        "two-tier",
    }
    for p in d["plans"]:
        assert p.keys() >= PLAN_KEYS
        if p["feasible"]:
            assert p["latency_ms"]["p99"] <= 100 and p["reason"] == ""
            assert p["engine"] == "des" and p["checks"]
        else:
            assert p["reason"]
    # The recommendation is the feasible plan with the least resident memory.
    feasible = [p for p in d["plans"] if p["feasible"]]
    least = min(feasible, key=lambda p: p["memory_mib"])["model"]
    assert d["recommended"] == least
    assert f"{least} is recommended" in d["explanation"]


def test_plan_table(capsys):
    code, out, _ = run(capsys, "plan", "--analytic", "--models", "async,reactor-pool")
    assert code == 0
    assert "recommended" in out and "async" in out


def test_inverse_questions(capsys):
    code, out, err = run(capsys, "plan", "--max-connections", "--memory-gib", "2", "--json")
    assert code == 0, err
    limits = json.loads(out)["max_connections"]
    # An idle connection costs async kilobytes; thread-per-connection adds a thread.
    assert limits["async"] > 10 * limits["thread-per-connection"] > 0
    code, out, err = run(capsys, "plan", "--max-rate", "--analytic", "--models", "async", "--json")
    assert code == 0, err
    (r,) = json.loads(out)["max_rate"]
    assert r["model"] == "async" and r["max_rate_rps"] > 100


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--slo-p99-ms", "0"], "--slo-p99-ms"),
        (["--memory-gib", "lots"], "--memory-gib"),
        (["--think-ms", "100"], "rate"),
        (["--max-connections"], "--memory-gib"),
        (["--memory-basis", "virtual"], "--memory-basis"),
        (["--models", "nginx"], "--models"),
        (["--max-processes", "0"], "--max-processes"),
        (["--max-rate", "--max-connections"], "--max-connections"),
    ],
)
def test_bad_plan_options_get_one_line(capsys, argv, names):
    code, _, err = run(capsys, "plan", *argv)
    assert code == 2
    assert names in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_plan_across_platforms_ranks_by_memory_and_cores(capsys):
    code, out, err = run(
        capsys,
        "plan",
        "--json",
        "--analytic",
        "--platforms",
        "cpython,jvm,go",
        "--models",
        "async,thread-per-connection,two-tier",
    )
    assert code == 0, err
    d = json.loads(out)
    assert set(d["platforms"]) == {"cpython", "jvm", "go"}
    mem = [c["memory_mib"] for c in d["by_memory"]]
    cores = [c["cores_busy"] for c in d["by_cores"]]
    assert mem == sorted(mem) and cores == sorted(cores)
    assert (
        len(d["by_memory"])
        == len(d["by_cores"])
        == sum(p["feasible"] for r in d["platforms"].values() for p in r["plans"])
    )
    first = d["by_memory"][0]
    assert d["winner"] == [first["model"], first["platform"]]
    assert d["explanation"].startswith(f"{first['model']} on {first['platform']} wins")


@pytest.mark.parametrize(("basis", "winner"), [("resident", "go"), ("reserved", "go")])
def test_plan_across_platforms_explains_the_gap_by_its_largest_unit(capsys, basis, winner):
    # A thread per connection on the JVM and on Go: the runtimes differ in what
    # a thread (a goroutine) costs, and the explanation must say so from the units.
    code, out, err = run(
        capsys,
        "plan",
        "--json",
        "--analytic",
        "--platforms",
        "jvm,go",
        "--models",
        "thread-per-connection",
        "--memory-basis",
        basis,
    )
    assert code == 0, err
    d = json.loads(out)
    assert d["winner"] == ["thread-per-connection", winner]
    assert "Most of the gap" in d["explanation"] and "is threads:" in d["explanation"]


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--platforms", "cpython", "--platform", "jvm"], "--platforms"),
        (["--platforms", "cpython,cpython"], "--platforms"),
        (["--platforms", "nosuch"], "nosuch"),
        (["--platforms", ","], "--platforms"),
        (["--platforms", "cpython", "--max-rate"], "--platforms"),
    ],
)
def test_bad_platforms_get_one_line(capsys, argv, names):
    code, _, err = run(capsys, "plan", "--analytic", *argv)
    assert code == 2
    assert names in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
