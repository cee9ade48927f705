"""Build the compiled kernels ahead of time: ``python -m simlab.kernels_build``.

The fast engine's loops (``fast_events.run_events``, ``fast_kernel.recurse``,
``fast_kernel.dense_ids``)
and the summary's (``levels_kernel.sweep_peaks``, ``sweep_levels``,
``earliest``, ``positive_overlaps``; ``order_kernel.bucket_counts``,
``gather_buckets``) are numba functions.
Run by numba's JIT, every process pays about 1.4 s before the first request:
numba's import (which imports scipy.linalg to look for BLAS) and its CPU
target's registries, initialised on the first call even when the machine code
comes from the cache. Compiled here once, at install time (``make``), by
numba's ahead-of-time compiler (``numba.pycc``), the same functions become an
ordinary extension module, ``simlab/_kernels*.so``, which needs only numpy to
load: the same code, compiled by the same numba, from the same source.

The module records the hash of the sources it was built from
(``simlab.kernels.source_stamp``); ``simlab.kernels`` uses it only while the
sources are unchanged, and falls back to the JIT otherwise, so an edited
kernel is never run from a stale build.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from pathlib import Path
from typing import Any


def signature(args: tuple[str, ...], returns: str | tuple[str, ...]) -> str:
    """numba's signature string, ``ret(args)``."""
    ret = returns if isinstance(returns, str) else f"Tuple(({', '.join(returns)},))"
    return f"{ret}({', '.join(args)})"


def build(out_dir: Path) -> Path:
    """Compile the kernels into ``out_dir``; returns the module's path."""
    from numba.core.errors import NumbaPendingDeprecationWarning  # noqa: PLC0415

    with warnings.catch_warnings():
        # pycc is pending deprecation in numba with no replacement yet; it
        # still builds, and simlab falls back to the JIT where it cannot.
        warnings.simplefilter("ignore", NumbaPendingDeprecationWarning)
        pycc: Any = importlib.import_module("numba.pycc")  # untyped

    from simlab import fast_events, fast_kernel, kernels, levels_kernel, order_kernel  # noqa: PLC0415
    from simlab.kernels import (  # noqa: PLC0415
        BUCKET_COUNTS_ARGS,
        BUCKET_COUNTS_RETURNS,
        DENSE_IDS_ARGS,
        DENSE_IDS_RETURNS,
        EARLIEST_ARGS,
        EARLIEST_RETURNS,
        GATHER_BUCKETS_ARGS,
        GATHER_BUCKETS_RETURNS,
        POSITIVE_OVERLAPS_ARGS,
        POSITIVE_OVERLAPS_RETURNS,
        RECURSE_ARGS,
        RECURSE_RETURNS,
        RUN_EVENTS_ARGS,
        RUN_EVENTS_RETURNS,
        SWEEP_LEVELS_ARGS,
        SWEEP_LEVELS_RETURNS,
        SWEEP_PEAKS_ARGS,
        SWEEP_PEAKS_RETURNS,
    )

    cc = pycc.CC(kernels.MODULE.rsplit(".", 1)[1])
    cc.output_dir = str(out_dir)
    cc.verbose = False
    stamp = kernels.source_stamp()

    def source_stamp() -> int:  # pragma: no cover - compiled
        return stamp

    cc.export("source_stamp", "int64()")(source_stamp)
    cc.export("run_events", signature(RUN_EVENTS_ARGS, RUN_EVENTS_RETURNS))(
        fast_events.run_events.py_func
    )
    cc.export("sweep_peaks", signature(SWEEP_PEAKS_ARGS, SWEEP_PEAKS_RETURNS))(
        levels_kernel.sweep_peaks.py_func
    )
    cc.export("sweep_levels", signature(SWEEP_LEVELS_ARGS, SWEEP_LEVELS_RETURNS))(
        levels_kernel.sweep_levels.py_func
    )
    cc.export("earliest", signature(EARLIEST_ARGS, EARLIEST_RETURNS))(
        levels_kernel.earliest.py_func
    )
    cc.export("positive_overlaps", signature(POSITIVE_OVERLAPS_ARGS, POSITIVE_OVERLAPS_RETURNS))(
        levels_kernel.positive_overlaps.py_func
    )
    cc.export("recurse", signature(RECURSE_ARGS, RECURSE_RETURNS))(fast_kernel.recurse.py_func)
    cc.export("dense_ids", signature(DENSE_IDS_ARGS, DENSE_IDS_RETURNS))(
        fast_kernel.dense_ids.py_func
    )
    cc.export("bucket_counts", signature(BUCKET_COUNTS_ARGS, BUCKET_COUNTS_RETURNS))(
        order_kernel.bucket_counts.py_func
    )
    cc.export("gather_buckets", signature(GATHER_BUCKETS_ARGS, GATHER_BUCKETS_RETURNS))(
        order_kernel.gather_buckets.py_func
    )
    cc.compile()
    built = sorted(out_dir.glob(cc.name + ".*.so")) + sorted(out_dir.glob(cc.name + ".so"))
    if not built:
        raise RuntimeError(f"numba.pycc wrote no {cc.name} module into {out_dir}")
    return built[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent, help="where the module goes"
    )
    args = ap.parse_args(argv)
    path = build(args.out)
    print(f"built {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
