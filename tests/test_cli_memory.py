"""Which commands tune glibc's allocator (``simlab.cli.keep_freed_memory``)."""

from __future__ import annotations

import pytest

import simlab.cli as cli


@pytest.mark.parametrize(
    ("command", "tuned"),
    [("simulate", True), ("compare", True), ("plan", True), ("sweep", True),
     ("serve", False), ("measure", False), ("calibrate", False), ("validate", False)],
)  # fmt: skip
def test_only_simulating_commandskeep_freed_memory(monkeypatch, command, tuned) -> None:
    """The simulating commands keep the memory they free; the real lab's
    servers and measurements keep glibc's defaults, so that what calibration
    measures of a server's memory is what a server shows anywhere."""
    calls: list[str] = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(command))
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    assert calls == ([command] if tuned else [])


def test_keeping_freed_memory_runs_here() -> None:
    # glibc's mallopt is found and called, or, off glibc, nothing is done: no error.
    cli.keep_freed_memory()
