"""theory.py against known values and against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate
from scipy.linalg import eigh_tridiagonal

from simlab import theory


def mmc_stationary(lam: float, mu: float, c: int, n_max: int = 3000) -> np.ndarray:
    """Birth-death chain solved directly: an independent reference for Erlang C."""
    log_p = np.zeros(n_max)
    for n in range(1, n_max):
        log_p[n] = log_p[n - 1] + math.log(lam / (mu * min(n, c)))
    p = np.exp(log_p - log_p.max())
    return p / p.sum()


def test_erlang_b_table_values():
    # Classic table values: B(10, 5) and B(1, a) = a / (1 + a).
    assert theory.erlang_b(10, 5.0) == pytest.approx(0.018384570, rel=1e-7)
    assert theory.erlang_b(1, 2.0) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("lam", "mu", "c"),
    [(0.5, 1.0, 1), (1.5, 1.0, 2), (8.0, 1.0, 10), (90.0, 1.0, 100), (5700.0, 1.0, 6000)],
)
def test_erlang_c_matches_the_chain(lam, mu, c):
    p = mmc_stationary(lam, mu, c, n_max=max(3000, 2 * c))
    assert theory.erlang_c(c, lam / mu) == pytest.approx(p[c:].sum(), rel=1e-9)
    lq = sum((n - c) * p[n] for n in range(c, len(p)))
    assert theory.mmc_mean_wait(lam, mu, c) == pytest.approx(lq / lam, rel=1e-9)


def test_mm1_special_cases():
    lam, mu = 3.0, 5.0
    rho = lam / mu
    assert theory.erlang_c(1, rho) == pytest.approx(rho)
    assert theory.mmc_mean_wait(lam, mu, 1) == pytest.approx(rho / (mu - lam))
    assert theory.mg1_mean_wait(lam, 1 / mu, 1.0) == pytest.approx(rho / (mu - lam))
    # The sojourn time of M/M/1 is Exp(mu - lam).
    assert theory.mmc_sojourn_tail(0.7, lam, mu, 1) == pytest.approx(math.exp(-(mu - lam) * 0.7))
    q = theory.mmc_sojourn_quantile(0.99, lam, mu, 1)
    assert q == pytest.approx(math.log(100) / (mu - lam), rel=1e-9)


@pytest.mark.parametrize(("lam", "mu", "c"), [(1.5, 1.0, 2), (9.0, 1.0, 10), (4.0, 1.0, 5)])
def test_sojourn_tail_integrates_to_the_mean(lam, mu, c):
    # E[T] = integral of P(T > t); also covers the theta == mu branch at (4, 1, 5).
    mean, _ = integrate.quad(lambda t: theory.mmc_sojourn_tail(t, lam, mu, c), 0, math.inf)
    assert mean == pytest.approx(theory.mmc_mean_wait(lam, mu, c) + 1 / mu, rel=1e-7)


def test_wait_quantile_inverts_the_tail():
    lam, mu, c = 9.0, 1.0, 10
    q = theory.mmc_wait_quantile(0.99, lam, mu, c)
    assert theory.mmc_wait_tail(q, lam, mu, c) == pytest.approx(0.01)
    assert theory.mmc_wait_quantile(0.1, lam, mu, c) == 0.0


def test_pk_md1_is_half_mm1():
    assert theory.mg1_mean_wait(0.8, 1.0, 0.0) == pytest.approx(
        theory.mg1_mean_wait(0.8, 1.0, 1.0) / 2
    )


def test_allen_cunneen_is_exact_for_mmc():
    assert theory.allen_cunneen_mean_wait(8.0, 1.0, 10) == pytest.approx(
        theory.mmc_mean_wait(8.0, 1.0, 10)
    )


def test_mginf_and_little():
    assert theory.mginf_mean_busy(100.0, 0.051) == pytest.approx(5.1)
    assert theory.mginf_busy_quantile(0.5, 100.0, 0.05) == 5
    assert theory.little_l(1000.0, 6.0) == 6000.0
    assert theory.little_w(6000.0, 1000.0) == 6.0


@pytest.mark.parametrize(
    "call",
    [
        lambda: theory.erlang_c(10, 10.0),
        lambda: theory.mmc_mean_wait(10.0, 1.0, 5),
        lambda: theory.mg1_mean_wait(2.0, 0.5, 1.0),
        lambda: theory.allen_cunneen_mean_wait(5.0, 1.0, 4),
        lambda: theory.mmc_sojourn_quantile(0.99, 3.0, 1.0, 3),
    ],
)
def test_unstable_queues_raise(call):
    with pytest.raises(ValueError, match=r"rho\(=.*\) must be < 1"):
        call()


def mmc_spectral_gap(lam: float, mu: float, c: int, n_max: int = 4000) -> float:
    """The M/M/c chain's relaxation rate, independently: the smallest nonzero
    eigenvalue of minus its generator, truncated at ``n_max`` customers. A
    birth-death generator is similar to the symmetric tridiagonal matrix
    with off-diagonal sqrt(birth * death), so eigh_tridiagonal finds it."""
    deaths = np.array([min(k, c) * mu for k in range(n_max)])
    births = np.full(n_max, lam)
    births[-1] = 0.0
    off = np.sqrt(births[:-1] * deaths[1:])
    top = eigh_tridiagonal(
        -(births + deaths), off, eigvals_only=True, select="i", select_range=(n_max - 2, n_max - 2)
    )
    return float(-top[0])


@pytest.mark.parametrize(
    ("c", "rho"),
    [(1, 0.5), (1, 0.9), (1, 0.98), (10, 0.5), (10, 0.95), (50, 0.95), (100, 0.5), (100, 0.97)],
)
def test_relaxation_time_is_the_mmc_chains_spectral_gap(c, rho):
    """Morse's 1 / (c mu (1 - sqrt(rho))^2), floored at E[S], against the chain
    itself. The truncated chain relaxes slightly faster than the infinite one
    (by 0.6% at rho = 0.98 with 4,000 states), hence 1%."""
    mu = 2.0
    tau = theory.relaxation_time(rho, 1 / mu, c)
    assert tau == pytest.approx(1 / mmc_spectral_gap(rho * c * mu, mu, c), rel=0.01)


def test_relaxation_time_scales_and_limits():
    # About 1,500 arrivals per relaxation time at rho 0.95, whatever c and E[S].
    for c, s in [(1, 0.01), (10, 0.1), (64, 2.0)]:
        lam = 0.95 * c / s
        assert lam * theory.relaxation_time(0.95, s, c) == pytest.approx(1481.8, rel=1e-4)
    # Kingman's variability factor: deterministic service halves the M/M time.
    assert theory.relaxation_time(0.9, 1.0, scv=0.0) == pytest.approx(
        theory.relaxation_time(0.9, 1.0) / 2
    )
    # Light load: nothing settles faster than one service time.
    assert theory.relaxation_time(0.0, 0.3, 4) == 0.3
    for bad in (1.0, 1.2, -0.1):
        with pytest.raises(ValueError, match="rho"):
            theory.relaxation_time(bad, 1.0)
    with pytest.raises(ValueError, match="scv"):
        theory.relaxation_time(0.5, 1.0, scv=-1.0)
