"""simlab: thread per connection, a thread pool behind an event loop, or async all the way?

Discrete-event models of six server architectures, checked against queueing
theory. The API is thin and typed:

    >>> import simlab
    >>> r = simlab.simulate("async", simlab.c10k_workload(), simlab.load_platform("cpython"))
    >>> r.summary["latency_ms"]["p99"]  # doctest: +SKIP
"""

from __future__ import annotations

from simlab.distributions import Empirical, Exponential, Fixed, LogNormal, parse_distribution
from simlab.models import MODELS, Analytic
from simlab.params import (
    Architecture,
    Platform,
    Trace,
    Workload,
    ad_service_workload,
    c10k_workload,
)
from simlab.platforms import PRESETS, load_platform
from simlab.simulation import Result, compare, simulate

__version__ = "0.1.0"

__all__ = [
    "MODELS",
    "PRESETS",
    "Analytic",
    "Architecture",
    "Empirical",
    "Exponential",
    "Fixed",
    "LogNormal",
    "Platform",
    "Result",
    "Trace",
    "Workload",
    "__version__",
    "ad_service_workload",
    "c10k_workload",
    "compare",
    "load_platform",
    "parse_distribution",
    "simulate",
]
