"""The kernels built ahead of time (``simlab.kernels``) against numba's JIT of
the same source: the same requests, and a stale or mistyped call never runs
the built code."""

from __future__ import annotations

import numpy as np
import pytest

import simlab
from simlab import Architecture, Workload, kernels
from simlab.distributions import Exponential, Fixed
from tests.test_fast import GIL_CASES


def test_the_built_kernels_are_there_and_current():
    # ``make`` builds them (``make kernels`` after an edit of a kernel's source);
    # without them every fast run pays numba's start-up, about 1.4 s.
    assert kernels.aot_module() is not None, (
        "simlab/_kernels*.so is missing or older than its sources: run `make kernels`"
    )


CASES = [
    # The calibrated default: a GIL handed out of order, wake-ups, 2 cores
    # (the first two of the DES = fast cases: a reactor pool, and a thread pool
    # with a connection per request).
    *((model, workload, arch, "cpython") for model, workload, arch in GIL_CASES[:2]),
    (
        "two-tier",
        Workload(connections=300, rate=150.0, cpu=Exponential(0.004), io=Exponential(0.02),
                 calls=2, requests_per_connection=2),
        Architecture(workers=4, processes=2, fronts=2),
        "cpython",
    ),
    # The ideal platform: the recursion (``recurse``), with clients that queue.
    (
        "reactor-pool",
        Workload(connections=50, rate=80.0, cpu=Fixed(0.0), io=Exponential(0.1)),
        Architecture(workers=4, processes=2),
        "ideal",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("model", "workload", "arch", "platform"), CASES)
def test_built_and_jit_kernels_give_the_same_requests(model, workload, arch, platform, monkeypatch):
    p = simlab.load_platform(platform)
    if platform == "cpython":
        p = p.with_(gil_interval_us=p.gil_interval_us or 5000.0, gil_fifo_share=0.0)
        assert p.gil and p.wake_us > 0
    run = {"duration": 12.0, "warmup": 1.0, "replications": 2, "engine": "fast"}
    built = simlab.simulate(model, workload, p, arch, **run)
    calls = []
    jit_module = kernels.aot_module
    monkeypatch.setattr(kernels, "aot_module", lambda: calls.append(1))  # None: the JIT
    jit = simlab.simulate(model, workload, p, arch, **run)
    monkeypatch.setattr(kernels, "aot_module", jit_module)
    assert calls, "the JIT's run did not go through simlab.kernels"
    a, b = built.requests, jit.requests
    assert len(a) == len(b) > 0
    for col in a.columns:
        np.testing.assert_array_equal(a[col].to_numpy(), b[col].to_numpy(), err_msg=col)
    assert built.summary.to_dict() == jit.summary.to_dict()


def test_the_sweep_gives_the_same_peaks_built_and_jit():
    from simlab.levels_kernel import sweep_peaks  # noqa: PLC0415 - the JIT itself

    rng = np.random.default_rng(7)
    starts = np.sort(rng.uniform(0, 100, 2000))
    ends = starts + rng.exponential(3.0, 2000)
    ends[::50] = np.inf
    offsets = np.array([0, 1200, 2000], np.int64)
    weights = np.array([[1.0, 0.0], [0.5, 2.0], [0.0, 1.0]])
    bases = np.array([0.0, 3.0, 1.0])
    by_end = np.concatenate((np.sort(ends[:1200]), np.sort(ends[1200:])))
    args = (starts, ends, by_end, offsets, weights, bases, 5.0, 90.0, bases.copy())
    module = kernels.aot_module()
    assert module is not None
    np.testing.assert_array_equal(module.sweep_peaks(*args), sweep_peaks(*args))


def test_only_exact_types_reach_the_built_code():
    spec = ("float64[::1]", "int64[::1]", "float64[:, ::1]", "int64", "float64", "boolean")
    good = (np.zeros(3), np.zeros(2, np.int64), np.zeros((2, 2)), 3, 1.5, True)
    fitted = kernels._fits(good, spec)
    assert fitted is not None and fitted[3] == 3 and fitted[5] is True
    # A strided view is copied, contiguous, with the same values.
    view = np.arange(10.0)[::2]
    fitted = kernels._fits((view, *good[1:]), spec)
    assert fitted is not None and fitted[0].flags.c_contiguous
    np.testing.assert_array_equal(fitted[0], view)
    # The built code would read these bytes as the wrong type: they go to the JIT.
    for k, wrong in [
        (0, np.zeros(3, np.float32)),
        (1, np.zeros(2, np.uint64)),
        (1, np.zeros(2, np.int32)),
        (2, np.zeros(4)),
        (3, 2.0),
        (3, True),
        (4, "1.5"),
        (5, 1),
    ]:
        args = list(good)
        args[k] = wrong
        assert kernels._fits(tuple(args), spec) is None, (k, wrong)
    assert kernels._fits(good[:-1], spec) is None


def test_a_stale_build_is_not_used(monkeypatch):
    assert kernels.aot_module.__wrapped__() is not None  # type: ignore[attr-defined]
    monkeypatch.setattr(kernels, "source_stamp", lambda: -1)
    assert kernels.aot_module.__wrapped__() is None  # type: ignore[attr-defined]


def test_the_jit_can_be_asked_for(monkeypatch):
    monkeypatch.setenv(kernels.ENV, "jit")
    assert kernels.aot_module.__wrapped__() is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("compiled", ["built", "jit"])
def test_dense_connection_ids_number_ids_by_first_appearance(compiled, monkeypatch):
    from simlab.fast import _dense_ids  # noqa: PLC0415 - the helper under test

    if compiled == "jit":
        monkeypatch.setattr(kernels, "aot_module", lambda: None)
    rng = np.random.default_rng(3)
    for ids in (
        rng.integers(0, 10**12, 20_000),
        rng.integers(0, 50, 5_000),
        # Ids that share their hash's low bits and fill runs of the table:
        # multiples of a large power of two, negative ids, the int64 extremes.
        np.arange(0, 2**40 * 3_000, 2**40, dtype=np.int64),
        rng.integers(-(2**63), 2**63 - 1, 3_000, dtype=np.int64, endpoint=True),
        np.array([-1, 2**63 - 1, -(2**63), 0, -1, -(2**63)], np.int64),
        np.array([7, 3, 7, 9, 3, 3], np.int64),
        np.array([5], np.int64),
        np.zeros(0, np.int64),
    ):
        unique, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        # np.unique's numbers (sorted order), renumbered by each id's first index.
        by_appearance = np.empty(len(unique), np.int64)
        by_appearance[np.argsort(first)] = np.arange(len(unique))
        count, dense = _dense_ids(ids)
        assert count == len(unique)
        np.testing.assert_array_equal(dense, by_appearance[inverse])
        assert dense.dtype == np.int64
