"""The server models, one module each, by the names the CLI uses (``simlab.registry``)."""

from __future__ import annotations

import importlib

from simlab.models.base import Analytic, Model, Record
from simlab.registry import ENTRIES, entry

__all__ = ["MODELS", "Analytic", "Model", "Record", "get_model"]


def _load(spec: str) -> type[Model]:
    module, _, cls = spec.partition(":")
    loaded: type[Model] = getattr(importlib.import_module(f"simlab.models.{module}"), cls)
    return loaded


MODELS: dict[str, type[Model]] = {e.name: _load(e.model) for e in ENTRIES}


def get_model(name: str) -> type[Model]:
    """The model class of architecture ``name`` (a UserError naming the choices if none)."""
    model = MODELS.get(name)
    if model is None:
        entry(name)  # raises, naming the choices
    assert model is not None
    return model
