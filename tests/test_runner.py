"""The real server's runner, without serving: what a pre-forked master does before it forks."""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import pytest

import simlab.real
from simlab.real import runner
from simlab.registry import entry


class _ForkCalledError(Exception):
    pass


@pytest.mark.parametrize("model", ["thread-pool", "async"])
def test_a_pre_forked_master_imports_its_server_before_it_forks(
    model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The model's copies are forks of one master (fork_kib each): the real
    # copies must start with the server imported, not import it each.
    module = entry(model).server
    name = f"simlab.real.{module}"
    monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.delattr(simlab.real, module, raising=False)
    imported: list[bool] = []

    def fork() -> int:
        imported.append(name in sys.modules)
        raise _ForkCalledError

    opened: list[socket.socket] = []
    listener = runner._listener

    def kept(*args: Any, **kwargs: Any) -> socket.socket:
        opened.append(listener(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(os, "fork", fork)
    monkeypatch.setattr(runner, "_listener", kept)
    with pytest.raises(_ForkCalledError):
        runner.main([model, "--backend-port", "1", "--processes", "2", "--port", "0"])
    assert imported == [True]
    # A fork that failed lets the port go: the master's socket is closed.
    assert len(opened) == 1 and opened[0].fileno() == -1
