"""The overheads' spread fitted through the model (``simlab.spread``): its
choice on known tables, and a recovery through the DES's fast engine."""

from __future__ import annotations

import numpy as np

from simlab import spread
from simlab.distributions import Fixed
from simlab.params import Architecture, Platform, Workload
from simlab.real.grids import Run
from simlab.simulation import simulate


def _table(truth: tuple[float, float], runs: int = 8, noise: float = 0.0) -> spread.SpreadTable:
    """A made-up table: each run's p99 grows with the path's cv and, per
    call, with the call's cv, its p50 falls a little with both; the measured
    ones are those of ``truth`` (path cv, call cv) with multiplicative noise."""
    rng = np.random.default_rng(1)
    calls = tuple(k % 3 for k in range(runs))
    cvs = np.array(spread.CVS)
    pred = np.empty((runs, len(cvs), len(cvs), 2))
    for r in range(runs):
        base = 5.0 + 4 * calls[r]
        call, path = cvs[:, None], cvs[None, :]
        pred[r, ..., 0] = base - 0.2 * path - 0.1 * calls[r] * call
        pred[r, ..., 1] = base + 3 * path + 2 * calls[r] * call
    t, c = spread.CVS.index(truth[0]), spread.CVS.index(truth[1])
    measured = pred[:, c, t, :] * np.exp(rng.normal(0, noise, (runs, 2)))
    return spread.SpreadTable(tuple(f"run {r}" for r in range(runs)), calls, measured, pred)


def test_cvs_the_runs_pin_down_are_found_and_identified() -> None:
    fit = spread.fit_spread_table(_table((1.25, 0.5), noise=0.002), boots=100)
    assert fit.values == (1.25, 0.5) and fit.identified == (True, True)
    for value, (lo, hi) in zip(fit.values, fit.ci95, strict=True):
        assert 0 < lo <= value <= hi < spread.CVS[-1]
    params = spread.spread_parameters(fit, Platform())
    assert params["rtt_cv"]["ci95"] == list(fit.ci95[0]) and params["rtt_cv"]["identified"]


def test_a_cv_at_zero_is_held_there_and_says_so() -> None:
    # A fixed call latency: its interval reaches 0, so it is the preset's 0,
    # labelled, with no interval; the path's cv is fitted again without it.
    fit = spread.fit_spread_table(_table((0.75, 0.0), noise=0.002), boots=100)
    assert fit.values == (0.75, 0.0) and fit.identified == (True, False)
    params = spread.spread_parameters(fit, Platform())
    entry = params["call_latency_cv"]
    assert entry["value"] == 0.0 and "ci95" not in entry and "includes 0" in entry["assumption"]


def test_a_cv_beyond_the_grid_is_no_estimate() -> None:
    fit = spread.fit_spread_table(_table((spread.CVS[-1], 0.5), noise=0.002), boots=50)
    assert not fit.identified[0] and fit.values[0] == 0.0
    assert "top of the grid" in spread.spread_parameters(fit, Platform())["rtt_cv"]["assumption"]


def test_without_a_backend_call_the_call_latency_is_not_fitted() -> None:
    table = _table((1.0, 0.0), noise=0.002)
    table = spread.SpreadTable(
        table.labels, (0,) * len(table.labels), table.measured, table.predicted
    )
    fit = spread.fit_spread_table(table, boots=50)
    params = spread.spread_parameters(fit, Platform())
    assert fit.identified == (True, False)
    assert "no light run makes a backend call" in params["call_latency_cv"]["assumption"]


def test_flat_runs_identify_nothing() -> None:
    # Every cv predicts the same: no interval can exclude 0.
    table = _table((0.0, 0.0))
    flat = np.broadcast_to(table.predicted[:, :1, :1, :], table.predicted.shape).copy()
    fit = spread.fit_spread_table(
        spread.SpreadTable(table.labels, table.calls, table.measured, flat), boots=50
    )
    assert fit.identified == (False, False) and fit.values == (0.0, 0.0)


def test_the_spread_is_recovered_through_the_model() -> None:
    # "Measured" runs simulated with a known spread of both overheads; the fit,
    # simulating them again at each cv of a small grid (other seeds), finds
    # the truth's cvs, each identified. Ideal cores (no GIL, no neighbours):
    # the fast engine. Light runs with many connections, so that no request
    # waits behind its connection's last and the tails are the overheads'.
    truth = Platform(
        name="t", cores=None, gil=False, rtt_us=800.0, rtt_cv=1.0,
        call_latency_us=2000.0, call_latency_cv=0.5,
    )  # fmt: skip
    light = []
    for k, calls in enumerate((0, 1, 2, 0, 1, 2)):
        w = Workload(connections=2000, rate=100.0, cpu=Fixed(0.001), io=Fixed(0.005), calls=calls)
        run = Run("reactor-pool", w, Architecture(workers=64), "cpu", duration=10.0, warmup=1.0)
        s = simulate("reactor-pool", w, truth, run.arch, duration=10.0, warmup=1.0,
                     replications=4, seed=100 + k, engine="auto", tables=False).summary  # fmt: skip
        assert s.engine == "fast"
        light.append((k, run, {"latency_ms": {"p50": s.latency_ms.p50, "p99": s.latency_ms.p99}}))
    cvs = (0.0, 0.25, 0.5, 1.0, 2.0)
    base = truth.with_(rtt_cv=0.0, call_latency_cv=0.0)
    table = spread.spread_table(light, base, rtt=cvs, call=cvs)
    fit = spread.fit_spread_table(table, boots=100)
    assert fit.values == (1.0, 0.5) and fit.identified == (True, True)


def test_calibration_fits_only_light_runs_that_kept_their_quantiles() -> None:
    # A profile measured before calibration kept the latency's p50 and p99
    # has none: its spread is not fitted, and the profile says why.
    from simlab import calibrate  # noqa: PLC0415 - its real-lab imports, only here

    w = Workload(connections=50, rate=100.0, cpu=Fixed(0.001), io=Fixed(0.005), calls=1)
    run = Run("async", w, Architecture(workers=8), "cpu")
    s = {
        "throughput_rps": 99.0,
        "cpu_busy_cores": 0.2,
        "latency_ms": {"mean": 8.0, "p50": 7.8, "p99": 12.0},
        "service_ms": {"mean": 6.5, "p50": 6.4, "p99": 9.0},
        "queue_delay_ms": {"p50": 1.0, "p99": 3.0},
        "stable": True,
    }
    old = {**s, "latency_ms": {"mean": 8.0, "p50": None, "p99": None}}
    p = Platform(name="t")
    assert [k for k, _, _ in calibrate.spread_runs([(run, old), (run, s)], p)] == [1]
    assert calibrate.fit_spread_through_model([(run, old)] * 5, p) is None
    entry = calibrate._spread_unseen(p)["rtt_cv"]
    assert entry["value"] == 0.0 and not entry["identified"]
    assert "p50 and p99" in entry["assumption"]
