"""Closed-form queueing results, as pure functions of floats.

Nothing here imports simpy: these are the references the simulations are
checked against. Every function states its formula and when it holds, and a
formula for a queue raises ``ValueError`` when rho >= 1, because a stationary
answer does not exist there.

Notation: lam = arrival rate, mu = 1/E[S] service rate, c = servers,
a = lam/mu offered load (Erlangs), rho = a/c utilisation,
cv = coefficient of variation of the service time.
"""

from __future__ import annotations

import math

__all__ = [
    "allen_cunneen_mean_wait",
    "erlang_b",
    "erlang_c",
    "little_l",
    "little_w",
    "mg1_mean_wait",
    "mginf_busy_quantile",
    "mginf_mean_busy",
    "mmc_mean_wait",
    "mmc_sojourn_quantile",
    "mmc_sojourn_tail",
    "mmc_wait_quantile",
    "mmc_wait_tail",
    "relaxation_time",
    "utilization",
]


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}(={value!r}) must be a finite number > 0")


def _servers(c: int) -> None:
    if not (isinstance(c, int) and c >= 1):
        raise ValueError(f"c(={c!r}) must be an integer >= 1")


def utilization(lam: float, mean_service: float, c: int = 1) -> float:
    """rho = lam * E[S] / c. Any arrival process, any discipline."""
    _servers(c)
    return lam * mean_service / c


def _stable(lam: float, mean_service: float, c: int) -> float:
    _positive("lam", lam)
    _positive("mean_service", mean_service)
    rho = utilization(lam, mean_service, c)
    if rho >= 1:
        raise ValueError(f"rho(={rho:.4g}) must be < 1 for a stable queue (lam={lam}, c={c})")
    return rho


def little_l(lam: float, w: float) -> float:
    """L = lam * W: mean number in any stable system from its throughput and
    mean time in system (Little 1961; no distributional assumptions)."""
    return lam * w


def little_w(l_mean: float, lam: float) -> float:
    """W = L / lam (Little's law solved for the time in system)."""
    _positive("lam", lam)
    return l_mean / lam


