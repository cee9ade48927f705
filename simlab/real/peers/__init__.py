"""Peers: production servers running the same ``/work``, each beside the model it resembles.

The notes tell the story of server concurrency through real systems; each is
a peer here, measured by the same load generator and probe as simlab's own
servers. ``REGISTRY`` holds them, one ``Peer`` each: the model and platform it
resembles, the Debian packages its runtime needs, and how to start it.

- Python: ``gunicorn-sync``, ``gunicorn-gthread``, ``uvicorn`` (``python.py``);
- first generation: ``nginx-php-fpm``, ``nginx-uwsgi`` (``nginx.py``),
  ``tomcat-nio`` (``jvm.py``);
- second generation: ``go`` (``go.py``), ``node`` (``node.py``), and the
  classic ``java-threads`` (``jvm.py``) to set beside them.

Every peer runs in a session of its own, as one process tree under the pid
the lab holds (what the probe measures), listens on 127.0.0.1 only, keeps
its configuration in a temporary prefix, and is stopped by process id.
``PEERS`` keeps its historical meaning, the Python peers (the ones the cpython
profile is calibrated with); ``ALL_PEERS`` names every peer.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any

from simlab.params import Architecture, Platform
from simlab.real.peers import go, jvm, nginx, node
from simlab.real.peers.build import MissingRuntime, PeerConfig, start_peer
from simlab.real.peers.python import PYTHON_PEERS, asgi_app, command, wsgi_app
from simlab.real.processes import Managed

__all__ = [
    "ALL_PEERS",
    "OWN_COSTS",
    "PEERS",
    "PLATFORM_OF",
    "REGISTRY",
    "RESEMBLES",
    "MissingRuntime",
    "Peer",
    "PeerConfig",
    "as_designed",
    "asgi_app",
    "command",
    "describe",
    "start",
    "with_own_costs",
    "wsgi_app",
]

CORES = os.cpu_count() or 1


@dataclass(frozen=True)
class Peer:
    """One peer. ``footprint(connections, workers, processes)`` estimates its
    (threads, processes), for the check that a run fits the machine;
    ``header_timeout`` says whether it hangs up on a begun request that stalls
    for ``--request-timeout``: nginx, Tomcat, Go and Node time a new
    connection's first request from accept, with the same clock, so theirs is
    an hour, lest the load generator's idle clients be cut."""

    name: str
    resembles: str
    platform: str
    summary: str
    packages: tuple[str, ...]
    start: Callable[[PeerConfig], Managed]
    versions: Callable[[str], dict[str, str]]
    footprint: Callable[[int, int, int], tuple[int, int]]
    header_timeout: bool = True
    # False: it closes every connection after its answer (no keep-alive), so
    # whatever the load generator asks, it holds no idle connection.
    keep_alive: bool = True
    # Knobs of the model it resembles that the peer's own design fixes (the
    # architecture it is simulated with): gthread reads a new connection's
    # first request on a worker thread, and its workers race for the
    # connections that open together.
    design: Mapping[str, Any] = field(default_factory=dict)


def _python_peer(name: str) -> Callable[[PeerConfig], Managed]:
    def start_python(cfg: PeerConfig) -> Managed:
        argv = command(
            name, port=cfg.port, workers=cfg.workers, processes=cfg.processes, backlog=cfg.backlog
        )
        env = {"SIMLAB_BACKEND_PORT": str(cfg.backend_port)}
        return start_peer(name, argv, port=cfg.port, env=env, preexec=cfg.preexec)

    return start_python


def _python_versions(name: str) -> dict[str, str]:
    server = "uvicorn" if name == "uvicorn" else "gunicorn"
    return {"python": sys.version.split()[0], server: metadata.version(server)}


