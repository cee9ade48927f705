"""The compiled kernels, ahead of time when built, else by numba's JIT.

``simlab.kernels_build`` compiles ``fast_events.run_events``,
``fast_kernel``'s ``recurse`` and ``dense_ids``, ``levels_kernel``'s ``sweep_peaks``,
``sweep_levels``, ``earliest`` and ``positive_overlaps``, and ``order_kernel``'s
``bucket_counts`` and ``gather_buckets`` into an extension
module at install time (``make``); loading it costs a few milliseconds where numba's JIT costs about
1.4 s a process (its import and its target's registries). Each function here
runs the built module's code when the module exists, was built from the
sources as they are now (its ``source_stamp``), and the arguments have the
exact types it was compiled for; otherwise it runs the numba function itself.
Both are the same source compiled by the same numba, so the results are the
same (``tests/test_kernels.py`` checks it request for request).

An AOT function reads an argument's memory as the type it was compiled for
without checking, so every argument is checked here first: an array must
have the dtype and the number of dimensions (it is made contiguous if it is
not), a scalar the kind. Anything else goes to the JIT, which compiles for
what it is given.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "aot_module",
    "bucket_counts",
    "dense_ids",
    "earliest",
    "gather_buckets",
    "positive_overlaps",
    "ready",
    "recurse",
    "run_events",
    "source_stamp",
    "sweep_levels",
    "sweep_peaks",
]

MODULE = "simlab._kernels"
# The sources the built module is compiled from: any change to them retires it.
SOURCES = ("fast_events.py", "fast_kernel.py", "levels_kernel.py", "order_kernel.py", "kernels.py")
# ``SIMLAB_KERNELS=jit`` runs the JIT even when the built module is current
# (the tests compare the two).
ENV = "SIMLAB_KERNELS"

# The signatures, in numba's spelling: what ``kernels_build`` compiles and
# what ``_fits`` checks each call against.
F1, I1 = "float64[::1]", "int64[::1]"
RUN_EVENTS_ARGS = (
    "int64", F1, "boolean", "float64", "float64", I1, I1, "int64", "float64[:, ::1]",
    "int64[:, ::1]", "int8[::1]", F1, F1, F1, F1, "int64", "int64", I1, I1, "int64",
    "boolean", "float64", "float64", "float64", "float64", "float64",
    "float64", "float64", "int64", "boolean", "boolean", "float64", "float64", "int64",
    "int64", "int64", I1, I1, "boolean", "int64", "float64", "float64", "float64",
    "float64", "float64", "float64", F1, "int64", "float64", "float64", I1, I1, I1, F1,
    "float64", "float64", F1,
)  # fmt: skip
RUN_EVENTS_RETURNS = (
    "int64", F1, F1, F1, F1, F1, F1, I1, I1, "int8[::1]", F1, I1, F1, F1, F1, F1,
    "boolean", "boolean", "boolean", "int64",
)  # fmt: skip
SWEEP_PEAKS_ARGS = (F1, F1, F1, I1, "float64[:, ::1]", F1, "float64", "float64", F1)
SWEEP_PEAKS_RETURNS = F1
SWEEP_LEVELS_ARGS = (*SWEEP_PEAKS_ARGS, F1, I1, I1)
SWEEP_LEVELS_RETURNS = (F1, "float64[:, ::1]")
EARLIEST_ARGS = (I1, F1, "int64")
EARLIEST_RETURNS = F1
POSITIVE_OVERLAPS_ARGS = (F1, F1, I1, "float64", "float64", F1)
POSITIVE_OVERLAPS_RETURNS = I1
RECURSE_ARGS = (
    "int64", F1, I1, I1, "int64", F1, F1, "int64", "int64", I1, I1, "float64", "boolean",
    "float64", "int64",
)  # fmt: skip
RECURSE_RETURNS = (F1, F1, F1, F1, F1, I1, I1, F1, F1, F1, F1)
DENSE_IDS_ARGS = (I1,)
DENSE_IDS_RETURNS = ("int64", I1)
BUCKET_COUNTS_ARGS = (F1,)
BUCKET_COUNTS_RETURNS = (I1, F1, F1)
GATHER_BUCKETS_ARGS = (F1, "int8[::1]", F1)
GATHER_BUCKETS_RETURNS = "int64"


def source_stamp() -> int:
    """A 60-bit hash of the kernels' sources, as the built module records it."""
    # Loaded here: a run that never reaches the kernels (the DES under
    # ``metrics.SWEEP_MIN_REQUESTS``) does not pay OpenSSL's import (~3 ms).
    import hashlib  # noqa: PLC0415

    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((here / name).read_bytes())
    return int(digest.hexdigest()[:15], 16)


