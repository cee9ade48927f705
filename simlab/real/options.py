"""How a real server is run: its model, knobs, port and backend."""

from __future__ import annotations

from dataclasses import dataclass

from simlab.errors import UserError
from simlab.registry import MODEL_NAMES

__all__ = ["SERVER_MODELS", "SWITCH_INTERVAL_S", "ServerOptions"]

# Every model has a real twin of the same name (``simlab.registry``).
SERVER_MODELS = MODEL_NAMES
# The switch intervals a server may be given (seconds): CPython takes any
# positive one; beyond a second a thread waiting for the GIL is all but never
# let in by the interval.
SWITCH_INTERVAL_S = (1e-6, 1.0)


@dataclass(frozen=True)
class ServerOptions:
    """``workers`` is the pool size per process (thread-pool, reactor-pool);
    ``backlog`` bounds the accept queue (thread-pool), the work queue
    (reactor-pool) or the requests in flight (async), and what overflows is
    refused (thread-pool closes the connection, the others answer 503);
    ``request_timeout`` is how long a started request may take to arrive;
    ``stack_kib`` sets the stack reserved per thread (0: the platform default);
    ``parser`` is the HTTP parser, h11 (default) or httptools.

    Overload controls (``simlab.overload``; off by default): ``max_inflight``
    answers 503 at once beyond that many requests in the server (uvicorn's
    ``--limit-concurrency``); ``queue_deadline`` (seconds) answers 503,
    without doing the work, to a request that waited longer for a thread or
    the loop; ``offload`` runs an async handler's blocking calls on a pool
    of ``workers`` threads; ``kernel_backlog`` makes a blocking pool accept
    only when a worker is free, so that waiting connections stay in the
    kernel's listen queue of ``backlog`` (whose overflow drops SYNs)."""

    model: str
    backend_port: int
    port: int = 0
    host: str = "127.0.0.1"
    workers: int = 32
    processes: int = 1
    backlog: int | None = None
    request_timeout: float = 10.0
    stack_kib: int = 0
    uvloop: bool = False
    parser: str = "h11"
    max_inflight: int | None = None
    queue_deadline: float | None = None
    offload: bool = False
    kernel_backlog: bool = False
    # CPython's switch interval in the server (``sys.setswitchinterval``,
    # seconds; None: Python's default, 5 ms): calibration's runs at two
    # intervals tell the GIL's waiters' cost apart (``Platform.gil_poll_us``).
    switch_interval: float | None = None
    # Where a blocking server (iterative, thread-pool, thread-per-connection)
    # writes, at its exit, how long each connection's owner waited after its
    # last answer for the client's close (seconds, one a line; a file per
    # process: this path and ``.<pid>``); None: not kept. A client that
    # closes after an idle keep-alive gap (K > 1, once sending stops) counts
    # the gap too; its server's own shutdown is no close.
    # ``simlab.real.close_wait`` measures ``Platform.close_wait_us`` from it.
    close_waits: str | None = None

    def __post_init__(self) -> None:
        if self.model not in SERVER_MODELS:
            raise UserError(
                f"unknown server {self.model!r} (choose from: {', '.join(SERVER_MODELS)})"
            )
        if self.workers < 1:
            raise UserError(f"workers(={self.workers}) must be >= 1")
        if self.processes < 1:
            raise UserError(f"processes(={self.processes}) must be >= 1")
        if self.backlog is not None and self.backlog < 0:
            raise UserError(f"backlog(={self.backlog}) must be >= 0")
        if not 0 < self.request_timeout <= 3600:
            raise UserError(f"request_timeout(={self.request_timeout}) must be in (0, 3600] s")
        if self.parser not in ("h11", "httptools"):
            raise UserError(f"parser(={self.parser!r}) must be 'h11' or 'httptools'")
        if self.stack_kib and self.stack_kib < 32:
            raise UserError(f"stack_kib(={self.stack_kib}) must be 0 (default) or >= 32")
        if self.max_inflight is not None and self.max_inflight < 1:
            raise UserError(f"max_inflight(={self.max_inflight}) must be >= 1")
        if self.queue_deadline is not None and not 0 < self.queue_deadline <= 3600:
            raise UserError(f"queue_deadline(={self.queue_deadline}) must be in (0, 3600] s")
        low, high = SWITCH_INTERVAL_S
        if self.switch_interval is not None and not low <= self.switch_interval <= high:
            raise UserError(
                f"switch_interval(={self.switch_interval}) must be in [{low:g}, {high:g}] s"
            )

    @property
    def listen_backlog(self) -> int:
        # The kernel caps this at net.core.somaxconn (4096 here).
        if self.kernel_backlog and self.backlog is not None:
            # Linux's accept queue holds one more than listen() is given.
            return max(0, self.backlog - 1)
        return 4096 if self.backlog is None else max(1, self.backlog)
