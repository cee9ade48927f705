"""A test run stopped by SIGTERM or SIGINT ends, and leaves no server or load behind.

Each test runs a small pytest session of its own (tests/interrupts.py loaded,
as tests/conftest.py loads it for every run), signals it, and checks that the
session ended without starting its next test, and that what it had started
was stopped.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.procs import outlive
from tests.real.conftest import RUN_MODULES, measurement_processes

ROOT = Path(__file__).resolve().parents[2]
PYTEST = (sys.executable, "-m", "pytest", "-p", "tests.interrupts", "-p", "no:cacheprovider")


Start = Callable[[str], "subprocess.Popen[str]"]


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Start]:
    """Start pytest on a test module's ``body`` plus a last test that marks the run
    went on; a session a failed test left running is stopped at teardown, by pid,
    the way that stops its servers too (SIGTERM, then SIGKILL)."""
    started: list[subprocess.Popen[str]] = []

    def start(body: str) -> subprocess.Popen[str]:
        module = tmp_path / "test_inner.py"
        module.write_text(
            "import time\nfrom pathlib import Path\nHERE = Path(__file__).parent\n"
            + body
            + "\n\ndef test_zz_next():\n    (HERE / 'went_on').touch()\n"
        )
        proc = subprocess.Popen(
            [*PYTEST, "-q", "-s", str(module)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def wait_for(what: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    # ``what`` is asked once a round and its yes is kept: asking again after
    # the loop once turned a true condition about short-lived processes false.
    deadline = time.monotonic() + timeout
    while not what():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, f"never came within {timeout:g} s: {what}"
        time.sleep(0.05)


def ended(proc: subprocess.Popen[str], timeout: float) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"the run did not end within {timeout:g} s of the signal:\n{out}")
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_between_measurements_ends_the_run(
    tmp_path: Path, session: Start, sig: int
) -> None:
    proc = session("def test_waits():\n    (HERE / 'armed').touch()\n    time.sleep(30)\n")
    wait_for((tmp_path / "armed").exists, proc)
    proc.send_signal(sig)
    out = ended(proc, 10)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert not (tmp_path / "went_on").exists(), out


def test_a_second_signal_ends_a_test_that_took_the_first(tmp_path: Path, session: Start) -> None:
    # As simlab.cli.main does: the first interrupt is taken as the command's own
    # stop; this test then goes on, and only a second signal can end it early.
    # 'armed' is touched inside the try: the signal can come as soon as the file
    # exists, before touch() has returned (CI once caught it there, out of the try).
    body = (
        "def test_takes_it():\n"
        "    try:\n        (HERE / 'armed').touch()\n        time.sleep(30)\n"
        "    except KeyboardInterrupt:\n        (HERE / 'took').touch()\n"
        "    time.sleep(30)\n"
    )
    proc = session(body)
    wait_for((tmp_path / "armed").exists, proc)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    wait_for((tmp_path / "took").exists, proc, 10)
    proc.send_signal(signal.SIGTERM)
    out = ended(proc, 10)
    assert time.monotonic() - t0 < 15, "the second signal did not end the test"
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert not (tmp_path / "went_on").exists(), out


@pytest.mark.real  # simlab measure, in the session's own process: servers and load
@pytest.mark.timeout(120)
def test_sigterm_in_a_measurement_ends_the_run_and_stops_its_processes(
    tmp_path: Path, session: Start
) -> None:
    # simlab.cli.main takes the interrupt as its command's stop (exit 130);
    # the run must still end there, its backend, server and load stopped.
    body = (
        "from simlab.cli import main\n\n"
        "def test_measures():\n"
        "    argv = ['measure', 'async', '--connections', '20', '--rate', '20',\n"
        "            '--duration', '60', '--no-save']\n"
        "    (HERE / 'code').write_text(str(main(argv)))\n"
    )
    proc = session(body)
    tree: list[psutil.Process] = []

    def started() -> bool:
        nonlocal tree
        tree = measurement_processes(proc.pid)
        return len(tree) == len(RUN_MODULES)

    # Up to the machine-wide real-run lock's wait, if another run holds it.
    wait_for(started, proc, 90)
    time.sleep(0.5)  # into the load, past the start-up
    proc.send_signal(signal.SIGTERM)
    out = ended(proc, 60)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert (tmp_path / "code").read_text() == "130", out  # the command took it
    assert not (tmp_path / "went_on").exists(), out
    left = outlive(tree, 10)
    assert not left, left
