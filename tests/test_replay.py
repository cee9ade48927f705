"""Trace-driven validation: each real run predicted from its own arrivals, nothing else."""

from __future__ import annotations

import os
import socket
from types import SimpleNamespace
from typing import Any

import numpy as np
import psutil
import pytest

from simlab import validate
from simlab.distributions import Fixed
from simlab.errors import UserError
from simlab.params import Architecture, Workload
from simlab.platforms import load_platform
from simlab.real.grids import Case
from simlab.real.loadgen import poisson_arrivals
from simlab.real.probe import AcceptSplit, accepted_peers
from simlab.streams import RacingDealer
from tests.fakes import measured_run

CASE = Case(
    "thread-pool",
    Workload(connections=6, rate=60.0, cpu=Fixed(0.002), io=Fixed(0.004)),
    Architecture(workers=3),
    duration=1.0,
    warmup=0.5,
)
CLOSED = Case(
    "thread-pool",
    Workload(connections=6, think=Fixed(0.05), cpu=Fixed(0.002), io=Fixed(0.004)),
    Architecture(workers=3),
    duration=1.0,
    warmup=0.5,
)


def _dispatched(case: Case, seed: int) -> list[tuple[float, int]]:
    """What the load generator's open loop sends for a run seeded ``seed``, drawn
    as ``Generator.open_loop`` draws it (its rng from the seed, then Poisson
    gaps and uniform connections), up to the end of the run."""
    rng = np.random.default_rng(seed)
    end = case.warmup + case.duration
    out = []
    for t, k in poisson_arrivals(rng, float(case.workload.rate or 0), case.workload.connections, 0):
        if t >= end:
            return out
        out.append((t, k))
    raise AssertionError("unreachable")


def test_a_run_is_replayed_from_the_schedule_its_seed_draws() -> None:
    for seed in (1000, 1001):
        trace = validate._arrivals(CASE, seed).trace
        assert trace is not None
        assert list(zip(trace.times, trace.connections, strict=True)) == _dispatched(CASE, seed)
    # Two runs of a case have their own arrivals: the replay is per run.
    a, b = (validate._arrivals(CASE, s).trace for s in (1000, 1001))
    assert a is not None and b is not None and a.times != b.times


def _fake_run(latency_ms: float) -> Any:
    x = latency_ms
    return measured_run(throughput=3 * x, p50=x, user=x, kernel=x / 10, threads=x)


def test_the_prediction_uses_nothing_measured(monkeypatch, tmp_path) -> None:
    # The same case measured twice with wildly different outcomes: every
    # prediction is the same, and each is the mean of its runs' replays.
    results = []
    for latency in (5.0, 500.0):
        monkeypatch.setattr(validate, "_measure", lambda _c, _s, x=latency: _fake_run(x))
        out = tmp_path / str(latency)
        results.append(validate.validate("ideal", repeats=3, cases=[CASE], out_dir=out))
    first, second = ({r["metric"]: r for r in res["rows"]} for res in results)
    for metric in validate.METRICS:
        assert first[metric]["predicted"] == second[metric]["predicted"], metric
        assert first[metric]["predicted_runs"] == second[metric]["predicted_runs"], metric
        assert first[metric]["measured"] != second[metric]["measured"], metric
    row = first["latency_p50"]
    assert row["prediction"] == "replayed" and row["run_seeds"] == [1000, 1001, 1002]
    reps = validate.replay_replications(3)
    platform = validate.lab_platform(load_platform("ideal"), {})
    each = [
        validate._simulate(
            CASE, platform, s, workload=validate._arrivals(CASE, s), replications=reps
        ).latency_ms.p50
        for s in (1000, 1001, 1002)
    ]
    assert row["predicted_runs"] == each
    assert row["predicted"] == pytest.approx(float(np.mean(each)))
    lo, hi = row["predicted_ci95"]
    assert lo <= row["predicted"] <= hi
    text = (tmp_path / "5.0" / "report.md").read_text()
    assert "1 of 1 cases are *replayed*" in text
    assert f"simulated on each real run's own arrivals with {reps} replications" in text


def test_a_closed_loop_is_seeded_and_says_why() -> None:
    platform = validate.lab_platform(load_platform("ideal"), {})
    pred = validate.predict_case(CLOSED, platform, {}, 2, [1000, 1001])
    assert pred.how == "seeded" and pred.why is not None and "closed loop" in pred.why
    seeded = validate._simulate(CLOSED, platform, 2)
    assert pred.predicted["latency_p50"].value == seeded.latency_ms.p50
    assert pred.row_keys("latency_p50")["predicted_runs"] is None


