"""The dashboard in a real browser: ``streamlit run app.py`` on loopback, headless Chromium.

The test starts the server itself (and stops it by its process id), opens
every page, waits for its charts and numbers, saves a screenshot of each
under the test's temporary directory, and checks that changing a control
updates the page. Chromium and chromedriver come from Debian (``make test``
installs them as root); without them the test fails and says how to get them.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from simlab.real.processes import Managed, free_port, port_is_free, wait_listening

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
PAGES = ("Explore", "Compare", "Plan", "Reality check", "The story", "Experiments")
# Text each page shows only once it has finished: Streamlit keeps the previous
# page's elements on screen while the new one runs, so the heading alone is not enough.
MARKERS = {
    "Compare": "Download CSV",
    "Plan": "Recommended:",
    "Reality check": "Measure it here",
    "The story": "Simulated with the sidebar",
    "Experiments": "generated from its own data",
}
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1600,1400",
)


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail(
            "the browser test needs Chromium and ChromeDriver: "
            "sudo apt-get install chromium chromium-driver (make test does it as root)"
        )
    return chromium, driver


@pytest.fixture
def dashboard():  # type: ignore[no-untyped-def]
    port = free_port()
    server = Managed(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "app.py"),
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ],
        ready_line=False,
        name="streamlit",
    )
    try:
        wait_listening(port, server.proc, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
    assert port_is_free(port)


@pytest.fixture
def browser(tmp_path):  # type: ignore[no-untyped-def]
    chromium, driver_path = _browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, condition, timeout: float = 90.0, what: str = "the page"):  # type: ignore[no-untyped-def]
    # Streamlit replaces elements as it reruns: a condition that read one as it
    # went is asked again at the next poll, not failed.
    return WebDriverWait(
        driver, timeout, poll_frequency=0.25, ignored_exceptions=(StaleElementReferenceException,)
    ).until(condition, message=f"timed out waiting for {what}")


# Streamlit's "Running..." indicator: since 1.4x an icon whose aria-label says
# it, with no text (a check of the widget's text alone never saw a run).
RUNNING_ICON = '[data-testid="stStatusWidgetRunningIcon"]'


def _idle(driver) -> bool:  # type: ignore[no-untyped-def]
    """Streamlit has finished running the script (no 'Running...' indicator)."""
    if driver.find_elements(By.CSS_SELECTOR, RUNNING_ICON):
        return False
    running = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
    try:
        return not any("Running" in el.text for el in running)
    except StaleElementReferenceException:
        # The indicator changed between finding it and reading it: the page is
        # still moving, so not idle yet; the wait polls again.
        return False


def _metrics(driver) -> dict[str, str]:  # type: ignore[no-untyped-def]
    out = {}
    for el in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stMetric"]'):
        label = el.find_element(By.CSS_SELECTOR, '[data-testid="stMetricLabel"]').text
        value = el.find_element(By.CSS_SELECTOR, '[data-testid="stMetricValue"]').text
        out[label] = value
    return out


def _heading(driver) -> str:  # type: ignore[no-untyped-def]
    """The page's header (st.header renders an h2 in the main area)."""
    main = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stMain"] h2')
    return main[0].text.strip() if main else ""


# The Explore page's charts (Vega-Lite, drawn on canvases), by key.
EXPLORE_CHARTS = ("threads_chart", "memory_chart", "hockey_chart", "delay_chart", "levels_chart")
CHART = '[data-testid="stVegaLiteChart"] canvas'

# The Explore page's controls changed one by one (and back), each timed from the
# change to the end of the script run that answers it: (label, kind, new value).
CONTROLS = (
    ("Fan-out", "radio", "parallel"),
    ("CPU distribution", "select", "exp"),
    ("Arrival rate (req/s)", "number", "150"),
    ("CPU per request (ms)", "number", "2"),
    ("Backend call latency (ms)", "number", "80"),
    ("Backend calls per request", "number", "2"),
    ("Requests per connection (0 = persistent)", "number", "5"),
    ("Cores (0 = unlimited)", "number", "4"),
    ("Workers per process", "number", "64"),
    ("Processes", "number", "2"),
)
# Where the timings go besides the test's output: benchmarks/bench_whole.py sets
# it and puts them in docs/benchmarks.md (a report, never an assertion).
TIMINGS_ENV = "SIMLAB_DASHBOARD_TIMINGS"
# The Explore page ends with what it was computed for, after its account of
# the server's share of the answer (simlab.dashboard.pages.SERVER_TIME).
COMPUTED_FOR = "Computed for: "
SERVER_TIME = "Answered on the server in "
# Issue 16's goal for a control change, reported per control, never asserted.
GOAL_S = 0.5