def erlang_b(c: int, a: float) -> float:
    """Blocking probability of M/G/c/c (Erlang B), by the stable recursion
    B(0) = 1, B(k) = a B(k-1) / (k + a B(k-1)). Holds for any a >= 0: a loss
    system is always stable."""
    _servers(c)
    if not (math.isfinite(a) and a >= 0):
        raise ValueError(f"a(={a!r}) must be a finite number >= 0")
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in M/M/c (Erlang C):
    C(c, a) = B / (1 - rho (1 - B)) with B = erlang_b(c, a), rho = a/c < 1.
    Exact for Poisson arrivals, exponential service, FCFS."""
    _servers(c)
    rho = a / c
    if rho >= 1:
        raise ValueError(f"rho(={rho:.4g}) must be < 1 for a stable queue (a={a}, c={c})")
    b = erlang_b(c, a)
    return b / (1 - rho * (1 - b))


def mmc_mean_wait(lam: float, mu: float, c: int) -> float:
    """Mean wait in queue of M/M/c: Wq = C(c, a) / (c mu - lam)."""
    _stable(lam, 1 / mu, c)
    return erlang_c(c, lam / mu) / (c * mu - lam)


def mmc_wait_tail(t: float, lam: float, mu: float, c: int) -> float:
    """P(Wq > t) = C(c, a) exp(-(c mu - lam) t) for M/M/c FCFS, t >= 0."""
    _stable(lam, 1 / mu, c)
    return erlang_c(c, lam / mu) * math.exp(-(c * mu - lam) * t)


def mmc_sojourn_tail(t: float, lam: float, mu: float, c: int) -> float:
    """P(T > t) for the time in system T = Wq + S of M/M/c FCFS.

    Wq is 0 with probability 1 - C and Exp(theta) otherwise, theta = c mu - lam,
    independent of S ~ Exp(mu), so
    P(T > t) = (1 - C) e^{-mu t} + C (theta e^{-mu t} - mu e^{-theta t}) / (theta - mu),
    with the limit C (1 + mu t) e^{-mu t} when theta = mu.
    """
    _stable(lam, 1 / mu, c)
    pc = erlang_c(c, lam / mu)
    theta = c * mu - lam
    if math.isclose(theta, mu, rel_tol=1e-9):
        both = (1 + mu * t) * math.exp(-mu * t)
    else:
        both = (theta * math.exp(-mu * t) - mu * math.exp(-theta * t)) / (theta - mu)
    return (1 - pc) * math.exp(-mu * t) + pc * both


def mmc_wait_quantile(p: float, lam: float, mu: float, c: int) -> float:
    """The p-quantile of Wq for M/M/c: 0 when 1 - p >= C, else ln(C / (1 - p)) / (c mu - lam)."""
    _probability(p)
    _stable(lam, 1 / mu, c)
    pc = erlang_c(c, lam / mu)
    if 1 - p >= pc:
        return 0.0
    return math.log(pc / (1 - p)) / (c * mu - lam)


def mmc_sojourn_quantile(p: float, lam: float, mu: float, c: int) -> float:
    """The p-quantile of the time in system of M/M/c, solving mmc_sojourn_tail(t) = 1 - p."""
    _probability(p)
    _stable(lam, 1 / mu, c)
    target = 1 - p
    hi = 1.0 / mu
    while mmc_sojourn_tail(hi, lam, mu, c) > target:
        hi *= 2
    from scipy import optimize  # noqa: PLC0415 - scipy loads only where a formula needs it

    return float(optimize.brentq(lambda t: mmc_sojourn_tail(t, lam, mu, c) - target, 0.0, hi))


def relaxation_time(
    rho: float, mean_service: float, c: int = 1, *, scv: float = 1.0, ca2: float = 1.0
) -> float:
    """How long a queue takes to forget its start: the time constant of its
    approach to steady state, tau, for utilisation rho < 1 of c servers.

        tau = max(E[S], E[S] (ca2 + cs2) / (2 c (1 - sqrt(rho))^2))

    with ca2 and cs2 (``scv``) the squared cvs of inter-arrival and service times.

    - M/M/1 (c = 1, ca2 = cs2 = 1): exactly Morse's relaxation time
      1 / (mu (1 - sqrt(rho))^2) (Morse 1955): the distance of the queue's
      distribution from steady state decays like exp(-t / tau).
    - M/M/c: while all c servers are busy the line is an M/M/1 served at
      c mu, hence c mu in place of mu (the heavy-traffic estimate). With the
      floor below it matches 1 / (spectral gap) of the M/M/c birth-death
      chain, computed numerically, at every (c, rho) tried
      (tests/test_theory.py).
    - G/G/c: the factor (ca2 + cs2) / 2 is Kingman's heavy-traffic scaling:
      the queue is then a reflected Brownian motion of variance
      lam (ca2 + cs2) and drift -(c mu - lam), whose relaxation time
      2 variance / drift^2 agrees with the formula as rho -> 1.
    - Never under E[S]: the busy servers themselves turn over at rate mu, so
      nothing settles faster than one service time (M/M/inf relaxes in E[S]).

    Near saturation tau grows like 4 E[S] / (c (1 - rho)^2): at rho = 0.95 a
    queue needs about 1,500 arrivals per relaxation time, at 0.98 about
    10,000, whatever c and E[S] (lam tau = rho (ca2 + cs2) / (2 (1 - sqrt(rho))^2)).
    Simulations size their warm-up and run length in these units.
    """
    _servers(c)
    _positive("mean_service", mean_service)
    if not (0 <= rho < 1):
        raise ValueError(f"rho(={rho!r}) must be in [0, 1): a saturated queue never settles")
    if not (math.isfinite(scv) and scv >= 0 and math.isfinite(ca2) and ca2 >= 0):
        raise ValueError(f"scv(={scv!r}) and ca2(={ca2!r}) must be finite numbers >= 0")
    heavy = mean_service * (ca2 + scv) / (2 * c * (1 - math.sqrt(rho)) ** 2)
    return max(mean_service, heavy)


def mg1_mean_wait(lam: float, mean_service: float, cv: float) -> float:
    """Pollaczek-Khinchine mean wait of M/G/1:
    Wq = rho E[S] (1 + cv^2) / (2 (1 - rho)). Exact for Poisson arrivals and
    any service distribution with finite variance, any work-conserving
    non-preemptive order that ignores service times (FCFS here)."""
    rho = _stable(lam, mean_service, 1)
    return rho * mean_service * (1 + cv**2) / (2 * (1 - rho))


def allen_cunneen_mean_wait(
    lam: float, mean_service: float, c: int, *, ca2: float = 1.0, cs2: float = 1.0
) -> float:
    """Allen-Cunneen approximation for G/G/c:
    Wq ~ C(c, a) / (c mu - lam) * (ca2 + cs2) / 2, with ca2 and cs2 the squared
    cvs of inter-arrival and service times. Exact for M/M/c (ca2 = cs2 = 1) and
    M/G/1; an approximation otherwise, usually within about 10% for rho >= 0.5."""
    _stable(lam, mean_service, c)
    return erlang_c(c, lam * mean_service) / (c / mean_service - lam) * (ca2 + cs2) / 2


def mginf_mean_busy(lam: float, mean_service: float) -> float:
    """Mean number busy in M/G/inf: lam E[S] (insensitive to the service
    distribution). Nobody waits: Wq = 0."""
    _positive("lam", lam)
    return lam * mean_service


def mginf_busy_quantile(p: float, lam: float, mean_service: float) -> int:
    """The number busy in M/G/inf is Poisson(lam E[S]); this is its p-quantile."""
    _probability(p)
    from scipy import stats  # noqa: PLC0415 - see mmc_sojourn_quantile

    return int(stats.poisson.ppf(p, mginf_mean_busy(lam, mean_service)))


def _probability(p: float) -> None:
    if not (0 < p < 1):
        raise ValueError(f"p(={p!r}) must be in (0, 1)")