def test_the_report_says_which_way_each_case_was_predicted(monkeypatch, tmp_path) -> None:
    other = Case(CASE.target, CASE.workload.with_(rate=40.0), CASE.arch, 1.0, 0.5)
    monkeypatch.setattr(validate, "_measure", lambda _c, _s: _fake_run(5.0))
    monkeypatch.setattr(
        validate, "not_replayed", lambda c: "doctored" if c.workload.rate == 40.0 else None
    )
    result = validate.validate("ideal", repeats=2, cases=[CASE, other], out_dir=tmp_path)
    how = {r["config"]: (r["prediction"], r["prediction_why"]) for r in result["rows"]}
    assert how == {CASE.config(): ("replayed", None), other.config(): ("seeded", "doctored")}
    # Each row keeps its runs' load generator: its send delay and CPU a request.
    lags = result["rows"][0]["load_generator_runs"]
    assert lags and all(x["send_delay_p99_ms"] == 12.0 for x in lags)
    assert all(x["client_us_per_request"] == 450.0 for x in lags)
    assert all(x["open_seconds"] == 0.01 for x in lags)  # before its first request
    # ... and the server's CPU a served request, measured (0.3 cores at 15/s:
    # 20 ms) and predicted (the simulations' own busy cores over their served rate).
    row = result["rows"][0]
    assert row["cpu_ms_runs"] == [pytest.approx(20.0)] * 2
    platform = validate.lab_platform(load_platform("ideal"), {})
    sim = validate._simulate(other, platform, 2)
    seeded = next(r for r in result["rows"] if r["config"] == other.config())
    assert seeded["cpu_ms_predicted"] == validate.cpu_ms(sim.cpu_busy_cores, sim.throughput_rps)
    assert 0 < seeded["cpu_ms_predicted"] < 1e3
    text = (tmp_path / "report.md").read_text()
    assert "1 of 2 cases are *replayed*" in text
    assert f"- thread-pool ({other.config()}): doctored" in text


def test_pooling_takes_the_mean_and_widens_in_quadrature() -> None:
    p = validate._pooled(
        [validate.Predicted(10.0, [8.0, 13.0]), validate.Predicted(20.0, [18.0, 24.0])]
    )
    assert p.value == 15.0
    assert p.ci == pytest.approx([15.0 - np.sqrt(8) / 2, 15.0 + np.sqrt(9 + 16) / 2])
    assert validate._pooled([validate.Predicted(1.0, None), validate.Predicted(3.0, [2, 4])]) == (
        validate.Predicted(2.0, None)
    )
    assert validate._pooled([validate.Predicted(None, None), validate.Predicted(3.0, None)]) == (
        validate.Predicted(None, None)
    )


def test_replay_keeps_the_offered_load_that_decides_the_evidence() -> None:
    # Throughput counts only at saturation, judged on the case's offered load:
    # replaying its arrivals must not change that judgement.
    platform = validate.lab_platform(load_platform("cpython"), {})
    busy = Case(CASE.target, CASE.workload.with_(rate=1400.0), CASE.arch, 1.0, 0.5)
    for case in (CASE, busy):
        seeded = validate._simulate(case, platform, 3)
        pred = validate.predict_case(case, platform, {}, 3, [3000, 3001])
        assert pred.how == "replayed"
        assert pred.rho == pytest.approx(validate._offered_rho(case, seeded))
    assert pred.rho >= validate.SATURATED


GTHREAD = Case(
    "gunicorn-gthread",
    Workload(connections=20, rate=40.0, cpu=Fixed(0.001), io=Fixed(0.01)),
    Architecture(workers=3, processes=2),
    duration=1.0,
    warmup=0.5,
)


def test_a_racing_deal_takes_a_measured_split() -> None:
    dealer = RacingDealer(2, 7, (0.9, 0.1))
    took = [dealer(k) for k in range(4000)]
    assert took.count(0) / len(took) == pytest.approx(0.9, abs=0.02)
    with pytest.raises(UserError, match="accept_shares"):
        Architecture(processes=2, accept_shares=(0.5, 0.5))  # not a racing accept
    with pytest.raises(UserError, match="accept_shares"):
        Architecture(processes=2, first_read="worker", accept="race", accept_shares=(0.7, 0.2))


def test_a_run_with_a_measured_split_is_predicted_with_it() -> None:
    extras = validate._profile_extras("cpython")
    platform = validate.case_platform(
        GTHREAD, validate.lab_platform(load_platform("cpython"), extras), extras
    )
    seeds = [5000, 5001]
    pred = validate.predict_case(GTHREAD, platform, extras, 5, seeds, [[19, 1], None])
    assert pred.row_keys("latency_p99")["accept_split_runs"] == [[19, 1], None]
    reps = validate.replay_replications(2)
    given = validate._simulate(
        GTHREAD,
        platform,
        5000,
        workload=validate._arrivals(GTHREAD, 5000),
        replications=reps,
        shares=validate._shares(GTHREAD, [19, 1]),
    )
    drawn = validate._simulate(
        GTHREAD, platform, 5000, workload=validate._arrivals(GTHREAD, 5000), replications=reps
    )
    # The first run's prediction is the simulation given its split, not a drawn one.
    assert pred.sims[0] == given and pred.sims[0] != drawn
    # A split that does not fit the case (a model that does not race) is not used.
    assert validate._shares(GTHREAD, [19, 1]) == pytest.approx((0.95, 0.05))
    assert validate._shares(CASE, [3, 3]) is None
    assert validate._shares(GTHREAD, [0, 0]) is None


