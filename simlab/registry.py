"""The model registry: every architecture by name, where its model and its real server live.

This is the one list of architectures. ``simlab.models`` loads the model
classes from it; ``simlab.real`` finds each real server from it without
importing the models (the real servers must not load numpy or SimPy: their
memory is what the lab measures). Adding an architecture is a model module
in ``simlab/models/``, its real twin in ``simlab/real/``, and one line here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ENTRIES", "MODEL_NAMES", "Entry", "entry"]


@dataclass(frozen=True)
class Entry:
    """One architecture: its name, its model class and its real server's module."""

    name: str
    model: str  # "module:Class" under simlab.models
    server: str  # module under simlab.real, with a ``serve`` entry point


ENTRIES = (
    Entry("iterative", "iterative:Iterative", "iterative"),
    Entry(
        "process-per-connection",
        "process_per_connection:ProcessPerConnection",
        "process_per_connection",
    ),
    Entry(
        "thread-per-connection",
        "thread_per_connection:ThreadPerConnection",
        "thread_per_connection",
    ),
    Entry("thread-pool", "thread_pool:ThreadPool", "thread_pool"),
    Entry("reactor-pool", "reactor_pool:ReactorPool", "reactor_pool"),
    Entry("async", "async_:Async", "async_"),
    # Its real twin is a Python front and back pool; the notes' own systems,
    # nginx + PHP-FPM and nginx + uWSGI, are real peers (``simlab.real.peers``).
    Entry("two-tier", "two_tier:TwoTier", "two_tier"),
)
MODEL_NAMES = tuple(e.name for e in ENTRIES)


def entry(name: str) -> Entry:
    """The registry entry of architecture ``name`` (a UserError naming the choices if none)."""
    from simlab.errors import UserError  # noqa: PLC0415 - keep this module free of imports

    for e in ENTRIES:
        if e.name == name:
            return e
    raise UserError(f"unknown model {name!r} (choose from: {', '.join(MODEL_NAMES)})")