def _server_seconds(line: str) -> float:
    """The server's time for the script run, from the page's own account."""
    assert line.startswith(SERVER_TIME), line
    return float(line[len(SERVER_TIME) :].split(" s", 1)[0])


def _change(driver, label: str, kind: str, value: str) -> tuple[str, Callable[[], None]]:  # type: ignore[no-untyped-def]
    """Make a sidebar control ready to change; returns the value it had and the
    action that commits the change (the key press or click a user would time
    from: typing the digits, finding the widget, opening a list come first)."""
    side = driver.find_element(By.CSS_SELECTOR, '[data-testid="stSidebar"]')
    if kind == "number":
        box = side.find_element(By.CSS_SELECTOR, f'input[aria-label="{label}"]')
        old = box.get_attribute("value") or ""
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(value)
        return old, lambda: box.send_keys(Keys.ENTER)
    testid = "stRadio" if kind == "radio" else "stSelectbox"
    widget = side.find_element(
        By.XPATH, f'.//div[@data-testid="{testid}"][.//*[normalize-space(text())="{label}"]]'
    )
    if kind == "radio":
        checked = widget.find_element(By.CSS_SELECTOR, "input:checked")
        old = checked.find_element(By.XPATH, "./ancestor::label").text.strip()
        choice = widget.find_element(By.XPATH, f'.//label[normalize-space(.)="{value}"]')
        return old, choice.click
    # A combo box: its input holds the choice, its button opens the list.
    old = widget.find_element(By.CSS_SELECTOR, 'input[role="combobox"]').get_attribute("value")
    widget.find_element(By.CSS_SELECTOR, 'button[aria-haspopup="listbox"]').click()
    option = f'//*[@role="option"][normalize-space(.)="{value}"]'
    _wait(driver, lambda d: d.find_elements(By.XPATH, option), timeout=10, what=f"{label}'s list")
    return old or "", driver.find_element(By.XPATH, option).click


# The wait for an answer runs in the page, one round trip a change: it checks
# the page at each change of its DOM (and every 0.1 s besides) and returns
# the moment the answer is there. Polled from here instead (every 0.02 s, one
# WebDriver round trip a poll), the polls took the renderer's main thread
# for about 0.1 s of every change (Chromium's own Performance metrics:
# DevToolsCommandDuration 1.4 s over 12 changes), time the page then could
# not spend on the answer being timed. It reads text with textContent, which
# (unlike innerText) does not make the page lay itself out at every check.
_TEXTS_JS = """
function texts(computedPrefix, serverPrefix) {
  const caps = Array.from(document.querySelectorAll('[data-testid="stCaptionContainer"]'))
    .map(e => e.textContent);
  const status = Array.from(document.querySelectorAll('[data-testid="stStatusWidget"]'))
    .map(e => e.textContent).join(' ');
  const icon = document.querySelector('[data-testid="stStatusWidgetRunningIcon"]') !== null;
  return [caps.find(t => t.startsWith(computedPrefix)) || '',
          caps.find(t => t.startsWith(serverPrefix)) || '', icon || status.includes('Running')];
}
"""
_BEFORE_JS = _TEXTS_JS + "return texts(arguments[0], arguments[1])[0];"
_ANSWER_JS = (
    _TEXTS_JS
    + """
const [computedPrefix, serverPrefix, before, done] = arguments;
let finished = false;
function check() {
  if (finished) return;
  const [computed, server, running] = texts(computedPrefix, serverPrefix);
  if (computed === '' || computed === before || running) return;
  finished = true;
  observer.disconnect();
  clearInterval(timer);
  done([computed, server]);
}
const observer = new MutationObserver(check);
observer.observe(document.body, {subtree: true, childList: true, characterData: true});
const timer = setInterval(check, 100);
check();
"""
)


def _answered_in(driver, label: str, kind: str, value: str) -> tuple[float, str, str]:  # type: ignore[no-untyped-def]
    """Change a control and time, from the action that commits it, until the
    page says that what it was computed for is the new scenario and the run
    has finished; returns (seconds, the page's account of the server's
    share, old value)."""
    before = str(driver.execute_script(_BEFORE_JS, COMPUTED_FOR, SERVER_TIME))
    old, commit = _change(driver, label, kind, value)
    driver.set_script_timeout(240)
    started = time.monotonic()
    commit()
    computed, server = driver.execute_async_script(_ANSWER_JS, COMPUTED_FOR, SERVER_TIME, before)
    seconds = time.monotonic() - started
    assert computed.startswith(COMPUTED_FOR) and computed != before, (label, value, computed)
    _no_traceback(driver)
    return seconds, str(server), old


