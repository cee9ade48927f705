"""The Go peer: ``net/http``, a goroutine per connection on GOMAXPROCS = cores threads.

It resembles ``thread-per-connection`` on the ``go`` platform: every
connection, idle or not, has its own goroutine blocked in a read, and the
runtime multiplexes them onto as many OS threads as there are cores (more
while goroutines sit in blocking system calls). ``--workers`` has no role;
``--processes`` must be 1; ``--request-timeout`` does not apply (net/http
times a new connection's first request from accept, which would cut the load
generator's idle clients, so its header timeout is an hour). Its source is
``go/server/main.go``; the memory units' program is ``go/memunits/main.go``.
Both are built with ``go build`` (standard library only, no network:
``GOPROXY=off``) on first use and cached.
"""

from __future__ import annotations

import os
from pathlib import Path

from simlab.real.peers.build import (
    CACHE,
    PeerConfig,
    cached_build,
    find_program,
    run_build,
    start_peer,
    version_line,
)
from simlab.real.processes import Managed

__all__ = ["binary", "start_go", "versions"]

GO_DIR = Path(__file__).parent / "go"
GO_PACKAGES = ("golang-go",)
PROGRAMS = ("server", "memunits")


def _go(peer: str) -> str:
    return find_program(("go",), peer=peer, packages=GO_PACKAGES)


def binary(program: str, peer: str = "go") -> Path:
    """The built ``go/<program>/main.go`` (``server`` or ``memunits``)."""
    go = _go(peer)
    sources = [GO_DIR / p / "main.go" for p in PROGRAMS]
    env = {
        "GOPROXY": "off",
        "GOFLAGS": "",
        "GO111MODULE": "off",  # one file, the standard library: no module needed
        "GOCACHE": str(CACHE / "go-build"),  # shared, and safe for concurrent builds
        "GOPATH": str(CACHE / "gopath"),
        "CGO_ENABLED": "0",
    }

    def build(out: Path) -> None:
        for p in PROGRAMS:
            run_build(
                [go, "build", "-o", str(out / p), str(GO_DIR / p / "main.go")], cwd=out, env=env
            )

    return cached_build("go", sources, version_line([go, "version"]), build) / program


def start_go(cfg: PeerConfig) -> Managed:
    if cfg.processes != 1:
        raise ValueError("processes: go runs in one process; --processes must be 1")
    argv = [
        str(binary("server")),
        "-port",
        str(cfg.port),
        "-backlog",
        str(4096 if cfg.backlog is None else max(1, cfg.backlog)),
    ]
    env = {
        "SIMLAB_BACKEND_PORT": str(cfg.backend_port),
        "GOMAXPROCS": str(os.cpu_count() or 1),
    }
    return start_peer("go", argv, port=cfg.port, env=env, preexec=cfg.preexec)


def versions(peer: str) -> dict[str, str]:
    return {"go": version_line([_go(peer), "version"])}