def test_accepted_connections_are_counted_by_the_process_that_took_them() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        accepted = [listener.accept()[0] for _ in clients]
        try:
            # The clients' ends are in this process too, on other local ports.
            ends = [c.getsockname()[:2] for c in clients]
            assert accepted_peers(psutil.Process(), port)[0] == frozenset(ends)
            watch = AcceptSplit(os.getpid(), port, expected=3, processes=2, within_s=5)
            watch.start()
            watch.join(5)
            assert watch.split == (3, 0)
            # Each of the load generator's connections, by its local address (as
            # JSON brings them back: lists), to the copy that holds it.
            assert watch.deal([list(e) for e in ends]) == (0, 0, 0)
            # Not every connection found held (one never opened, one unknown): no deal.
            assert watch.deal([*ends[:2], None]) is None
            assert watch.deal([*ends[:2], ["127.0.0.1", 1]]) is None
            assert watch.deal(None) is None
        finally:
            for s in clients + accepted:
                s.close()


def test_a_racing_deal_takes_a_measured_deal_of_each_connection() -> None:
    dealt = (1, 1, 0, 1, 0)
    dealer = RacingDealer(2, 7, (0.4, 0.6), dealt)
    # Each measured connection lands where it was measured, whatever the salt.
    assert [dealer(k) for k in range(5)] == list(dealt)
    assert [RacingDealer(2, 8, (0.4, 0.6), dealt)(k) for k in range(5)] == list(dealt)
    # A connection beyond the measured ones falls back to the hashed deal.
    assert dealer(5) == RacingDealer(2, 7, (0.4, 0.6))(5)
    race = {"first_read": "worker", "accept": "race"}
    Architecture(processes=2, accept_map=dealt, **race)
    with pytest.raises(UserError, match="accept_map"):
        Architecture(processes=2, accept_map=(0, 2), **race)  # no third process
    with pytest.raises(UserError, match="accept_map"):
        Architecture(processes=2, accept_map=(0, 1))  # not a racing accept


def test_a_run_with_a_measured_deal_is_predicted_with_it() -> None:
    extras = validate._profile_extras("cpython")
    platform = validate.case_platform(
        GTHREAD, validate.lab_platform(load_platform("cpython"), extras), extras
    )
    n = GTHREAD.workload.connections
    # The first 15 connections on the first copy, as a racing accept deals them
    # (a copy awake takes the next ones); the hashed deal scatters them.
    block = [0] * 15 + [1] * (n - 15)
    seeds = [5000, 5001, 5002]
    pred = validate.predict_case(
        GTHREAD, platform, extras, 5, seeds, [[15, 5], [15, 5], None], [block, block[:3], block]
    )
    keys = pred.row_keys("latency_p99")
    # Used where it covers every connection and comes with its split; not otherwise.
    assert keys["accept_map_runs"] == [block, None, None]
    reps = validate.replay_replications(3)
    arrivals = validate._arrivals(GTHREAD, 5000)
    shares = validate._shares(GTHREAD, [15, 5])
    given = validate._simulate(
        GTHREAD, platform, 5000, workload=arrivals, replications=reps, shares=shares,
        dealt=tuple(block),
    )  # fmt: skip
    hashed = validate._simulate(
        GTHREAD, platform, 5000, workload=arrivals, replications=reps, shares=shares
    )
    assert pred.sims[0] == given and pred.sims[0] != hashed


def test_cpu_a_request_is_none_where_it_means_nothing() -> None:
    assert validate.cpu_ms(0.5, 100.0) == pytest.approx(5.0)
    assert validate.cpu_ms(float("nan"), 100.0) is None
    assert validate.cpu_ms(0.5, 0.0) is None
    sims = SimpleNamespace(sims=(SimpleNamespace(cpu_busy_cores=0.5, throughput_rps=100.0),))
    keys = validate.cpu_keys(sims, [5.5, None])  # type: ignore[arg-type]
    assert keys == {"cpu_ms_runs": [5.5, None], "cpu_ms_predicted": pytest.approx(5.0)}
    # A simulation that served nothing: no prediction.
    served_none = SimpleNamespace(cpu_busy_cores=0.0, throughput_rps=0.0)
    idle = SimpleNamespace(sims=(*sims.sims, served_none))
    assert validate.cpu_keys(idle, [5.5])["cpu_ms_predicted"] is None  # type: ignore[arg-type]