def _verdict(seconds: float, back: float) -> str:
    return "meets" if max(seconds, back) <= GOAL_S else "misses"


def _time_controls(driver) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """Each control changed and set back, both timed, with the server's share."""
    out: list[dict[str, object]] = []
    for label, kind, value in CONTROLS:
        seconds, account, old = _answered_in(driver, label, kind, value)
        back, back_account, _ = _answered_in(driver, label, kind, old)
        server, back_server = _server_seconds(account), _server_seconds(back_account)
        verdict = _verdict(seconds, back)
        out.append({
            "control": label, "to": value, "s": seconds, "server_s": server,
            "back_to": old, "back_s": back, "back_server_s": back_server,
            "goal_s": GOAL_S, "verdict": verdict, "server": account,
            "back_server": back_account,
        })  # fmt: skip
        print(
            f"Explore: {label} -> {value} in {seconds:.2f} s (server {server:.2f} s), "
            f"back to {old} in {back:.2f} s (server {back_server:.2f} s): "
            f"{verdict} the {GOAL_S} s goal"
        )
    met = [str(t["control"]) for t in out if t["verdict"] == "meets"]
    print(f"Explore: {len(met)} of {len(out)} controls meet {GOAL_S} s: {', '.join(met) or 'none'}")
    path = os.environ.get(TIMINGS_ENV)
    if path:
        Path(path).write_text(json.dumps(out, indent=2) + "\n")
    return out


def _no_traceback(driver) -> None:  # type: ignore[no-untyped-def]
    errors = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    assert not errors, errors[0].text


def test_every_page_renders_and_controls_update(dashboard, browser, tmp_path) -> None:  # type: ignore[no-untyped-def]
    browser.get(dashboard)
    _wait(browser, lambda d: "thread-per-connection: threads" in _metrics(d), what="metrics")
    _wait(
        browser,
        lambda d: len(d.find_elements(By.CSS_SELECTOR, CHART)) >= len(EXPLORE_CHARTS),
        what="charts",
    )
    _wait(browser, _idle, what="the first run")
    before = _metrics(browser)
    tpc = float(before["thread-per-connection: threads"].replace(",", ""))
    assert tpc > 10_000 and before["async: threads"] == "1"
    browser.save_screenshot(str(tmp_path / "explore.png"))

    # Change a control: 10,000 -> 40,000 connections, the first change after
    # the page loaded, timed as every control below is.
    first, account, _ = _answered_in(browser, "Connections", "number", "40000")
    threads = float(_metrics(browser)["thread-per-connection: threads"].replace(",", ""))
    assert threads > tpc + 29_000
    print(
        f"the first change after the page loaded (Connections -> 40000) was answered in "
        f"{first:.2f} s (server {_server_seconds(account):.2f} s)"
    )
    assert _metrics(browser)["async: threads"] == "1"
    _no_traceback(browser)
    # How long each control change takes to be answered: reported, not asserted
    # (a timing depends on the machine); every control does get its answer.
    # Tagged before the changes: a chart that the browser built anew (as it
    # built every changed Plotly chart) would come back without its tag.
    tag = "arguments[0].forEach((c, i) => { c.dataset.simlabTag = 'chart' + i; })"
    browser.execute_script(tag, browser.find_elements(By.CSS_SELECTOR, CHART))
    timings = _time_controls(browser)
    assert len(timings) == len(CONTROLS)
    charts = browser.find_elements(By.CSS_SELECTOR, CHART)
    kept = [c.get_attribute("data-simlab-tag") for c in charts]
    assert kept == [f"chart{i}" for i in range(len(EXPLORE_CHARTS))], kept

    for page in PAGES[1:]:
        label = browser.find_element(
            By.XPATH, f'//section[@data-testid="stSidebar"]//label[.//p[text()="{page}"]]'
        )
        label.click()
        _wait(browser, lambda d, p=page: _heading(d) == p, what=f"the {page} page")
        _wait(
            browser,
            lambda d, p=page: (
                MARKERS[p] in d.find_element(By.TAG_NAME, "body").text and _heading(d) == p
            ),
            timeout=240,
            what=f"{page} to finish",
        )
        _wait(browser, _idle, timeout=240, what=f"{page} to finish running")
        _no_traceback(browser)
        if page in ("Compare", "Plan", "Reality check", "The story"):
            # Tables are drawn on canvases: wait for them to be there.
            _wait(
                browser,
                lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrame"]'),
                timeout=240,
                what=f"the tables of {page}",
            )
        browser.save_screenshot(str(tmp_path / f"{page.lower().replace(' ', '_')}.png"))
    shots = sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(shots) == len(PAGES), shots
