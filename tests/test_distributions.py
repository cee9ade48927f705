"""Distributions: their means and cvs are what they say, and their reprs paste back."""

from __future__ import annotations

import numpy as np
import pytest

from simlab.distributions import Empirical, Exponential, Fixed, LogNormal, parse_distribution

# Fully qualified names so that eval(repr(d)) works in this namespace.
NAMESPACE = {
    "Fixed": Fixed,
    "Exponential": Exponential,
    "LogNormal": LogNormal,
    "Empirical": Empirical,
}


@pytest.mark.parametrize(
    "dist",
    [
        Fixed(0.05),
        Exponential(0.05),
        LogNormal(0.05, cv=0.5),
        LogNormal(0.05, cv=1.0),
        Empirical((0.01, 0.02, 0.09)),
    ],
)
def test_sample_moments_match_mean_and_cv(dist):
    x = dist.sample(np.random.default_rng(3), 400_000)
    # The mean gets 5 standard errors (cv/sqrt(n)); the sample cv converges
    # more slowly (it depends on the fourth moment), so it gets 3%.
    n = len(x)
    assert x.mean() == pytest.approx(dist.mean, rel=5 * dist.cv / np.sqrt(n) + 1e-12)
    cv = x.std() / x.mean()
    assert cv == pytest.approx(dist.cv, rel=0.03, abs=1e-12)
    assert eval(repr(dist), NAMESPACE) == dist


def test_heavy_lognormal_has_the_right_underlying_normal():
    # For cv = 3 the sample cv converges too slowly to test; ln X is normal
    # with sigma^2 = ln(1 + cv^2) and mean ln(mean) - sigma^2/2, which we can.
    d = LogNormal(0.05, cv=3.0)
    logs = np.log(d.sample(np.random.default_rng(4), 400_000))
    sigma = np.sqrt(np.log1p(9.0))
    se = sigma / np.sqrt(len(logs))
    assert logs.mean() == pytest.approx(np.log(0.05) - sigma**2 / 2, abs=5 * se)
    assert logs.std() == pytest.approx(sigma, abs=5 * se)


def test_same_generator_state_same_draws():
    d = LogNormal(1.0, cv=2.0)
    a = d.sample(np.random.default_rng(9), 100)
    b = d.sample(np.random.default_rng(9), 100)
    assert np.array_equal(a, b)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("fixed", Fixed(0.1)),
        ("exp", Exponential(0.1)),
        ("lognormal", LogNormal(0.1)),
        ("lognormal:2.5", LogNormal(0.1, cv=2.5)),
    ],
)
def test_parse(spec, expected):
    assert parse_distribution(spec, 0.1) == expected


def test_parse_empirical_file_in_ms(tmp_path):
    f = tmp_path / "lat.txt"
    f.write_text("# measured\n10\n30\n")
    d = parse_distribution(f"empirical:{f}", 99.0)
    assert d == Empirical((0.01, 0.03))
    assert d.mean == pytest.approx(0.02)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("weird", "unknown distribution"),
        ("lognormal:x", "cv must be a number"),
        ("lognormal:-1", "must be > 0"),
        ("empirical:/nonexistent/file", "cannot read"),
    ],
)
def test_parse_errors_name_the_option(spec, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_distribution(spec, 0.1, option="--io-dist")
    assert str(info.value).startswith("--io-dist")


@pytest.mark.parametrize(
    "build",
    [
        lambda: Fixed(-1.0),
        lambda: Exponential(float("nan")),
        lambda: LogNormal(1.0, cv=0.0),
        lambda: Empirical(()),
        lambda: Empirical((1.0, -2.0)),
    ],
)
def test_bad_parameters_raise(build):
    with pytest.raises(ValueError, match=r"must|needs"):
        build()