@functools.cache
def aot_module() -> ModuleType | None:
    """The built module when it is there and current, else None (the JIT runs)."""
    if os.environ.get(ENV, "") == "jit":
        return None
    try:
        module = importlib.import_module(MODULE)
    except ImportError:
        return None
    if module.source_stamp() != source_stamp():
        return None
    return module


def ready() -> bool:
    """Whether the kernels cost nothing to start: built ahead of time and
    current, or numba loaded already (the fast engine's runs by the JIT).
    Elsewhere a kernel's first call would load numba (about 0.9 s of CPU):
    more than the few it saves a summary."""
    return aot_module() is not None or "numba" in sys.modules


_MISFIT = object()


def _fits(args: tuple[Any, ...], spec: tuple[str, ...]) -> list[Any] | None:
    """The arguments as the AOT function reads them, or None if any differs
    from what it was compiled for."""
    if len(args) != len(spec):
        return None
    out = [_fit(value, want) for value, want in zip(args, spec, strict=True)]
    return None if any(v is _MISFIT for v in out) else out


def _fit(value: Any, want: str) -> Any:
    """One argument as the type ``want`` reads it, or ``_MISFIT``."""
    import numpy as np  # noqa: PLC0415 - only a run that uses the kernels needs it

    if "[" in want:
        dtype = np.dtype(want.split("[", 1)[0])
        fits = (
            isinstance(value, np.ndarray)
            and value.dtype == dtype
            and value.ndim == want.count(",") + 1
        )
        return np.ascontiguousarray(value) if fits else _MISFIT
    is_bool = isinstance(value, bool | np.bool_)
    if want == "boolean":
        return bool(value) if is_bool else _MISFIT
    if want == "int64":
        return int(value) if not is_bool and isinstance(value, int | np.integer) else _MISFIT
    number = isinstance(value, float | int | np.floating | np.integer)
    return float(value) if not is_bool and number else _MISFIT


def _call(name: str, source: str, signature: tuple[str, ...], args: tuple[Any, ...]) -> Any:
    """``name`` from the built module when it is current and ``args`` fit
    ``signature``, else from ``source`` by numba's JIT (numba loads on use)."""
    module = aot_module()
    fitted = _fits(args, signature) if module is not None else None
    if module is not None and fitted is not None:
        return getattr(module, name)(*fitted)
    return getattr(importlib.import_module(source), name)(*args)


def run_events(*args: Any) -> tuple[Any, ...]:
    """``simlab.fast_events.run_events``."""
    out: tuple[Any, ...] = _call("run_events", "simlab.fast_events", RUN_EVENTS_ARGS, args)
    return out


def recurse(*args: Any) -> tuple[Any, ...]:
    """``simlab.fast_kernel.recurse``."""
    out: tuple[Any, ...] = _call("recurse", "simlab.fast_kernel", RECURSE_ARGS, args)
    return out


def dense_ids(*args: Any) -> tuple[int, Any]:
    """``simlab.fast_kernel.dense_ids``."""
    out: tuple[int, Any] = _call("dense_ids", "simlab.fast_kernel", DENSE_IDS_ARGS, args)
    return out


def sweep_peaks(*args: Any) -> Any:
    """``simlab.levels_kernel.sweep_peaks``."""
    return _call("sweep_peaks", "simlab.levels_kernel", SWEEP_PEAKS_ARGS, args)


def sweep_levels(*args: Any) -> tuple[Any, Any]:
    """``simlab.levels_kernel.sweep_levels``."""
    out: tuple[Any, Any] = _call("sweep_levels", "simlab.levels_kernel", SWEEP_LEVELS_ARGS, args)
    return out


def earliest(*args: Any) -> Any:
    """``simlab.levels_kernel.earliest``."""
    return _call("earliest", "simlab.levels_kernel", EARLIEST_ARGS, args)


def positive_overlaps(*args: Any) -> Any:
    """``simlab.levels_kernel.positive_overlaps``."""
    return _call("positive_overlaps", "simlab.levels_kernel", POSITIVE_OVERLAPS_ARGS, args)


def bucket_counts(*args: Any) -> tuple[Any, Any, Any]:
    """``simlab.order_kernel.bucket_counts``."""
    out: tuple[Any, Any, Any] = _call(
        "bucket_counts", "simlab.order_kernel", BUCKET_COUNTS_ARGS, args
    )
    return out


def gather_buckets(*args: Any) -> int:
    """``simlab.order_kernel.gather_buckets``."""
    out: int = _call("gather_buckets", "simlab.order_kernel", GATHER_BUCKETS_ARGS, args)
    return out
