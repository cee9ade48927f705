"""The server models, one module each, by the names the CLI uses (``simlab.registry``)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from simlab.models.base import Analytic, Model, Record
from simlab.registry import ENTRIES, entry

__all__ = ["MODELS", "Analytic", "Model", "Record", "get_model"]


def _load(spec: str) -> type[Model]:
    module, _, cls = spec.partition(":")
    loaded: type[Model] = getattr(importlib.import_module(f"simlab.models.{module}"), cls)
    return loaded


class _Models(Mapping[str, type[Model]]):
    """Each model's class by its name, in the registry's order; a model's module
    is imported when its class is first asked for, so that a run of one model
    does not import the others."""

    def __init__(self) -> None:
        self._specs = {e.name: e.model for e in ENTRIES}
        self._classes: dict[str, type[Model]] = {}

    def __getitem__(self, name: str) -> type[Model]:
        cls = self._classes.get(name)
        if cls is None:
            cls = self._classes[name] = _load(self._specs[name])
        return cls

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"MODELS({', '.join(self._specs)})"


MODELS: Mapping[str, type[Model]] = _Models()


def get_model(name: str) -> type[Model]:
    """The model class of architecture ``name`` (a UserError naming the choices if none)."""
    if name not in MODELS:
        entry(name)  # raises, naming the choices
    return MODELS[name]