_PEERS = (
    Peer(
        "gunicorn-sync",
        "iterative",
        "cpython",
        "gunicorn, P processes serving one request at a time, no keep-alive",
        (),
        _python_peer("gunicorn-sync"),
        _python_versions,
        lambda n, w, p: (p + 1, p + 1),
        header_timeout=False,
        keep_alive=False,
    ),
    Peer(
        "gunicorn-gthread",
        "reactor-pool",
        "cpython",
        "gunicorn, P processes, each a keep-alive poller and W threads",
        (),
        _python_peer("gunicorn-gthread"),
        _python_versions,
        lambda n, w, p: (p * (w + 2) + 1, p + 1),
        header_timeout=False,
        design={"first_read": "worker", "accept": "race"},
    ),
    Peer(
        "uvicorn",
        "async",
        "cpython",
        "uvicorn, P processes of one asyncio loop",
        (),
        _python_peer("uvicorn"),
        _python_versions,
        lambda n, w, p: (2 * p + 1, p + 1),
        header_timeout=False,
    ),
    Peer(
        "nginx-php-fpm",
        "two-tier",
        "php",
        "nginx, FastCGI to a static pool of P PHP-FPM children (W unused)",
        (*nginx.NGINX_PACKAGES, *nginx.PHP_PACKAGES),
        nginx.start_nginx_php_fpm,
        nginx.versions,
        lambda n, w, p: (CORES + p + 2, CORES + p + 2),
        header_timeout=False,
    ),
    Peer(
        "nginx-uwsgi",
        "two-tier",
        "cpython",
        "nginx, the uwsgi protocol to uWSGI with P processes x W threads",
        (*nginx.NGINX_PACKAGES, *nginx.UWSGI_PACKAGES),
        nginx.start_nginx_uwsgi,
        nginx.versions,
        lambda n, w, p: (CORES + 1 + p * (w + 1) + 1, CORES + p + 2),
        header_timeout=False,
    ),
    Peer(
        "tomcat-nio",
        "reactor-pool",
        "jvm",
        "embedded Tomcat 10, NIO connector, maxThreads = W, acceptCount = backlog",
        (*jvm.JDK_PACKAGES, *jvm.TOMCAT_PACKAGES),
        jvm.start_tomcat_nio,
        jvm.versions,
        lambda n, w, p: (w + 40, 1),
        header_timeout=False,
    ),
    Peer(
        "java-threads",
        "thread-per-connection",
        "jvm",
        "a Java ServerSocket and a platform thread per connection (-Xss: --stack-kib)",
        jvm.JDK_PACKAGES,
        jvm.start_java_threads,
        jvm.versions,
        lambda n, w, p: (n + 40, 1),
    ),
    Peer(
        "go",
        "thread-per-connection",
        "go",
        "Go net/http, a goroutine per connection, GOMAXPROCS = cores",
        go.GO_PACKAGES,
        go.start_go,
        go.versions,
        lambda n, w, p: (CORES + 16, 1),
        header_timeout=False,
    ),
    Peer(
        "node",
        "async",
        "node",
        "Node.js http, one event loop; P > 1: P cluster workers",
        node.NODE_PACKAGES,
        node.start_node,
        node.versions,
        lambda n, w, p: (11 * p + (11 if p > 1 else 0), p + (1 if p > 1 else 0)),
        header_timeout=False,
    ),
)

REGISTRY: dict[str, Peer] = {p.name: p for p in _PEERS}
ALL_PEERS = tuple(REGISTRY)
PEERS = PYTHON_PEERS
RESEMBLES = {p.name: p.resembles for p in _PEERS}
PLATFORM_OF = {p.name: p.platform for p in _PEERS}


def as_designed(name: str, arch: Architecture) -> Architecture:
    """``arch`` with the knobs peer ``name``'s own design fixes (unchanged for a model)."""
    peer = REGISTRY.get(name)
    if peer is None or not peer.design:
        return arch
    changed: Architecture = replace(arch, **peer.design)
    return changed


# The platform costs a peer's own code sets, which calibration may fit for
# it apart from the shared ones (``simlab.calibrate.fit_peer_loops``): an
# event loop's per-request and per-wake-up costs are its protocol code's; and
# a request's parse and dispatch, where the peer's own Python does them
# (``simlab.calibrate.fit_peer_requests``: gunicorn's workers).
OWN_COSTS = ("loop_event_us", "loop_wake_us", "parse_us", "dispatch_us")


def with_own_costs(name: str, platform: Platform, profile: Mapping[str, Any]) -> Platform:
    """``platform`` with the costs peer ``name``'s own code sets (``OWN_COSTS``),
    as calibration recorded them in ``profile``'s ``peers`` section (under
    ``costs``); unchanged for a model, or a peer the profile records none for.
    A peer that closes every connection itself after its answer waits for no
    client's close (``close_wait_us`` 0)."""
    peer = REGISTRY.get(name)
    if peer is not None and not peer.keep_alive:
        platform = platform.with_(close_wait_us=0.0)
    peers = profile.get("peers")
    entry = peers.get(name) if isinstance(peers, Mapping) else None
    costs = entry.get("costs") if isinstance(entry, Mapping) else None
    if not isinstance(costs, Mapping):
        return platform
    changes = {
        key: float(costs[key]["value"])
        for key in OWN_COSTS
        if isinstance(costs.get(key), Mapping) and costs[key].get("value") is not None
    }
    return platform.with_(**changes) if changes else platform


def start(name: str, cfg: PeerConfig) -> Managed:
    """Start the peer ``name`` and return it once it answers; MissingRuntime names the package."""
    try:
        peer = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown peer {name!r} (choose from: {', '.join(ALL_PEERS)})") from None
    return peer.start(cfg)


def describe() -> str:
    """One line per peer: what it is and what it resembles, for --help and the docs."""
    width = max(map(len, REGISTRY))
    return "\n".join(
        f"  {p.name:<{width}}  {p.resembles} on {p.platform}: {p.summary}" for p in _PEERS
    )
