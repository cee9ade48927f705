"""SIGTERM and SIGINT end a test run, cleanly (a pytest plugin; tests/conftest.py loads it).

Left alone, SIGTERM kills pytest at once: the servers, backend and load
generator a real test started run in their own sessions (so that they can be
stopped as a group) and would outlive it, still listening. And SIGINT turns
into a KeyboardInterrupt that simlab's measuring code may take as its own
stop (``simlab.cli.main`` answers it with exit status 130, an experiment's
script stops cleanly and exits non-zero): the test fails and pytest goes on
to the next one, which starts servers again.

Here the first signal raises KeyboardInterrupt, as Ctrl-C does, so that
every ``with`` block and fixture on the way out stops what it started, by
pid; and the run stops after the current test whatever that test made of the
exception. A second signal raises it again, for code that took the first.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import pytest

SIGNALS = (signal.SIGTERM, signal.SIGINT)
NAME = "simlab-stop-on-signal"


class StopOnSignal:
    def __init__(self) -> None:
        self.received: list[str] = []
        self.previous: dict[int, Any] = {}
        self.session: pytest.Session | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signal.Signals(signum).name)
        self._stop_after_this_test()
        raise KeyboardInterrupt(f"{self.received[-1]} (signal {len(self.received)})")

    def _stop_after_this_test(self) -> None:
        if self.session is not None and not self.session.shouldstop:
            self.session.shouldstop = f"stopped by {self.received[0]}"

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session
        # Handlers can only be set from the main thread (not, say, in a thread
        # an embedding program runs pytest in): there the defaults stay.
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in SIGNALS:
            self.previous[sig] = signal.signal(sig, self._handle)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logfinish(self) -> None:
        # A test that took the KeyboardInterrupt (and failed, or even passed)
        # still ends the run: pytest checks shouldstop after each test.
        if self.received:
            self._stop_after_this_test()

    def pytest_unconfigure(self) -> None:
        for sig, previous in self.previous.items():
            signal.signal(sig, previous)
        self.previous.clear()


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(NAME):
        config.pluginmanager.register(StopOnSignal(), NAME)
