"""Levels rebuilt from intervals: exact peaks and time-weighted means."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from simlab import metrics
from simlab.distributions import Exponential, Fixed
from simlab.metrics import Step, replication_summary, window_stats, window_sweep
from simlab.params import Architecture, Workload
from simlab.platforms import load_platform
from simlab.simulation import simulate
from simlab.stats import T975, ci95, t975


def test_step_peak_and_mean():
    # Intervals [0,2), [1,3), [2,4) of weight 1: level 1,2,2,1 on unit steps.
    s = Step.build([(np.array([0.0, 1.0, 2.0]), np.array([2.0, 3.0, 4.0]), 1.0)], base=10)
    assert s.window(0.0, 4.0) == (12.0, 11.5)
    # An interval ending as another starts is not a momentary peak of 3.
    assert s.window(1.5, 2.5)[0] == 12.0
    assert s.at(np.array([-1.0, 0.0, 3.5, 9.0])).tolist() == [10.0, 11.0, 11.0, 10.0]


def test_open_ended_and_unstarted_intervals():
    starts = np.array([1.0, math.nan, 2.0])
    ends = np.array([math.inf, math.nan, 3.0])
    s = Step.build([(starts, ends, 2.0)])
    assert s.window(0.0, 4.0) == (4.0, (3 * 2 + 1 * 2) / 4)


def test_weights_combine():
    s = Step.build(
        [(np.array([0.0]), np.array([1.0]), 3.0), (np.array([0.5]), np.array([2.0]), 0.5)]
    )
    assert s.window(0.0, 2.0) == (3.5, (0.5 * 3 + 0.5 * 3.5 + 1 * 0.5) / 2)


def test_ci95():
    assert ci95([1.0]) is None
    lo, hi = ci95([1.0, 2.0, 3.0])
    assert (lo + hi) / 2 == pytest.approx(2.0)
    assert hi - lo == pytest.approx(2 * 4.302652729911275 * 1.0 / math.sqrt(3))


def test_no_events_is_the_base_level():
    s = Step.build([(np.array([math.nan]), np.array([math.nan]), 1.0)], base=3.0)
    assert s.window(0.0, 1.0) == (3.0, 3.0)


def _random_parts(rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, np.ndarray, float]]:
    # Times on a coarse grid, so that starts and ends often coincide (ties are
    # where netting matters), with unstarted (nan), open (inf) and empty intervals.
    parts = []
    for weight in (1.0, 0.37, 2.5):
        starts = rng.integers(0, 40, n).astype(float)
        ends = starts + rng.integers(0, 8, n)
        starts[rng.random(n) < 0.05] = math.nan
        ends[rng.random(n) < 0.05] = math.inf
        ends[rng.random(n) < 0.05] = math.nan
        parts.append((starts, ends, weight))
    return parts


@pytest.mark.parametrize("seed", range(20))
def test_window_stats_agree_with_step_functions(seed: int) -> None:
    """The sweep (large runs) and the step functions (small runs) give the same
    peaks and means, up to the order of floating-point additions."""
    rng = np.random.default_rng(seed)
    parts = _random_parts(rng, int(rng.integers(1, 60)))
    levels = {
        "one": (parts[:1], 0.0),
        "shared": ([parts[0], parts[1]], 3.0),
        "all": (parts, 0.5),
        "none": ([], 7.0),
    }
    t0, t1 = sorted(rng.uniform(-5, 50, 2))
    if seed % 2:  # a window edge on an event's instant
        t0, t1 = math.floor(t0), math.floor(t1) + 1
    got = window_stats(levels, t0, t1)
    for key, (level, base) in levels.items():
        peak, mean = Step.build(level, base).window(t0, t1)
        assert got[key] == pytest.approx((peak, mean), rel=1e-12, abs=1e-12), key


@pytest.mark.parametrize("seed", range(20))
def test_peaks_without_numba_are_the_sweeps_to_the_bit(seed: int) -> None:
    """The DES's summary skips numba (``compiled=False``): binary searches in
    numpy give the compiled sweep's peaks exactly, ties and empty intervals included."""
    rng = np.random.default_rng(seed)
    parts = _random_parts(rng, int(rng.integers(1, 200)))
    levels = {"one": (parts[:1], 0.0), "shared": ([parts[0], parts[1]], 3.0),
              "all": (parts, 0.5), "none": ([], 7.0)}  # fmt: skip
    t0, t1 = sorted(rng.uniform(-5, 50, 2))
    if seed % 2:
        t0, t1 = math.floor(t0), math.floor(t1) + 1
    assert window_stats(levels, t0, t1, compiled=False) == window_stats(
        levels, t0, t1, compiled=True
    )


