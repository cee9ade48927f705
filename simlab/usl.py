"""The Universal Scalability Law (Gunther): throughput against concurrency, fitted with CIs.

    X(N) = lambda N / (1 + sigma (N - 1) + kappa N (N - 1))

sigma is contention (the serial fraction: queueing for a shared resource),
kappa is coherency (the pairwise cost of keeping N workers consistent),
lambda the throughput of one. With kappa > 0 throughput peaks at
N* = sqrt((1 - sigma) / kappa) and then falls (retrograde scaling); the
ceiling is X(N*). With kappa = 0 it only flattens toward lambda / sigma.

``fit_usl`` is pure (arrays in, numbers out). ``usl_study`` measures a real
server in closed loop (no think time) at each concurrency, fits the law to
the measured points and to the simulation's points, and plots both.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize, stats

from simlab.distributions import RESEND_AT_ONCE, Fixed
from simlab.params import Architecture, Platform, Workload
from simlab.paths import usl_dir
from simlab.provenance import (
    atomic_write,
    atomic_write_json,
    git_revision,
    machine,
    utc_stamp,
)
from simlab.real.measure import MeasureOptions, measure
from simlab.real.peers import RESEMBLES
from simlab.simulation import simulate

__all__ = ["UslFit", "fit_usl", "usl_study", "usl_throughput"]


def usl_throughput(n: np.ndarray | float, sigma: float, kappa: float, lam: float) -> np.ndarray:
    n = np.asarray(n, dtype=np.float64)
    out: np.ndarray = lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))
    return out


@dataclass(frozen=True)
class UslFit:
    sigma: float
    kappa: float
    lam: float
    ci95: dict[str, list[float]]
    residual_sd: float

    @property
    def peak_concurrency(self) -> float:
        """N* = sqrt((1 - sigma) / kappa); infinite when kappa is 0."""
        if self.kappa <= 0 or self.sigma >= 1:
            return math.inf
        return math.sqrt((1 - self.sigma) / self.kappa)

    @property
    def ceiling(self) -> float:
        """The highest throughput: X(N*), or lambda / sigma when kappa = 0."""
        n = self.peak_concurrency
        if math.isinf(n):
            return self.lam / self.sigma if self.sigma > 0 else math.inf
        return float(usl_throughput(n, self.sigma, self.kappa, self.lam))

    def as_dict(self) -> dict[str, Any]:
        return {
            "sigma": self.sigma,
            "kappa": self.kappa,
            "lambda": self.lam,
            "ci95": self.ci95,
            "peak_concurrency": self.peak_concurrency,
            "ceiling": self.ceiling,
            "residual_sd": self.residual_sd,
        }


def fit_usl(n: Sequence[float], x: Sequence[float]) -> UslFit:
    """Nonlinear least squares for (sigma, kappa, lambda) >= 0, with 95% CIs from
    the Jacobian: cov = s^2 (J^T J)^-1, t with (points - 3) degrees of freedom."""
    nn = np.asarray(n, dtype=np.float64)
    xx = np.asarray(x, dtype=np.float64)
    if len(nn) < 4:
        raise ValueError(f"fitting the USL needs at least 4 points, got {len(nn)}")
    lam0 = float(xx[np.argmin(nn)] / nn.min())
    result = optimize.least_squares(
        lambda th: usl_throughput(nn, *th) - xx,
        x0=[0.05, 0.001, max(lam0, 1e-9)],
        bounds=([0.0, 0.0, 0.0], [1.0, np.inf, np.inf]),
        x_scale="jac",
    )
    dof = len(nn) - 3
    rss = float(result.fun @ result.fun)
    s2 = rss / dof if dof > 0 else math.nan
    try:
        cov = s2 * np.linalg.inv(result.jac.T @ result.jac)
        se = np.sqrt(np.clip(np.diag(cov), 0, np.inf))
    except np.linalg.LinAlgError:
        se = np.full(3, math.nan)
    t = float(stats.t.ppf(0.975, max(dof, 1)))
    names = ("sigma", "kappa", "lambda")
    ci = {
        k: [float(v - t * e), float(v + t * e)] for k, v, e in zip(names, result.x, se, strict=True)
    }
    sigma, kappa, lam = (float(v) for v in result.x)
    return UslFit(sigma, kappa, lam, ci, math.sqrt(s2) if dof > 0 else math.nan)


def usl_study(
    target: str,
    *,
    levels: Sequence[int],
    cpu_ms: float,
    io_ms: float,
    calls: int,
    arch: Architecture,
    platform: Platform,
    duration: float = 4.0,
    warmup: float = 1.0,
    seed: int = 1,
    out_dir: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Closed-loop real runs at each concurrency, the simulation beside them, both fitted."""
    tick = progress or (lambda _l, _k, _n: None)
    model = RESEMBLES.get(target, target)
    points: list[dict[str, Any]] = []
    for k, n in enumerate(levels, 1):
        tick(f"{target} at concurrency {n}", k, len(levels))
        # A client that resends as soon as it is answered.
        real_w = Workload(
            connections=n,
            think=RESEND_AT_ONCE,
            cpu=Fixed(cpu_ms / 1e3),
            io=Fixed(io_ms / 1e3),
            calls=calls,
        )
        real = measure(
            MeasureOptions(
                target, real_w, arch, duration=duration, warmup=warmup, seed=seed + k, save=False
            )
        ).summary
        sim = simulate(
            model,
            real_w,
            platform,
            arch,
            duration=max(duration, 10.0),
            warmup=warmup,
            seed=seed + k,
            replications=2,
        ).summary
        points.append(
            {
                "n": n,
                "measured": real.throughput_rps,
                "simulated": sim.throughput_rps,
                "measured_p50_ms": real.latency_ms.p50,
                "simulated_p50_ms": sim.latency_ms.p50,
            }
        )
    ns = [p["n"] for p in points]
    measured = fit_usl(ns, [p["measured"] for p in points])
    simulated = fit_usl(ns, [p["simulated"] for p in points])
    result = {
        "target": target,
        "model": model,
        "levels": list(levels),
        "workload": {"cpu_ms": cpu_ms, "io_ms": io_ms, "calls": calls},
        "architecture": arch.describe(),
        "platform": platform.name,
        "points": points,
        "measured_fit": measured.as_dict(),
        "simulated_fit": simulated.as_dict(),
        "machine": machine(),
        "git_revision": git_revision(),
        "created": utc_stamp(),
        "seed": seed,
    }
    out = out_dir or usl_dir() / target
    atomic_write_json(out / "usl.json", result)
    _plot(points, measured, simulated, target, out)
    return result


def _plot(
    points: list[dict[str, Any]], measured: UslFit, simulated: UslFit, target: str, out: Path
) -> None:
    # matplotlib is heavy and only needed here, so it loads on first plot.
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    ns = np.array([p["n"] for p in points], dtype=float)
    grid = np.geomspace(ns.min(), ns.max() * 1.5, 200)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(ns, [p["measured"] for p in points], label="measured", color="C0")
    ax.plot(
        grid,
        usl_throughput(grid, measured.sigma, measured.kappa, measured.lam),
        color="C0",
        label=f"USL fit (sigma={measured.sigma:.3g}, kappa={measured.kappa:.2g})",
    )
    ax.scatter(ns, [p["simulated"] for p in points], label="simulated", color="C1", marker="x")
    ax.plot(
        grid,
        usl_throughput(grid, simulated.sigma, simulated.kappa, simulated.lam),
        color="C1",
        ls="--",
        label="USL fit to the simulation",
    )
    ax.set_xscale("log")
    ax.set_xlabel("concurrency N (closed-loop clients)")
    ax.set_ylabel("throughput (req/s)")
    ax.set_title(f"{target}: Universal Scalability Law")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(out / "usl.png", buf.getvalue())
