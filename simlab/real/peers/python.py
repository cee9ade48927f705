"""The Python peers: the same ``/work`` as a WSGI app (gunicorn, uWSGI) and an ASGI app (uvicorn).

They let the lab measure production servers under the same load and set
each beside the model it resembles:

- ``gunicorn-sync``: P processes, one request at a time each, no keep-alive;
  resembles ``iterative`` with P processes and one request per connection:
  each process's one thread accepts (only while it is free, so the P share
  one listen queue) and serves the connection itself.
- ``gunicorn-gthread``: P processes, each a poller for keep-alive connections
  plus W threads; resembles ``reactor-pool``.
- ``uvicorn``: P processes, one asyncio loop each; resembles ``async``.

The WSGI app also runs behind nginx in uWSGI (``nginx.py``).

The backend's port comes from ``SIMLAB_BACKEND_PORT``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from simlab.real.protocol import BadRequest, parse_work
from simlab.real.work import AsyncBackend, BlockingBackend, burn_cpu, run_blocking

__all__ = ["PYTHON_PEERS", "asgi_app", "command", "wsgi_app"]

PYTHON_PEERS = ("gunicorn-sync", "gunicorn-gthread", "uvicorn")


class _Backends:
    """One backend client per worker process, made on first use (after the fork)."""

    blocking: BlockingBackend | None = None
    aio: AsyncBackend | None = None

    @staticmethod
    def port() -> int:
        return int(os.environ["SIMLAB_BACKEND_PORT"])


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if _Backends.blocking is None:
        _Backends.blocking = BlockingBackend(_Backends.port())
    target = environ.get("PATH_INFO", "") + "?" + environ.get("QUERY_STRING", "")
    try:
        if environ.get("REQUEST_METHOD") != "GET":
            raise BadRequest(405, "only GET is served")
        request = parse_work(target)
    except BadRequest as exc:
        body = f"{exc.reason}\n".encode()
        start_response(f"{exc.status} Error", [("content-length", str(len(body)))])
        return [body]
    service_us = run_blocking(request, _Backends.blocking)
    start_response("200 OK", [("content-length", "3"), ("x-service-us", str(service_us))])
    return [b"ok\n"]


async def asgi_app(
    scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if _Backends.aio is not None:
                    await _Backends.aio.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if _Backends.aio is None:
        _Backends.aio = AsyncBackend(_Backends.port())
    target = scope["path"] + "?" + scope.get("query_string", b"").decode("latin-1")
    try:
        if scope.get("method") != "GET":
            raise BadRequest(405, "only GET is served")
        request = parse_work(target)
    except BadRequest as exc:
        body = f"{exc.reason}\n".encode()
        await send(
            {
                "type": "http.response.start",
                "status": exc.status,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    t0 = time.perf_counter()
    burn_cpu(request.cpu_ms)
    await _Backends.aio.call(request.delays_us, request.fanout == "parallel")
    service_us = int((time.perf_counter() - t0) * 1e6)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"3"), (b"x-service-us", str(service_us).encode())],
        }
    )
    await send({"type": "http.response.body", "body": b"ok\n"})


def command(
    peer: str, *, port: int, workers: int, processes: int, backlog: int | None
) -> list[str]:
    """The command line that runs ``peer`` on 127.0.0.1:``port``.

    gunicorn's worker timeout is lifted (its 30 s default would kill a
    worker held by one long request) and shutdowns are given 5 s.
    """
    py = sys.executable
    listen = str(backlog if backlog is not None else 2048)
    bind = f"127.0.0.1:{port}"
    gunicorn = [
        py,
        "-m",
        "gunicorn",
        "-w",
        str(processes),
        "--backlog",
        listen,
        "-b",
        bind,
        "--log-level",
        "warning",
        "--timeout",
        "3600",
        "--graceful-timeout",
        "5",
    ]
    app = "simlab.real.peers.python:wsgi_app"
    if peer == "gunicorn-sync":
        return [*gunicorn, "-k", "sync", app]
    if peer == "gunicorn-gthread":
        return [
            *gunicorn,
            "-k",
            "gthread",
            "--threads",
            str(workers),
            "--worker-connections",
            "100000",
            "--keep-alive",
            "3600",
            app,
        ]
    if peer == "uvicorn":
        # Log level error: uvicorn warns on every refused request, which under
        # overload is a torrent of lines.
        cmd = [
            py,
            "-m",
            "uvicorn",
            "simlab.real.peers.python:asgi_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(processes),
            "--no-access-log",
            "--log-level",
            "error",
            "--backlog",
            listen,
            "--timeout-keep-alive",
            "3600",
            "--timeout-graceful-shutdown",
            "5",
        ]
        if backlog is not None:
            cmd += ["--limit-concurrency", str(backlog)]
        return cmd
    raise ValueError(f"unknown peer {peer!r} (choose from: {', '.join(PYTHON_PEERS)})")
