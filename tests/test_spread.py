"""The overheads' spread fitted through the model (``simlab.spread``): its
distribution, its choice on known tables, and a recovery through the DES."""

from __future__ import annotations

import numpy as np
import pytest

from simlab import spread
from simlab.distributions import Fixed, LogNormal, ShiftedLogNormal
from simlab.errors import UserError
from simlab.params import Architecture, Platform, Workload
from simlab.real.grids import Run
from simlab.simulation import simulate


def test_a_shifted_lognormal_has_its_mean_cv_and_floor() -> None:
    d = ShiftedLogNormal(0.002, cv=0.6, floor=0.001)
    x = d.sample(np.random.default_rng(5), 400_000)
    # 5 standard errors on the mean; the sample cv gets 3% (see test_distributions).
    assert x.mean() == pytest.approx(d.mean, rel=5 * d.cv / np.sqrt(len(x)))
    assert x.std() / x.mean() == pytest.approx(0.6, rel=0.03)
    assert x.min() >= 0.001
    # Above the floor, a lognormal with the rest of the mean and the cv that
    # keeps the whole draw's: ln(x - floor) is normal, sigma^2 = ln(1 + cv_rest^2).
    sigma = np.sqrt(np.log1p((0.6 * 0.002 / 0.001) ** 2))
    assert np.log(x - 0.001).std() == pytest.approx(sigma, abs=5 * sigma / np.sqrt(len(x)))
    ns = {"ShiftedLogNormal": ShiftedLogNormal}
    assert eval(repr(d), ns) == d
    with pytest.raises(UserError, match="floor"):
        ShiftedLogNormal(0.002, cv=0.5, floor=0.002)


def test_a_high_floor_puts_the_spread_in_rarer_longer_draws() -> None:
    # The same mean and cv: with 85% of the mean fixed, the median is nearer
    # the mean and the p99 lower than a plain lognormal's; the cv comes from
    # draws beyond the p99.
    rng = np.random.default_rng
    plain = LogNormal(1.0, cv=1.0).sample(rng(5), 400_000)
    floored = ShiftedLogNormal(1.0, cv=1.0, floor=0.85).sample(rng(5), 400_000)
    p50, p99 = np.percentile(plain, [50, 99])
    f50, f99 = np.percentile(floored, [50, 99])
    assert p50 < 0.75 < 0.85 < f50 < 1.0
    assert f99 < 0.7 * p99


def test_the_platform_draws_its_overheads_in_their_shape() -> None:
    p = Platform(rtt_us=1000.0, rtt_cv=0.5, call_latency_us=400.0)
    assert p.rtt() == LogNormal(1000.0 * 1e-6, cv=0.5)
    assert p.call_latency() == Fixed(400.0 * 1e-6)
    floored = p.with_(rtt_floor=0.6)
    assert floored.rtt() == ShiftedLogNormal(1000.0 * 1e-6, cv=0.5, floor=0.6 * 1000.0 * 1e-6)
    # A floor is a share of the mean, under all of it.
    with pytest.raises(ValueError, match="rtt_floor"):
        p.with_(rtt_floor=1.0)
    # Off (0) it stays out of a platform's description, as every mechanism's.
    assert "rtt_floor" not in p.describe() and "rtt_floor" in floored.describe()


def _table(truth: tuple[int, int], runs: int = 8, noise: float = 0.0) -> spread.SpreadTable:
    """A made-up table: p50 and p99 that move with each shape's cv and floor
    (the p99 with the cv, the p50 with the floor), the measured ones those of
    the shape ``truth`` (call index, path index) with multiplicative noise."""
    rng = np.random.default_rng(1)
    calls = tuple(k % 3 for k in range(runs))
    pred = np.empty((runs, len(spread.CALL_SHAPES), len(spread.RTT_SHAPES), 2))
    for c, cs in enumerate(spread.CALL_SHAPES):
        for t, ts in enumerate(spread.RTT_SHAPES):
            for r in range(runs):
                base = 5.0 + 4 * calls[r]
                call = calls[r] * (1 + cs.floor + 2 * cs.cv * (1 - cs.floor / 2))
                p50 = base + 0.5 * (1 + ts.floor) + 0.3 * calls[r] * (1 + cs.floor)
                p99 = base + 3 * ts.cv + 0.4 * ts.floor * ts.cv + call
                pred[r, c, t] = (p50, p99)
    measured = pred[:, truth[0], truth[1], :] * np.exp(rng.normal(0, noise, (runs, 2)))
    labels = tuple(f"run {r}" for r in range(runs))
    return spread.SpreadTable(labels, calls, measured, pred)


