"""simlab: thread per connection, a thread pool behind an event loop, or async all the way?

Discrete-event models of six server architectures, checked against queueing
theory, and real servers of the same architectures to measure. The API is
thin and typed:

    >>> import simlab
    >>> r = simlab.simulate("async", simlab.c10k_workload(), simlab.load_platform("cpython"))
    >>> r.summary.latency_ms.p99  # doctest: +SKIP

Names are imported on first use (PEP 562), so that the real servers, which
live in this package too, do not load numpy, scipy and pandas: their memory
is what the lab measures.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from simlab.planner import Goals, PlanReport, plan
    from simlab.platforms import PRESETS, load_platform
    from simlab.simulation import Result, compare, simulate
    from simlab.sweep import SweepResult, SweepSpec, load_spec, sweep

__version__ = "0.1.0"

_WHERE = {
    "Empirical": "simlab.distributions",
    "Exponential": "simlab.distributions",
    "Fixed": "simlab.distributions",
    "LogNormal": "simlab.distributions",
    "parse_distribution": "simlab.distributions",
    "MODELS": "simlab.models",
    "Analytic": "simlab.models",
    "Architecture": "simlab.params",
    "Platform": "simlab.params",
    "Trace": "simlab.params",
    "Workload": "simlab.params",
    "ad_service_workload": "simlab.params",
    "c10k_workload": "simlab.params",
    "PRESETS": "simlab.platforms",
    "load_platform": "simlab.platforms",
    "Result": "simlab.simulation",
    "compare": "simlab.simulation",
    "simulate": "simlab.simulation",
    "Goals": "simlab.planner",
    "PlanReport": "simlab.planner",
    "plan": "simlab.planner",
    "SweepResult": "simlab.sweep",
    "SweepSpec": "simlab.sweep",
    "load_spec": "simlab.sweep",
    "sweep": "simlab.sweep",
}

__all__ = [
    "MODELS",
    "PRESETS",
    "Analytic",
    "Architecture",
    "Empirical",
    "Exponential",
    "Fixed",
    "Goals",
    "LogNormal",
    "PlanReport",
    "Platform",
    "Result",
    "SweepResult",
    "SweepSpec",
    "Trace",
    "Workload",
    "__version__",
    "ad_service_workload",
    "c10k_workload",
    "compare",
    "load_platform",
    "load_spec",
    "parse_distribution",
    "plan",
    "simulate",
    "sweep",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'simlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
