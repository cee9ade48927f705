"""The Explore page's estimate curves: what each model's cached curve depends on."""

from __future__ import annotations

import pandas as pd

from simlab.dashboard import compute
from simlab.dashboard.compute import Scenario


def _fresh(s: Scenario) -> pd.DataFrame:
    compute._model_capacity.cache_clear()
    return compute.capacity_curve(s, compute.ALL_MODELS)


def _of(curve: pd.DataFrame, model: str) -> pd.DataFrame:
    return curve[curve["model"] == model].reset_index(drop=True)


def test_a_models_hockey_stick_does_not_depend_on_the_scenarios_rate() -> None:
    """Each curve is cached without the scenario's rate (every point sets its own),
    and without the pool size of a model that has none: computed afresh, the
    curves agree to the bit, and the cached ones agree with the fresh ones."""
    base = Scenario.default()
    curve = _fresh(base)
    assert curve.equals(_fresh(base.with_(rate=150.0)))
    workers = _fresh(base.with_(workers=64))
    for model in ("iterative", "thread-per-connection", "async"):
        assert _of(curve, model).equals(_of(workers, model)), model
    # ... while a pooled model's curve does move with its pool.
    assert not _of(curve, "reactor-pool").equals(_of(workers, "reactor-pool"))
    # Cached: the same numbers as computed afresh.
    compute._model_capacity.cache_clear()
    compute.capacity_curve(base.with_(rate=7.0), compute.ALL_MODELS)
    assert compute.capacity_curve(base.with_(rate=9.0), compute.ALL_MODELS).equals(curve)