def _index(shapes: tuple[spread.Shape, ...], cv: float, floor: float) -> int:
    return shapes.index(spread.Shape(cv, floor))


def test_a_shape_the_runs_pin_down_is_found_and_identified() -> None:
    truth = (_index(spread.CALL_SHAPES, 0.75, 0.3), _index(spread.RTT_SHAPES, 1.0, 0.5))
    fit = spread.fit_spread_table(_table(truth, noise=0.002), boots=100)
    assert fit.values == (1.0, 0.5, 0.75, 0.3)
    assert all(fit.identified)
    for value, (lo, hi) in zip(fit.values, fit.ci95, strict=True):
        assert lo <= value <= hi


def test_a_floor_at_zero_is_held_there_and_says_so() -> None:
    # The truth has no floor: the floors' intervals reach 0, so they are held
    # at the preset's 0 and the cvs are fitted again on plain lognormals.
    truth = (_index(spread.CALL_SHAPES, 0.5, 0.0), _index(spread.RTT_SHAPES, 1.5, 0.0))
    fit = spread.fit_spread_table(_table(truth, noise=0.002), boots=100)
    assert fit.values == (1.5, 0.0, 0.5, 0.0)
    assert fit.identified == (True, False, True, False)
    params = spread.spread_parameters(fit, Platform())
    assert params["rtt_floor"]["value"] == 0.0 and "includes 0" in params["rtt_floor"]["assumption"]
    assert "ci95" not in params["rtt_floor"] and params["rtt_cv"]["ci95"][0] > 0


def test_without_a_backend_call_the_call_latency_is_not_fitted() -> None:
    table = _table((0, _index(spread.RTT_SHAPES, 1.0, 0.0)), noise=0.002)
    table = spread.SpreadTable(
        table.labels, (0,) * len(table.labels), table.measured, table.predicted
    )
    fit = spread.fit_spread_table(table, boots=50)
    params = spread.spread_parameters(fit, Platform())
    assert not fit.identified[2] and not fit.identified[3]
    assert "no light run makes a backend call" in params["call_latency_cv"]["assumption"]
    assert params["call_latency_cv"]["value"] == 0.0


def test_flat_runs_identify_nothing() -> None:
    # Every shape predicts the same: no interval can exclude 0.
    table = _table((0, 0))
    flat = np.broadcast_to(table.predicted[:, :1, :1, :], table.predicted.shape).copy()
    fit = spread.fit_spread_table(
        spread.SpreadTable(table.labels, table.calls, table.measured, flat), boots=50
    )
    assert not any(fit.identified) and fit.values == (0.0, 0.0, 0.0, 0.0)


def test_the_spread_is_recovered_through_the_model() -> None:
    # "Measured" runs simulated with a known spread of both overheads; the fit,
    # simulating them again at each shape of a small grid (other seeds), finds
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
    shapes = tuple(spread.Shape(cv, 0.0) for cv in (0.0, 0.25, 0.5, 1.0, 2.0))
    base = truth.with_(rtt_cv=0.0, call_latency_cv=0.0)
    table = spread.spread_table(light, base, rtt=shapes, call=shapes)
    fit = spread.fit_spread_table(table, boots=100)
    assert (fit.value("rtt_cv"), fit.value("call_latency_cv")) == (1.0, 0.5)
    assert fit.identified == (True, False, True, False)
