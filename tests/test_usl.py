"""The Universal Scalability Law fit, against a published dataset with known coefficients."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simlab.usl import fit_usl, usl_throughput


def test_recovers_the_usl_packages_reference_fit() -> None:
    # The R package usl (Moeding) tests its fit on this dataset and expects
    # sigma = 0.02, kappa = 0.02, lambda = 1.00 (tests/coef.R, coef.Rout.save).
    load = [1, 2, 4, 6, 8, 10]
    tput = [1, 1.8868, 3.0769, 3.5294, 3.5398, 3.3557]
    fit = fit_usl(load, tput)
    assert fit.sigma == pytest.approx(0.02, abs=0.005)
    assert fit.kappa == pytest.approx(0.02, abs=0.005)
    assert fit.lam == pytest.approx(1.00, abs=0.01)
    # N* = sqrt((1 - sigma) / kappa) = 7.0 for these values.
    assert fit.peak_concurrency == pytest.approx(math.sqrt(0.98 / 0.02), rel=0.1)
    # Our intervals cover the reference fit's values (a fit that went astray,
    # or intervals that were too narrow, would not).
    for key, reference in (("sigma", 0.02), ("kappa", 0.02), ("lambda", 1.00)):
        lo, hi = fit.ci95[key]
        assert lo <= reference <= hi, key


def test_recovers_synthetic_parameters_within_their_intervals() -> None:
    rng = np.random.default_rng(5)
    n = np.array([1, 2, 4, 8, 16, 32, 64, 128])
    x = usl_throughput(n, 0.05, 0.0004, 500.0) * rng.normal(1, 0.01, len(n))
    fit = fit_usl(n, x)
    # Within two 95% half-widths (about four standard errors) of the truth:
    # a correct fit misses that about once in ten thousand seeds.
    for key, truth in (("sigma", 0.05), ("kappa", 0.0004)):
        lo, hi = fit.ci95[key]
        assert abs(getattr(fit, key) - truth) <= (hi - lo), key
    assert fit.lam == pytest.approx(500, rel=0.05)
    assert fit.ceiling == pytest.approx(
        float(usl_throughput(math.sqrt(0.95 / 0.0004), 0.05, 0.0004, 500.0)), rel=0.05
    )


def test_linear_scaling_has_no_peak() -> None:
    fit = fit_usl([1, 2, 4, 8], [10, 20, 40, 80])
    assert fit.sigma == pytest.approx(0, abs=1e-6)
    assert fit.peak_concurrency > 1000  # far beyond anything measured


def test_too_few_points() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        fit_usl([1, 2, 3], [1, 2, 3])
