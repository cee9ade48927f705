"""The real server's runner, without serving: what a pre-forked master does before it forks."""

from __future__ import annotations

import os
import socket
import sys

import pytest

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
    name = f"simlab.real.{entry(model).server}"
    monkeypatch.delitem(sys.modules, name, raising=False)
    imported: list[bool] = []

    def fork() -> int:
        imported.append(name in sys.modules)
        raise _ForkCalledError

    monkeypatch.setattr(os, "fork", fork)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [model, "--backend-port", "1", "--processes", "2", "--port", str(port)]
    with pytest.raises(_ForkCalledError):
        runner.main(argv)
    assert imported == [True]
    # A fork that failed lets the port go (bound again here without
    # SO_REUSEADDR; the warnings filter turns a leaked socket into an error).
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))
