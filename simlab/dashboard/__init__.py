"""The Streamlit dashboard: explore, compare, plan and check against reality.

``app.py`` at the repository root only calls ``main()``; ``simlab dashboard``
and ``make run`` start it with ``streamlit run``. Pages live in ``pages``
and ``story``, the numbers in ``compute`` (no Streamlit there).
"""

from __future__ import annotations

import gc
import importlib
import time

import streamlit as st

from simlab.dashboard.controls import scenario_controls
from simlab.dashboard.overload import overload_page
from simlab.dashboard.pages import compare_page, experiments_page, explore_page, plan_page
from simlab.dashboard.story import reality_page, story_page
from simlab.errors import UserError

__all__ = ["PAGES", "main"]

# Imported on first use by the formulas (``theory.mmc_sojourn_quantile``'s root
# finder): 0.7-1 s on this machine, which the first control change that needs
# an exact M/M/c tail would wait for. Loaded once per server, before the first
# page is drawn: loaded after it (as it was), the import ran on in the same
# script run after the page looked finished, and a change made in that second
# waited for it. (Not in a thread beside the page: two threads importing
# scipy's modules at once can deadlock on their import locks.)
LATE_IMPORTS = ("scipy.optimize",)

PAGES = ("Explore", "Compare", "Plan", "Overload", "Reality check", "The story", "Experiments")


@st.cache_resource(show_spinner=False)
def _preload() -> tuple[str, ...]:
    """Import ``LATE_IMPORTS`` (once per server)."""
    for name in LATE_IMPORTS:
        importlib.import_module(name)
    return LATE_IMPORTS


@st.cache_resource(show_spinner=False)
def _freeze() -> int:
    """Move every object alive after the first page into the collector's permanent
    generation (once per server); returns how many.

    Streamlit runs a full collection after every script run
    (``runner.postScriptGC``), holding the GIL while the answer's last messages
    wait to be sent: about 0.08 s of every control change on this machine,
    spent scanning the ~150,000 objects of numpy, pandas, scipy, numba and
    Streamlit, which live as long as the server. Frozen (after a collection, so
    that no garbage is kept), they are not scanned again; what later runs
    allocate still is, and objects freed by their reference counts are freed
    as before."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def main() -> None:
    started = time.perf_counter()
    st.set_page_config(page_title="simlab", layout="wide")
    _preload()
    _page(started)
    _freeze()


def _page(started: float) -> None:
    st.sidebar.title("simlab")
    st.sidebar.caption("Thread per connection, a pool behind a loop, or async all the way?")
    page = st.sidebar.radio("Page", PAGES, key="page")
    scenario, models = scenario_controls()
    if page == "Experiments":
        experiments_page()
        return
    if scenario is None:
        return  # the controls said what to change
    if not models and page in ("Explore", "Compare"):
        st.info("Choose at least one model in the sidebar.")
        return
    try:
        if page == "Explore":
            explore_page(scenario, models, started)
        elif page == "Compare":
            compare_page(scenario, models)
        elif page == "Plan":
            plan_page(scenario)
        elif page == "Overload":
            overload_page(scenario, models)
        elif page == "Reality check":
            reality_page(scenario)
        else:
            story_page(scenario)
    except UserError as exc:
        # A combination the models reject (say, more loops than a limit allows):
        # a plain line, never a traceback.
        st.error(f"simlab cannot compute this: {exc}. Change the control it names.")