def test_t975_table_is_scipys() -> None:
    for dof in range(1, len(T975) + 3):
        assert t975(dof) == float(stats.t.ppf(0.975, dof)), dof


@pytest.mark.parametrize("seed", range(12))
def test_the_sweeps_reads_are_the_step_functions(seed: int) -> None:
    """The probe's reads that the sweep takes on a grid (large runs) are
    ``Step.at``'s (small runs): exactly for counts, up to the order of the
    additions for fractional weights; reads without numba are the sweep's to the bit."""
    rng = np.random.default_rng(100 + seed)
    parts = _random_parts(rng, int(rng.integers(1, 120)))
    levels = {"one": (parts[:1], 2.0), "shared": ([parts[0], parts[1]], 3.0),
              "all": (parts, 0.5), "none": ([], 7.0)}  # fmt: skip
    t0, t1 = sorted(rng.uniform(0, 50, 2))
    # Reads before the window too, and on the coarse grid's event instants.
    grid = np.unique(np.concatenate((rng.uniform(-5, t1, 30), np.arange(-3.0, t1))))
    grid = grid[grid < t1]
    read = ("one", "all", "none", "shared")
    sweep = window_sweep(levels, t0, t1, grid=grid, read=read, compiled=True)
    for key in read:
        steps = Step.build(*levels[key])
        expected = steps.at(grid)
        if key in ("one", "none"):  # weight 1: counts, exact either way
            np.testing.assert_array_equal(sweep.reads[key], expected)
        else:
            np.testing.assert_allclose(sweep.reads[key], expected, rtol=1e-12, atol=1e-12)
        at0, at1 = steps.at(np.array([t0, t1]))
        assert sweep.at_t0[key] == pytest.approx(at0, rel=1e-12, abs=1e-12)
        assert sweep.at_t1[key] == pytest.approx(at1, rel=1e-12, abs=1e-12)
    searched = window_sweep(levels, t0, t1, grid=grid, read=read, compiled=False)
    assert searched.stats == sweep.stats
    for key in read:
        np.testing.assert_array_equal(searched.reads[key], sweep.reads[key])


@pytest.mark.parametrize("seed", range(12))
def test_copies_of_a_part_are_swept_once_to_the_same_bits(seed: int) -> None:
    """A part whose intervals equal an earlier part's, in arrays of its own
    (a reactor's server stays and its requests in flight), is gathered and
    swept once (``_same_intervals``): every level's numbers are those of the
    same parts with the copy's intervals nudged apart and back, i.e. of an
    independent sweep of it, to the bit, compiled or not."""
    rng = np.random.default_rng(200 + seed)
    parts = _random_parts(rng, int(rng.integers(2, 150)))
    (s0, e0, _), (s1, e1, _) = parts[0], parts[1]
    copy = (s0.copy(), e0.copy(), 0.37)  # the same intervals, other arrays
    levels = {"one": ([parts[0]], 2.0), "copy": ([copy], 0.0),
              "both": ([parts[0], copy, parts[1]], 3.0), "other": ([parts[1]], 1.0),
              "mixed": ([copy, parts[2]], 0.5)}  # fmt: skip
    assert metrics._same_intervals([(s0, e0), (s1, e1), (copy[0], copy[1])]) == [0, 1, 0]
    t0, t1 = sorted(rng.uniform(0, 50, 2))
    grid = np.arange(-3.0, t1, 0.7)
    read = ("both", "copy", "one")
    # The reference: the copy made distinct (one interval that never starts
    # appended), so that it is swept as a part of its own.
    distinct = (np.append(copy[0], math.nan), np.append(copy[1], 1.0), 0.37)
    apart = {k: ([distinct if p is copy else p for p in ps], b) for k, (ps, b) in levels.items()}
    for compiled in (True, False):
        got = window_sweep(levels, t0, t1, grid=grid, read=read, compiled=compiled)
        want = window_sweep(apart, t0, t1, grid=grid, read=read, compiled=compiled)
        assert got.stats == want.stats
        assert got.at_t0 == want.at_t0
        assert got.at_t1 == want.at_t1
        for key in read:
            np.testing.assert_array_equal(got.reads[key], want.reads[key])


