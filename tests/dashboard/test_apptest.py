"""Every dashboard page under Streamlit's AppTest: it renders, and its numbers move
as the models say."""

from __future__ import annotations

import gc
import json
import re
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from simlab import dashboard
from simlab.claims import ledger
from simlab.dashboard.pages import SERVER_TIME

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 120


def app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def goto(at: AppTest, page: str) -> AppTest:
    at.sidebar.radio(key="page").set_value(page).run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    for m in at.metric:
        if m.label == label:
            return str(m.value)
    raise AssertionError(f"no metric {label!r}: {[m.label for m in at.metric]}")


def frame(at: AppTest, column: str):  # type: ignore[no-untyped-def]
    """The first table on the page that has ``column`` (AppTest does not keep table keys)."""
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise AssertionError(f"no table with {column!r}")


def number(text: str) -> float:
    return float(text.replace(",", ""))


def test_explore_threads_follow_connections() -> None:
    at = app()
    tpc = number(metric(at, "thread-per-connection: threads"))
    async_ = number(metric(at, "async: threads"))
    assert tpc > 10_000 > async_ == 1
    at.sidebar.number_input(key="connections").set_value(50_000).run()
    assert not at.exception
    # More connections never lower thread-per-connection's threads; async stays flat.
    assert number(metric(at, "thread-per-connection: threads")) >= tpc + 40_000
    assert number(metric(at, "async: threads")) == async_
    assert not at.error, [e.value for e in at.error]


def server_account(at: AppTest) -> tuple[float, float, float]:
    """The Explore page's account of its script run: (whole, curves, run) in s."""
    line = next(c.value for c in at.caption if c.value.startswith(SERVER_TIME))
    found = re.findall(r"(\d+\.\d+) s", line)
    assert len(found) == 3, line
    whole, curves, run = (float(x) for x in found)
    return whole, curves, run


def test_explore_says_where_the_server_time_went() -> None:
    at = app()
    at.sidebar.number_input(key="rate").set_value(123.0).run()
    whole, curves, run = server_account(at)
    # The parts are inside the whole, and computing them took time.
    assert whole >= curves + run - 0.01 and curves > 0
    at.sidebar.number_input(key="rate").set_value(100.0).run()
    at.sidebar.number_input(key="rate").set_value(123.0).run()
    _, cached_curves, cached_run = server_account(at)
    # A scenario seen before is answered from the caches.
    assert cached_curves < curves and cached_run <= run


def charts(at: AppTest) -> dict[str, tuple[str, dict[str, bytes]]]:
    """The Explore page's Vega-Lite charts: each one's spec and datasets, in order."""
    out = {}
    for k, chart in enumerate(at.get("vega_lite_chart")):
        spec = json.loads(chart.proto.spec)
        out[f"{k}: {spec.get('title')}"] = (
            chart.proto.spec,
            {d.name: d.data.data for d in chart.proto.datasets},
        )
    return out


def test_the_server_freezes_what_lives_as_long_as_it() -> None:
    """After the first page, what the server holds for good (the libraries, the
    dashboard's own functions) sits in the collector's permanent generation,
    which Streamlit's collection after every script run does not scan; the
    formulas' late import is loaded before the page (simlab.dashboard)."""
    app()
    assert "scipy.optimize" in sys.modules
    assert gc.get_freeze_count() > 0
    assert not any(o is dashboard.main for o in gc.get_objects())


def test_explore_charts_change_only_their_data() -> None:
    """A control change keeps every chart's spec (so the browser swaps the data
    into the chart it has, instead of drawing a new one) and changes only the
    datasets that depend on that control."""
    at = app()
    before = charts(at)
    assert len(before) == 5
    for spec, data in before.values():
        assert "datasets" not in json.loads(spec) and data  # the data travel apart
    at.sidebar.number_input(key="rate").set_value(150.0).run()
    after = charts(at)
    assert list(after) == list(before)
    changed = set()
    for name, (spec, data) in after.items():
        assert spec == before[name][0], name
        changed |= {f"{name}/{d}" for d in data if data[d] != before[name][1][d]}
    # The rate moves the hockey stick's marker, the simulated run and resident
    # memory (the tasks in flight), not the threads nor the stick itself.
    assert sorted(changed) == [
        "1: Memory: resident (solid) and reserved (dashed)/curve",
        "2: p99 latency against load: the hockey stick (estimate)/yours",
        "3: Queueing delay (ms)/delay",
        "4: One run over time/levels",
    ]


def test_bad_combination_is_a_plain_message() -> None:
    at = app()
    at.sidebar.selectbox(key="cpu_dist").set_value("lognormal:1")
    at.sidebar.number_input(key="cpu_ms").set_value(0.0).run()
    assert not at.exception
    # A lognormal with mean 0 is rejected with a line that says what to change, or simply works.
    for e in at.error:
        assert "Change" in e.value


def test_overload_is_shown_as_overload() -> None:
    at = app()
    at.sidebar.number_input(key="rate").set_value(5000.0).run()  # 5 cores of CPU on 2
    assert not at.exception
    assert any("overloaded" in w.value for w in at.warning), [w.value for w in at.warning]


