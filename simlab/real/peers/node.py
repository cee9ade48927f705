"""The Node.js peer: ``http`` callbacks on one event loop per process.

It resembles ``async`` on the ``node`` platform: one thread runs every
connection's callbacks; the backend is one multiplexed connection per
process. ``--processes N`` forks N workers with the ``cluster`` module (the
primary accepts and deals connections round-robin, Node's default on Linux);
``--workers`` has no role, nor ``--request-timeout`` (Node times a new
connection's first request from accept, which would cut the load generator's
idle clients, so its header timeout is an hour). Its source is
``node/server.js``; the memory units' program is ``node/memunits.js``.
Nothing is built: the sources run as they are.
"""

from __future__ import annotations

from pathlib import Path

from simlab.real.peers.build import PeerConfig, find_program, start_peer, version_line
from simlab.real.processes import Managed

__all__ = ["node_argv", "start_node", "versions"]

NODE_DIR = Path(__file__).parent / "node"
NODE_PACKAGES = ("nodejs",)


def _node(peer: str) -> str:
    return find_program(("node", "nodejs"), peer=peer, packages=NODE_PACKAGES)


def node_argv(script: str, *args: str, peer: str = "node") -> list[str]:
    return [_node(peer), str(NODE_DIR / script), *args]


def start_node(cfg: PeerConfig) -> Managed:
    argv = node_argv(
        "server.js",
        str(cfg.port),
        str(cfg.processes),
        str(4096 if cfg.backlog is None else max(1, cfg.backlog)),
    )
    env = {"SIMLAB_BACKEND_PORT": str(cfg.backend_port)}
    return start_peer("node", argv, port=cfg.port, env=env, preexec=cfg.preexec)


def versions(peer: str) -> dict[str, str]:
    return {"node": version_line([_node(peer), "--version"])}
