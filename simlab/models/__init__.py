"""The six server models, one module each, by the names the CLI uses."""

from __future__ import annotations

from simlab.models.async_ import Async
from simlab.models.base import Analytic, Model, Record
from simlab.models.iterative import Iterative
from simlab.models.process_per_connection import ProcessPerConnection
from simlab.models.reactor_pool import ReactorPool
from simlab.models.thread_per_connection import ThreadPerConnection
from simlab.models.thread_pool import ThreadPool

__all__ = ["MODELS", "Analytic", "Model", "Record", "get_model"]

MODELS: dict[str, type[Model]] = {
    m.name: m
    for m in (
        Iterative,
        ProcessPerConnection,
        ThreadPerConnection,
        ThreadPool,
        ReactorPool,
        Async,
    )
}


def get_model(name: str) -> type[Model]:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r} (choose from: {', '.join(MODELS)})") from None
