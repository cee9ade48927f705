"""Take the dashboard picture in ``docs/images/dashboard.png`` (the README and the docs show it).

    .venv/bin/python docs/screenshot.py [--out docs/images/dashboard.png]

It runs ``streamlit run app.py`` on a free loopback port, opens the Explore
page in headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
which ``make test`` installs as root), waits until the default scenario has
been computed, saves the page, and stops the browser and the server by
their process ids; the port is checked to be free again. The image is
reduced to a palette so that it stays small in the repository.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from simlab.real.processes import Managed, free_port, port_is_free, wait_listening

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 1400, 1300
COLOURS = 128


def _ready(driver: webdriver.Chrome) -> bool:
    """The Explore page has its numbers and charts, and Streamlit is no longer running."""
    metrics = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stMetric"]')
    charts = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stVegaLiteChart"] canvas')
    status = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
    running = any("Running" in el.text for el in status)
    return len(metrics) > 0 and len(charts) >= 3 and not running


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "dashboard.png")
    args = parser.parse_args()
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        sys.stderr.write("needs chromium and chromedriver: apt-get install chromium-driver\n")
        return 2

    port = free_port()
    argv = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py")]
    argv += ["--server.address", "127.0.0.1", "--server.port", str(port)]
    argv += ["--server.headless", "true", "--browser.gatherUsageStats", "false"]
    server = Managed(
        argv,
        ready_line=False,
        name="streamlit",
    )
    try:
        wait_listening(port, server.proc, timeout=60)
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"):
            options.add_argument(flag)
        options.add_argument("--disable-dev-shm-usage")
        options.add_argument(f"--window-size={WIDTH},{HEIGHT}")
        driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
        try:
            driver.get(f"http://127.0.0.1:{port}")
            WebDriverWait(driver, 180, poll_frequency=0.5).until(_ready)
            time.sleep(2)  # let the charts finish their entry animation
            args.out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(args.out))
        finally:
            driver.quit()
    finally:
        server.stop()
    if not port_is_free(port):
        sys.stderr.write(f"port {port} is still in use after the dashboard stopped\n")
        return 1
    image = Image.open(args.out).convert("RGB").quantize(colors=COLOURS)
    image.save(args.out, optimize=True)
    print(f"{args.out}: {args.out.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
