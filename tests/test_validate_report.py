"""The validation report and its rules, on made-up measurements (no real run).

What a runtime's peer is compared on: its model's prediction plus what its
calibration recorded it holds beyond the model; Go's thread count is not
the same quantity on both sides and never counts; goals are judged from the
rows, and the cross-runtime summary in the docs says "over" exactly where a
median misses its goal.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from simlab import validate as v
from simlab.errors import UserError
from simlab.params import Architecture
from simlab.real.grids import Case, runtime_cases

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _sim(threads_peak: float = 10.0, threads_mean: float = 10.0) -> SimpleNamespace:
    return SimpleNamespace(threads=SimpleNamespace(peak=threads_peak, mean=threads_mean))


def test_go_threads_never_count_and_jvm_threads_get_their_offset() -> None:
    go = runtime_cases("go")[0]
    extras = {"peers": {"go": {"threads_offset": None, "threads_note": "goroutines"}}}
    why = v._by_construction("threads_peak", go, _sim(401, 300), 0.1, extras)
    assert why is not None and "not the same quantity" in why
    java = next(c for c in runtime_cases("jvm") if c.target == "java-threads")
    extras = {"peers": {"java-threads": {"threads_offset": {"value": 19}}}}
    out = {m: v.Predicted(100.0, [90.0, 110.0]) for m in v.METRICS}
    shifted = v._runtime_peer(java, dict(out), extras)
    assert shifted["threads_peak"].value == 119.0 and shifted["threads_peak"].ci == [109.0, 129.0]
    assert shifted["memory_user"].value == 100.0  # the reference peer has no memory offset
    tomcat = Case("tomcat-nio", java.workload, Architecture(workers=8))
    extras = {"peers": {"tomcat-nio": {"threads_offset": {"value": 17},
                                       "user_offset_mib": {"value": 38.5}}}}  # fmt: skip
    shifted = v._runtime_peer(tomcat, dict(out), extras)
    assert shifted["memory_user"].value == 138.5


def _rows(error: float) -> list[dict]:
    """One case, every metric measured at 100 and predicted off by ``error``."""
    case = runtime_cases("node")[0]
    return [
        v._row(case, m, [100.0, 100.0, 100.0], v.Predicted(100.0 * (1 + error), None), None, 1.0)
        for m in v.METRICS
    ]


def test_report_judges_the_goals_from_the_rows() -> None:
    near = v.summarize(_rows(0.01))
    far = v.summarize(_rows(0.40))
    assert all(near["metrics"][m]["met"] for m in v.METRICS)
    assert not any(far["metrics"][m]["met"] for m in v.METRICS)
    result = {
        "rows": _rows(0.40), "summary": far, "platform": "node", "quick": False, "repeats": 3,
        "sim_replications": 8, "git_revision": "x" * 40, "created": "now",
    }  # fmt: skip
    text = v.report(result)
    # Runs that agree: each model's miss is beyond their noise.
    assert all(far["models"]["node"][m]["beyond_noise"] for m in v.METRICS)
    assert "(over goal beyond noise)" in text and "| latency_p99 | 40.0% |" in text


def test_a_models_miss_is_within_the_runs_noise_only_where_other_runs_could_meet_the_goal() -> None:
    def model_of(runs: list[float], predicted: float) -> dict:
        case = runtime_cases("node")[0]
        row = v._row(case, "throughput_rps", runs, v.Predicted(predicted, None), None, 1.0)
        return v.summarize([row])["models"][row["model"]]["throughput_rps"]

    # One case, 10% off a 5% goal, its runs 328 to 428 req/s: a draw of the
    # runs can put the mean at the prediction.
    wide = model_of([327.5, 343.0, 427.6], 404.0)
    assert not wide["met"] and wide["beyond_noise"] is False
    assert wide["median_ci95"][0] <= 0.05 < wide["median_ci95"][1]
    # The same error with runs that agree: beyond their noise.
    tight = model_of([364.0, 366.0, 365.7], 404.0)
    assert not tight["met"] and tight["beyond_noise"] is True
    # Met: nothing to tell.
    assert model_of([400.0, 405.0, 404.0], 404.0)["beyond_noise"] is None
    assert v._model_flag(wide).startswith(" (over goal within the runs' noise: ")
    assert v._model_flag(tight) == " (over goal beyond noise)"


def test_docs_summary_says_over_exactly_where_a_goal_is_missed(tmp_path, monkeypatch) -> None:
    spec = importlib.util.spec_from_file_location("gen_platforms", DOCS / "gen_platforms.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    import json  # noqa: PLC0415

    for name, error in (("near", 0.01), ("far", 0.40)):
        folder = tmp_path / "validation" / name
        folder.mkdir(parents=True)
        rows = _rows(error)
        result = {"rows": rows, "summary": v.summarize(rows), "platform": name}
        (folder / "validation.json").write_text(json.dumps(result))
    monkeypatch.setattr(gen, "DATA", tmp_path)
    table = gen.validated()
    near = next(line for line in table.splitlines() if line.startswith("| `near` | **all**"))
    far = next(line for line in table.splitlines() if line.startswith("| `far` | **all**"))
    assert "**over**" not in near and far.count("**over**") == len(v.METRICS)


def _threads_sim(peak_exact: float, mean: float) -> SimpleNamespace:
    return SimpleNamespace(threads=SimpleNamespace(peak_exact=peak_exact, mean=mean))


def test_a_thread_count_that_differs_between_real_runs_counts_as_dynamic() -> None:
    case = Case("process-per-connection", runtime_cases("node")[0].workload, Architecture())
    fixed = _threads_sim(201, 201)  # the model's children are all there from the start
    why = v._by_construction("threads_peak", case, fixed, 0.5, {}, [201.0, 201.0, 201.0])
    assert why is not None and "structural" in why
    # The real server's count moved (its parent forked slower than connections came).
    assert v._by_construction("threads_peak", case, fixed, 0.5, {}, [193.0, 168.0, 159.0]) is None
    # ... and so does the model's, when its count changes during the run.
    assert v._by_construction("threads_peak", case, _threads_sim(7, 3), 0.5, {}, [5.0]) is None


def test_gthread_pool_follows_thread_pool_executor() -> None:
    lazy = Architecture(workers=6, processes=2, first_read="worker")
    # Every persistent connection's first read takes a thread at the start.
    assert v.lazy_pool(lazy, 60, 0.0) == 12
    # Few connections, few requests at once: only as many threads as tasks.
    assert v.lazy_pool(lazy, 2, 3.0) == 4  # 2 each: 3 tasks spread over 2 processes
    # With the loop reading first requests, the pool grows to what ran at once.
    reactor = Architecture(workers=8)
    assert v.lazy_pool(reactor, 200, 5.0) == 5
    assert v.lazy_pool(reactor, 200, 30.0) == 8  # never beyond max_workers
    # Idle, no connection held: the launcher's two readiness connections come
    # one after the other, and the second finds the first's thread idle.
    assert v.lazy_pool(reactor, 0, 0.0) == 1
    assert v.lazy_pool(lazy, 0, 0.0) == 2  # one thread in each copy, at most


def test_gthread_machinery_is_the_one_process_runs_less_their_pools_and_a_thread_a_worker() -> None:
    # Idle at 1 process (one connection, after the launcher's two, one at a
    # time: one pool thread for the three) and holding 1,000 connections:
    # 3 + 1 and 3 + 4 threads; a 2-process run whose pool the race dealt
    # unevenly (7: 3 pool threads where an even deal says 2) does not move
    # the line.
    peer = {"server_processes": [1, 2, 1], "connections": [1, 2, 1000], "threads": [4, 7, 7]}
    extras = {"peers": {"gunicorn-gthread": peer}}
    assert v._gthread_machinery(extras, "gunicorn-gthread", 1) == pytest.approx(3.0)
    assert v._gthread_machinery(extras, "gunicorn-gthread", 2) == pytest.approx(4.0)
    # The one-process runs set it: another master's thread moves every count.
    peer = {**peer, "threads": [5, 7, 8]}
    assert v._gthread_machinery(
        extras | {"peers": {"gunicorn-gthread": peer}}, "gunicorn-gthread", 2
    ) == pytest.approx(5.0)
    with pytest.raises(UserError, match="1-process"):
        v._gthread_machinery(
            {"peers": {"gunicorn-gthread": {**peer, "server_processes": [2, 2, 2]}}},
            "gunicorn-gthread",
            2,
        )


def test_a_lazy_peers_structure_runs_count_the_pool_threads_they_had_not_started() -> None:
    # gthread's idle structure runs had started 1, 2 and 4 of their pools' 4,
    # 8 and 4 threads (the launcher's two connections one after the other
    # and the one held; 1,000 first reads):
    # each is lifted by the memory of the rest, as the model's pool is whole.
    peer = {
        "server_processes": [1, 2, 1],
        "connections": [1, 2, 1000],
        "memory_mib": [30.0, 42.0, 33.0],
        "kernel_mib": [0.5, 0.8, 4.0],
    }
    platform = v.load_platform("ideal").with_(thread_kib=16.0, thread_kernel_kib=32.0)
    full = v._with_full_pools(peer, "gunicorn-gthread", platform)
    assert full["memory_mib"] == pytest.approx([30.0 + 3 * 16 / 1024, 42.0 + 6 * 16 / 1024, 33.0])
    assert full["kernel_mib"] == pytest.approx([0.5 + 3 * 32 / 1024, 0.8 + 6 * 32 / 1024, 4.0])
    assert full["connections"] == peer["connections"]


def test_a_peers_structure_is_a_plane_in_processes_and_connections() -> None:
    # Planted: 20 MiB, 11 MiB a process, 4 KiB a connection; the structure
    # runs' three shapes recover it exactly, and the per-connection cost is
    # the 1,000-connection run's, not averaged into the one-process value.
    def planted(p: float, n: float) -> float:
        return 20.0 + 11.0 * p + 4.0 / 1024 * n

    shapes = [(1, 1), (2, 2), (1, 1000)]
    peer = {
        "server_processes": [p for p, _ in shapes],
        "connections": [n for _, n in shapes],
        "memory_mib": [planted(p, n) for p, n in shapes],
    }
    assert v._plane(peer, "memory_mib", 4, 300) == pytest.approx(planted(4, 300))
    # No run with many connections (a peer that closes every one): a line in
    # processes, whatever the connections asked for.
    sync = {"server_processes": [1, 2], "connections": [1, 2], "memory_mib": [30.0, 42.0]}
    assert v._plane(sync, "memory_mib", 4, 0) == pytest.approx(66.0)
    assert v._plane(sync, "memory_mib", 4, 500) == pytest.approx(66.0)


def test_a_peers_own_kernel_memory_reaches_its_prediction() -> None:
    # gunicorn-sync's structure runs holding 0.44 and 0.66 MiB of kernel memory
    # (as calibrated on this machine): raise both by 0.25 and the case's kernel
    # prediction rises by 0.25; a profile that kept no kernel memory for its
    # peers (the tests' frozen one) shifts nothing.
    case = next(c for c in v.held_out(quick=False) if c.target == "gunicorn-sync")
    extras = v._profile_extras("cpython")
    platform = v.case_platform(case, v.lab_platform(v.load_platform("cpython"), extras), extras)
    sim = v._simulate(case, platform, 1)
    sync = {k: x for k, x in extras["peers"]["gunicorn-sync"].items() if k != "kernel_mib"}

    def kernel(peer: dict) -> float:
        changed = {**extras, "peers": {**extras["peers"], "gunicorn-sync": peer}}
        value = v._peer_adjusted(case, sim, platform, changed, 1)["memory_kernel"].value
        assert value is not None
        return value

    base = kernel({**sync, "kernel_mib": [0.44, 0.66]})
    assert kernel({**sync, "kernel_mib": [0.69, 0.91]}) == pytest.approx(base + 0.25)
    assert base != pytest.approx(sim.memory_mib.kernel_peak)
    assert kernel(sync) == pytest.approx(sim.memory_mib.kernel_peak)


def _paired(measured: list[float], predicted: list[float], metric: str = "latency_p99") -> dict:
    mean = sum(measured) / len(measured)
    p = sum(predicted) / len(predicted)
    return {
        "metric": metric,
        "evidence": True,
        "measured_runs": measured,
        "predicted_runs": predicted,
        "rel_error": abs(p - mean) / mean,
    }


def test_the_median_errors_interval_is_the_reports_median_and_widens_with_the_runs() -> None:
    steady = [_paired([10.0, 10.0, 10.0], [8.0, 8.0, 8.0]) for _ in range(5)]
    point, low, high = v.median_error_interval(steady, "latency_p99")
    # Runs that agree: no spread to draw from; the point is the report's median.
    assert point == low == high == pytest.approx(0.2)
    # One wild run a case: the same point can be far from the median an
    # ordinary run gives, and the interval says so.
    wild = [_paired([10.0, 10.0, 40.0], [8.0, 8.0, 8.0]) for _ in range(5)]
    point, low, high = v.median_error_interval(wild, "latency_p99")
    assert point == pytest.approx(abs(8.0 - 20.0) / 20.0)
    assert low < 0.3 < point <= high
    # Rows not evidence, or of another metric, are left out.
    others = [{**steady[0], "evidence": False}, {**steady[0], "metric": "latency_p50"}]
    assert v.median_error_interval(others, "latency_p99") is None


def test_the_median_errors_interval_keeps_cases_without_paired_runs_and_runs_at_zero() -> None:
    # A miss the runs agree on: the whole interval is over a 25% goal.
    miss = [_paired([10.0, 11.0, 9.0], [6.0, 6.0, 6.0]) for _ in range(5)]
    assert v.median_error_interval(miss, "latency_p99")[1] > 0.25
    # Without a prediction per run (a seeded case, runs dropped): its measured
    # runs are drawn against its one prediction; the point stays the rows'.
    unpaired = [{**row, "predicted_runs": None, "predicted": 6.0} for row in miss]
    unpaired[0]["predicted_runs"] = [6.0, 6.0]
    point, low, high = v.median_error_interval(unpaired, "latency_p99")
    assert point == pytest.approx(0.4) and low > 0.25
    # A run that measured nothing: a draw of it alone has no relative error,
    # the worst, never a division by zero.
    served = [_paired([0.0, 100.0, 100.0], [90.0, 90.0, 90.0], "throughput_rps")]
    point, low, high = v.median_error_interval(served, "throughput_rps")
    assert point == pytest.approx(abs(90.0 - 200.0 / 3) / (200.0 / 3))
    assert high == math.inf


def _signed(measured: float, predicted: float, within: bool = False) -> dict:
    return {
        "metric": "latency_p99",
        "evidence": True,
        "measured": measured,
        "predicted": predicted,
        "rel_error": abs(predicted - measured) / measured,
        "within_noise": within,
    }


def test_which_way_the_model_errs_flips_with_the_rows() -> None:
    under = [_signed(10.0, 8.0) for _ in range(9)] + [_signed(10.0, 11.0, within=True)]
    d = v.direction(under, "latency_p99")
    assert (d["under"], d["over"], d["under_outside_noise"], d["over_outside_noise"]) == (
        9,
        1,
        9,
        0,
    )
    assert d["biased"] and d["median_signed_error"] == pytest.approx(-0.2)
    sentence = v.direction_sentence("latency_p99", d)
    assert "under more often, a bias of the model beyond chance" in sentence
    # The same errors, half of them the other way: no direction, no "more often".
    mixed = [_signed(10.0, 8.0) for _ in range(5)] + [_signed(10.0, 12.0) for _ in range(5)]
    d = v.direction(mixed, "latency_p99")
    sentence = v.direction_sentence("p99", d)
    assert not d["biased"] and "not beyond chance" in sentence and "more often" not in sentence
    # All of them over: biased the other way.
    d = v.direction([_signed(10.0, 12.0) for _ in range(10)], "latency_p99")
    assert d["biased"] and "over more often" in v.direction_sentence("p99", d)
    # Two-sided: five all under give p = 0.0625 (one-sided would be 0.031),
    # and five cases can never show a bias.
    d = v.direction([_signed(10.0, 8.0) for _ in range(5)], "latency_p99")
    assert d["sign_test_p"] == pytest.approx(0.0625) and not d["biased"]
    assert "too few unequal cases (5)" in v.direction_sentence("p99", d)
    # Ties are left out: 6 under and 4 exact is 6 of 6 (p = 0.031), not 6 of 10.
    ties = [_signed(10.0, 8.0) for _ in range(6)] + [_signed(10.0, 10.0) for _ in range(4)]
    d = v.direction(ties, "latency_p99")
    assert d["equal"] == 4 and d["sign_test_p"] == pytest.approx(0.03125) and d["biased"]
    assert "equal in 4" in v.direction_sentence("p99", d)
    # Rows that are not evidence, or have no error, are not counted.
    ignored = [{**under[0], "evidence": False}, {**under[0], "rel_error": None}]
    assert v.direction(ignored + mixed, "latency_p99")["cases"] == 10
    assert v.direction(under, "latency_p50") is None
    # The report's section: a heading and one sentence a metric that has evidence.
    lines = v._direction_lines({"direction": {"latency_p99": d, "latency_p50": None}})
    assert "## Which way the model errs" in lines and sum(x.startswith("- ") for x in lines) == 1
    assert v._direction_lines({"direction": {"latency_p50": None}}) == []


def test_the_report_lists_the_runs_whose_window_was_not_steady() -> None:
    from simlab.validate import unsteady_lines  # noqa: PLC0415 - the section under test

    def rows(unsteady: list[list[str]] | None) -> list[dict[str, Any]]:
        return [
            {"model": "process-per-connection", "config": "N=300 150/s", "metric": m,
             "unsteady_runs": unsteady}
            for m in ("latency_p50", "latency_p99")
        ]  # fmt: skip

    # Sessions before the key: no section (nothing was recorded, nothing is said).
    assert unsteady_lines(rows(None)) == []
    steady = unsteady_lines(rows([[], [], []]))
    assert "## Runs whose window was not steady" in steady
    assert "0 of the 3 runs that recorded them." in steady[-1]
    # Runs journalled before the key (a resumed session): not counted as steady.
    assert unsteady_lines(rows([None, None, None])) == []
    assert "0 of the 1 runs that recorded them." in unsteady_lines(rows([None, [], None]))[-1]
    why = "the server was still making its threads in the window (289.8 on average against 301"
    lines = unsteady_lines(rows([[], [why], []]))
    assert "1 of the 3 runs that recorded them:" in "\n".join(lines)
    assert any(line.startswith("- process-per-connection (N=300 150/s), run 2: the server") for
               line in lines)  # fmt: skip


def test_the_report_sets_the_waits_for_a_core_against_one_queues() -> None:
    from simlab.validate import core_wait_lines  # noqa: PLC0415 - the section under test

    def wait(w: float, q: float | None) -> dict[str, Any]:
        return {"wait_ms_per_request": w, "shared_queue_ms_per_request": q,
                "machine_busy_cores": 1.2, "slice_ms": 0.8, "slices_per_request": 4}  # fmt: skip

    def case(config: str, p50: float, runs: list[Any] | None) -> dict[str, Any]:
        return {"model": "process-per-connection", "config": config, "metric": "latency_p50",
                "measured": p50, "predicted": 14.6, "run_queue_runs": runs}  # fmt: skip

    assert core_wait_lines([case("N=300 150/s", 16.9, None)]) == []
    rows = [
        case("N=300 150/s", 16.9, [wait(4.9, 2.3), wait(5.4, 2.4), wait(4.6, 2.2)]),
        case("N=120 80/s", 18.4, [wait(0.7, 0.2), wait(0.5, 0.6), wait(0.8, 0.2)]),
        case("N=10 5/s", 12.0, [wait(0.1, None), wait(0.1, 0.0), wait(0.1, 0.0)]),  # a full machine
    ]
    lines = core_wait_lines(rows)
    text = "\n".join(lines)
    # Two cases read it in every run; only the first waited longer in every run.
    assert "under its cores (2): in 1 every run waited longer" in text
    # Its excess, 2.6 ms, is 15% of its p50; the other's 0.5 ms, 3%: median 9%.
    assert "a median 9% of the measured p50, the largest 15% (process-per-connection, N=300" in text
    assert lines[-2].startswith("| process-per-connection | N=300 150/s | 16.9 / 14.6 ms")
    assert lines[-1].endswith("| 3% |") and "N=10 5/s" not in text


REPORTS = DOCS.parent / "data" / "validation"


def test_a_third_of_each_reports_cases_are_at_or_beyond_saturation() -> None:
    """Where the served rate is the model's to predict, not an input (issue
    12: a third of the cases at rho 0.9 to 1.5): the committed reports' own
    offered loads (``rho``, the model's, on the profile each was simulated
    with). A grid that loses its saturated cases, or a profile that moves
    them out of the band, fails here."""
    short = {}
    for report in sorted(REPORTS.glob("*/validation.json")):
        rows = [r for r in json.loads(report.read_text())["rows"]
                if r["metric"] == "throughput_rps"]  # fmt: skip
        saturated = sum(0.9 <= r["rho"] <= 1.5 for r in rows)
        if 3 * saturated < len(rows):
            short[report.parent.name] = f"{saturated} of {len(rows)}"
    assert not short, short