def test_a_grid_past_the_window_is_refused() -> None:
    parts = [(np.array([0.0]), np.array([1.0]), 1.0)]
    with pytest.raises(ValueError, match="grid"):
        window_sweep({"x": (parts, 0.0)}, 0.0, 1.0, grid=np.array([0.5, 1.0]), read=("x",))


@pytest.mark.parametrize(
    ("model", "workload", "platform"),
    [
        # Threads that come and go (a thread per short connection), the DES.
        ("thread-per-connection",
         Workload(connections=400, rate=150.0, cpu=Fixed(0.001), io=Fixed(0.02),
                  requests_per_connection=1), "cpython"),
        # The default platform's event loop (the fast engine), memory growing.
        ("reactor-pool",
         Workload(connections=300, rate=120.0, cpu=Exponential(0.002), io=Exponential(0.05),
                  requests_per_connection=3), "cpython"),
    ],
)  # fmt: skip
def test_large_runs_summary_is_the_small_runs(model, workload, platform, monkeypatch) -> None:
    """A replication's numbers by the one sweep (``SWEEP_MIN_REQUESTS`` and
    over) are the step functions' (under it): the same counts, threads and
    growth to the bit, memory up to rounding."""
    p = load_platform(platform)
    run = {"duration": 6.0, "warmup": 1.0, "replications": 1, "seed": 5, "engine": "auto"}
    result = simulate(model, workload, p, Architecture(workers=6), **run)
    rec = result.records[0]
    small = replication_summary(rec, p)
    monkeypatch.setattr(metrics, "SWEEP_MIN_REQUESTS", 0)
    large = replication_summary(rec, p)
    assert small.keys() == large.keys()
    counted = ("threads_alive", "threads_busy", "connections", "in_flight", "queued", "cpu_busy")
    exact = {f"{lv}_peak" for lv in counted} | {"threads_alive_sampled_peak", "growth"}
    for key, value in small.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(large[key], value, err_msg=key)
        elif key in exact or not isinstance(value, float):
            assert large[key] == value, key
        else:  # a mean, or a memory level's (fractional weights): the sums' order
            assert large[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    # The probe's reads do miss what the exact peak sees on these paths.
    assert small["threads_alive_sampled_peak"] <= small["threads_alive_peak"]


@pytest.mark.parametrize("seed", range(6))
def test_a_level_swept_alone_is_the_same_to_the_bit(seed: int) -> None:
    """A summary sweeps the CPU's phases alone (read in place when clean:
    sorted starts, no nan end): each number is the one it gets among the
    other levels, so splitting the sweep changes nothing."""
    rng = np.random.default_rng(300 + seed)
    parts = _random_parts(rng, int(rng.integers(2, 80)))
    starts = np.sort(rng.uniform(0, 40, 500))
    clean = (starts, starts + rng.exponential(2.0, 500), 1.0)
    levels = {"clean": ([clean], 0.0), "shared": ([parts[0], parts[1]], 3.0),
              "all": (parts, 0.5)}  # fmt: skip
    t0, t1 = sorted(rng.uniform(-5, 50, 2))
    together = window_stats(levels, t0, t1)
    alone = window_stats({"clean": levels["clean"]}, t0, t1)
    assert alone["clean"] == together["clean"]


def test_ends_in_order_but_locally_are_sorted_by_timsort_to_the_same_bits(monkeypatch) -> None:
    """A part's ends in the order of its starts are out of order only among
    intervals open at once: timsort is chosen for them (``_sort_kind``), the
    default sort for ends in no order, and either gives the sweep the same
    peaks and means to the bit."""
    rng = np.random.default_rng(3)
    n = 20_000
    starts = np.cumsum(rng.exponential(0.01, n))
    local = starts + rng.exponential(1.0, n)
    anywhere = rng.uniform(0.0, starts[-1] + 5.0, n)
    assert metrics._sort_kind(local) == "stable"
    assert metrics._sort_kind(np.maximum(anywhere, starts)) == "quicksort"
    for ends in (local, np.maximum(anywhere, starts)):
        levels = {"in_flight": ([(starts, ends, 1.0)], 0.0), "two": ([(starts, ends, 0.5),
                  (starts, ends + 0.25, 2.0)], 1.0)}  # fmt: skip
        t0, t1 = 20.0, float(starts[-1])
        got = window_stats(levels, t0, t1)
        monkeypatch.setattr(metrics, "_sort_kind", lambda _values: "quicksort")
        assert window_stats(levels, t0, t1) == got
        monkeypatch.undo()
        for key, (parts, base) in levels.items():
            peak, mean = Step.build(parts, base).window(t0, t1)
            assert got[key] == pytest.approx((peak, mean), rel=1e-12), key


@pytest.mark.parametrize(
    ("model", "workload", "processes"),
    [
        ("reactor-pool",
         Workload(connections=300, rate=150.0, cpu=Exponential(0.002), io=Exponential(0.05),
                  requests_per_connection=3), 1),
        ("async", Workload(connections=200, rate=200.0, cpu=Exponential(0.002),
                           io=Exponential(0.02)), 2),
        ("thread-pool", Workload(connections=2_000, rate=100.0, cpu=Exponential(0.003),
                                 io=Exponential(0.03), requests_per_connection=1), 1),
    ],
)  # fmt: skip
def test_the_fast_engines_end_order_reads_the_ends_in_order_and_changes_no_number(
    model, workload, processes, monkeypatch
) -> None:
    """The fast engine's event loop writes which requests were answered, in
    the order of their ends (``Record.end_order``): every answered request
    once, the ends in order along it; a summary that reads the ends in that
    order instead of sorting them gives every number to the bit, and one
    with a damaged order (not every answered request) does not use it."""
    p = load_platform("cpython")
    run = {"duration": 8.0, "warmup": 1.0, "replications": 1, "seed": 9, "engine": "fast"}
    result = simulate(model, workload, p, Architecture(workers=8, processes=processes), **run)
    rec = result.records[0]
    assert rec.end_order is not None
    end = rec.columns["end"]
    np.testing.assert_array_equal(np.sort(rec.end_order), np.flatnonzero(~np.isnan(end)))
    assert bool(np.all(np.diff(end[rec.end_order]) >= 0))
    order = rec.end_order
    # The summary's sweep, as a large run takes it; and which orders it read.
    monkeypatch.setattr(metrics, "SWEEP_MIN_REQUESTS", 0)
    read: list[bool] = []
    sorted_ends = metrics._sorted_ends

    def spy(ends: np.ndarray, hint: np.ndarray | None, out: np.ndarray) -> None:
        read.append(hint is not None)
        sorted_ends(ends, hint, out)

    monkeypatch.setattr(metrics, "_sorted_ends", spy)
    repeated = order.copy()
    repeated[-1] = repeated[0]
    for hinted in (order, order[:-1], repeated):
        rec.end_order = hinted
        assert (metrics._end_order(rec) is None) == (hinted is not order)
        read.clear()
        got = replication_summary(rec, p)
        assert any(read) == (hinted is order)
        rec.end_order = None
        want = replication_summary(rec, p)
        assert got.keys() == want.keys()
        for key, value in want.items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(got[key], value, err_msg=key)
            else:
                assert got[key] == value, key


@pytest.mark.parametrize("seed", range(4))
def test_ends_read_in_any_order_come_out_sorted(seed: int) -> None:
    """``_sorted_ends``: an order that only nearly sorts the ends, or not at
    all, still gives the ends sorted (it saves work, it decides nothing)."""
    rng = np.random.default_rng(seed)
    ends = rng.exponential(1.0, 3_000) + np.arange(3_000) * 0.01
    for order in (np.argsort(ends), rng.permutation(3_000), np.arange(3_000), None):
        out = np.empty(3_000)
        metrics._sorted_ends(ends, order, out)
        np.testing.assert_array_equal(out, np.sort(ends))


def test_one_part_read_in_a_given_order_is_the_same_to_the_bit() -> None:
    """A level of one part (read in place) whose ends come with an order that
    nearly sorts them: the same peak and mean as without it."""
    rng = np.random.default_rng(11)
    starts = np.cumsum(rng.exponential(0.01, 5_000))
    ends = starts + rng.exponential(0.3, 5_000)
    levels = {"in_flight": ([(starts, ends, 1.0)], 0.0)}
    t0, t1 = 5.0, float(starts[-1])
    plain = window_sweep(levels, t0, t1).stats
    for order in (np.argsort(ends), rng.permutation(5_000)):
        hinted = window_sweep(levels, t0, t1, orders={id(ends): order}).stats
        assert hinted == plain


def _peaks_by_definition(
    levels: dict[str, metrics.Parts], t0: float, t1: float
) -> dict[str, float]:
    """Each level's peak by its definition, one instant at a time: its value
    at t0, and after every event at each instant in (t0, t1) where one of its
    own intervals starts and lasts; the level there is its base plus each
    part's weight times the intervals open (begun by then, not yet ended)."""
    out = {}
    for key, (parts, base) in levels.items():
        kept = [(s[~np.isnan(s)], np.fmin(e[~np.isnan(s)], math.inf), w) for s, e, w in parts]

        def at(t: float, kept=kept, base=base) -> float:
            level = base
            for s, e, w in kept:
                level += w * float(np.count_nonzero(s <= t) - np.count_nonzero(e <= t))
            return level

        grows = {float(x) for s, e, _ in kept for x in s[(e > s) & (s > t0) & (s < t1)]}
        out[key] = max([at(t0), *(at(t) for t in sorted(grows))])
    return out


@pytest.mark.parametrize("seed", range(16))
def test_a_part_swept_in_runs_gives_each_level_its_peak_by_definition(seed: int) -> None:
    """The sweep takes the instants of a part whose starts come alone in a
    run, and sums a level it feeds once, at the run's highest (or, for a
    negative weight, lowest) count. Against the peaks by their definition,
    on one part of many intervals beside rare ones (a run as long as the
    rare parts and the grid allow), weights of both signs (whole numbers,
    so that every sum is exact) and a level that reads the same intervals
    twice with weights of opposite signs (no run can sum it at one count)."""
    rng = np.random.default_rng(700 + seed)
    n = int(rng.integers(200, 2_000))
    big_s = np.sort(np.round(rng.uniform(0, 100, n), 1))
    big = (big_s, big_s + np.round(rng.exponential(3.0, n), 1), 1.0)
    twin = (big[0].copy(), big[1].copy(), 1.0)  # the same intervals, another array
    rare = []
    for _ in range(3):
        m = int(rng.integers(1, 8))
        s = np.sort(np.round(rng.uniform(0, 100, m), 1))
        rare.append((s, s + np.round(rng.exponential(20.0, m), 1), 1.0))
    w = [float(x) for x in rng.choice([-2, -1, 1, 2, 3], 5)]
    levels = {
        "big": ([(big[0], big[1], w[0])], 0.0),
        "with_rare": ([(big[0], big[1], 2.0), (*rare[0][:2], w[1]), (*rare[1][:2], w[2])], 5.0),
        "negative": ([(big[0], big[1], -1.0), (*rare[2][:2], w[3])], 400.0),
        "both_signs": ([(big[0], big[1], 2.0), (twin[0], twin[1], -3.0)], 50.0),
        "rare_only": ([(*rare[1][:2], w[4])], 1.0),
    }
    t0, t1 = sorted(rng.uniform(-5, 105, 2))
    want = _peaks_by_definition(levels, t0, t1)
    grid = np.sort(rng.uniform(t0 - 10, t1, int(rng.integers(0, 40))))
    # The level of both signs swept apart: among the others it would keep
    # the big part out of runs for all of them.
    apart = {key: levels.pop(key) for key in ("both_signs",)}
    for sweep in (levels, apart):
        for g in (None, grid[grid < t1]):
            read = tuple(sweep)[:1] if g is not None else ()
            got = window_sweep(sweep, t0, t1, grid=g, read=read, compiled=True)
            assert {key: peak for key, (peak, _) in got.stats.items()} == {
                key: want[key] for key in sweep
            }