def test_compare_page_has_every_model_and_a_csv() -> None:
    at = goto(app(), "Compare")
    table = frame(at, "latency_p99_ms")
    assert set(table["model"]) == {
        "iterative",
        "process-per-connection",
        "thread-per-connection",
        "thread-pool",
        "reactor-pool",
        "async",
        "two-tier",
    }
    both = table.dropna(subset=["latency_p99_ci_lo", "latency_p99_ms"])
    assert (both["latency_p99_ci_lo"] <= both["latency_p99_ms"]).all()
    assert len(at.get("download_button")) == 1


def test_plan_page_recommends_and_answers_the_inverse_questions() -> None:
    at = goto(app(), "Plan")
    plans = frame(at, "why not")
    assert len(plans) == 7
    # The recommendation is the feasible plan with the least resident memory.
    feasible = plans[plans["feasible"]]
    least = feasible.loc[feasible["resident MiB"].idxmin(), "model"]
    assert any(f"Recommended: {least}" in h.value for h in at.subheader)
    assert len(frame(at, "thread-per-connection").columns) == 7
    rates = frame(at, "max_rate_rps")
    assert (rates["max_rate_rps"] > 0).any()


def test_plan_page_plans_across_platforms() -> None:
    at = goto(app(), "Plan")
    at.multiselect(key="plan_platforms").set_value(["cpython", "go"])
    at.button[0].click().run()  # the form's submit button
    assert not at.exception, at.exception
    ranked = frame(at, "cores busy")
    assert set(ranked["platform"]) == {"cpython", "go"}
    assert ranked["resident MiB"].is_monotonic_increasing  # the first table: by memory
    assert any(h.value.startswith("Winner: ") for h in at.subheader)


def test_reality_page_shows_the_profile_and_validation() -> None:
    at = goto(app(), "Reality check")
    params = frame(at, "parameter")
    assert "parse_us" in set(params["parameter"])
    goals = frame(at, "median error")
    assert "latency_p99" in set(goals["metric"])


@pytest.mark.parametrize("button", ["story_c10k", "story_ad-service", "story_journey"])
def test_story_presets_load_and_show_numbers(button: str) -> None:
    at = goto(app(), "The story")
    at.button(key=button).click().run()
    assert not at.exception, at.exception
    numbers = frame(at, "virtual_peak_mib")
    by = numbers.set_index("model")
    assert len(by) == 7
    assert by.loc["async", "threads_peak"] <= 2
    if button == "story_c10k":
        assert by.loc["thread-per-connection", "threads_peak"] > 10_000
    if button == "story_journey":
        # Why the steps tie is the ledger's computed reason, not a typed sentence.
        (row,) = ledger(only=["python-journey"])
        assert any(c.value == f"Measured ({row.verdict}): {row.reason}." for c in at.caption)


def test_experiments_page_renders() -> None:
    at = goto(app(), "Experiments")
    assert not at.exception


def test_one_scenario_shows_the_same_numbers_on_every_page() -> None:
    """On the default scenario, a model's threads and resident memory agree
    between Explore, Compare and The story: the simulated ones are the same
    run, and Explore's steady-state estimate (labelled as such) agrees with
    it where nothing is first touched during the run."""
    at = app()
    explore_threads = number(metric(at, "async: threads"))
    explore_mib = {m.label: number(str(m.value)) for m in at.metric if m.label == "resident MiB"}
    assert explore_mib, "Explore shows no resident memory"
    goto(at, "Compare")
    compare = frame(at, "memory_peak_mib").set_index("model")
    goto(at, "The story")
    story = frame(at, "memory_peak_mib").set_index("model")
    for model in ("async", "thread-per-connection", "reactor-pool"):
        assert compare.loc[model, "threads_peak"] == story.loc[model, "threads_peak"], model
        assert compare.loc[model, "memory_peak_mib"] == story.loc[model, "memory_peak_mib"], model
    assert compare.loc["async", "threads_peak"] == explore_threads
    # Rounded for reading: whole MiB from 100 up, one decimal from 1.
    for value in compare["memory_peak_mib"]:
        assert value == round(value, 1)


def test_overload_page_plots_the_timeline_and_refuses_a_bad_schedule() -> None:
    at = goto(app(), "Overload")
    assert at.get("plotly_chart"), "no timeline chart"
    assert "recovered" in " ".join(m.value for m in at.markdown)
    # A schedule that is not one: a plain line naming what is wrong, no traceback.
    at.text_input(key="ov_schedule").set_value("100/s for ten seconds").run()
    assert not at.exception and at.error and "segment 1" in at.error[0].value


def test_simulated_model_follows_the_scenario_until_picked() -> None:
    """Short connections put the default's model on the DES: the run moves to the
    first model that keeps up on the fast engine, until the user picks one."""
    at = app()
    first = at.selectbox(key="focus").value
    at.sidebar.number_input(key="rpc").set_value(5).run()
    follows = at.selectbox(key="focus").value
    assert follows != first
    assert any(f"**{follows}** (fast engine" in m.value for m in at.markdown)
    at.selectbox(key="focus").set_value(first).run()
    at.sidebar.number_input(key="rpc").set_value(4).run()
    assert at.selectbox(key="focus").value == first  # picked: it stays
    assert any(f"**{first}** (des engine" in m.value for m in at.markdown)
