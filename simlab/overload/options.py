"""The overload options, as the scenario builder's table takes them, and how
they become the workload's and the architecture's overload values.

``simlab.scenario`` adds ``SPECS`` to ``OPTIONS`` (so the command line,
sweep files and the dashboard take them like any other option) and calls
``rate_changes``, ``workload_changes`` and ``limits`` while it builds. An
option left at its default builds nothing (None), so a scenario without
them is exactly the scenario it was.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from simlab.distributions import Distribution
from simlab.errors import UserError
from simlab.overload.policy import Backend, Clients, Limits, Mix
from simlab.overload.schedule import Schedule, parse_rate

__all__ = ["CLIENT", "KINDS", "MIX", "SERVER", "SPECS", "check", "limits", "workload_changes"]

# Option kinds this module parses: a rate or a schedule; a delay in ms or a percentile.
KINDS = ("rate", "delay")
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")
# Draws used to read a percentile off a call-latency distribution (fixed seed).
QUANTILE_DRAWS = 200_000


def _spec(name: str, group: str, kind: str, help: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "group": group, "kind": kind, "help": help, **kw}


SPECS: tuple[dict[str, Any], ...] = (
    _spec(
        "timeout_ms",
        "clients",
        "float",
        "a client gives up on an attempt after this long and, with --retries, tries again; "
        "the server still does the work (wasted)",
        default=None,
        low=0,
        strict=True,
        word="off",
    ),
    _spec(
        "retries",
        "clients",
        "int",
        "retries per request after a timeout, a 503 or a refused connection",
        default=0,
        low=0,
        high=10,
    ),
    _spec(
        "backoff_ms",
        "clients",
        "float",
        "exponential backoff with full jitter: retry n waits uniform(0, min(max, base x 2^(n-1)))",
        default=100.0,
        low=0,
    ),
    _spec("backoff_max_ms", "clients", "float", "the backoff's cap", default=10_000.0, low=0),
    _spec(
        "retry_budget",
        "clients",
        "float",
        "retry throttling as gRPC's: a token bucket of this many tokens shared by the clients; "
        "a failure costs 1, a success adds --retry-token-ratio; retries only above half",
        default=None,
        low=0,
        strict=True,
        word="off",
    ),
    _spec(
        "retry_token_ratio",
        "clients",
        "float",
        "tokens a success gives back to the retry budget",
        default=0.1,
        low=0,
    ),
    _spec(
        "syn_retries",
        "clients",
        "int",
        "a full accept backlog drops the SYN and the client retransmits after 1 s, 2 s, 4 s... "
        "this many times, as Linux does (tcp_syn_retries 6); 0 refuses at once",
        default=0,
        low=0,
        high=10,
    ),
    _spec(
        "max_inflight",
        "server limits",
        "int",
        "answer 503 at once beyond this many requests in the server (uvicorn's "
        "--limit-concurrency)",
        default=None,
        low=1,
        word="unbounded",
    ),
    _spec(
        "queue_deadline_ms",
        "server limits",
        "float",
        "drop (503, no work done) a request that waited longer than this for a thread or the loop",
        default=None,
        low=0,
        strict=True,
        word="off",
    ),
    _spec(
        "offload",
        "server limits",
        "bool",
        "async: run blocking calls on a pool of --workers threads (run_in_executor), not the loop",
        default=False,
    ),
    _spec(
        "backend_pool",
        "backend",
        "int",
        "the backend serves at most K calls at once; more wait in turn (an M/G/K backend)",
        default=None,
        low=1,
        word="unbounded",
        metavar="K",
    ),
    _spec(
        "fanout_deadline_ms",
        "backend",
        "float",
        "a fan-out takes the answers it has this long after it starts (an auction's deadline)",
        default=None,
        low=0,
        strict=True,
        word="off",
    ),
    _spec(
        "hedge_ms",
        "backend",
        "delay",
        "re-send a call still unanswered after this long (ms, or pNN: that percentile of "
        "a call's latency, e.g. p95) and take the first answer",
        default=None,
        word="off",
        metavar="MS|pNN",
    ),
    _spec(
        "heavy_share",
        "mix",
        "float",
        "share of requests that are CPU-heavy",
        default=0.0,
        low=0,
        high=1,
    ),
    _spec("heavy_cpu_ms", "mix", "float", "CPU of a heavy request, ms", default=50.0, low=0),
    _spec(
        "blocking_share",
        "mix",
        "float",
        "share of requests that make a blocking call (a synchronous driver): it holds an "
        "async loop for its whole duration",
        default=0.0,
        low=0,
        high=1,
    ),
    _spec("blocking_ms", "mix", "float", "duration of a blocking call, ms", default=50.0, low=0),
    _spec(
        "timeline",
        "run",
        "bool",
        "report per-second windows (the timeline) even without an overload option",
        default=False,
    ),
)
CLIENT = ("timeout_ms", "retries", "backoff_ms", "backoff_max_ms", "retry_budget",
          "retry_token_ratio", "syn_retries")  # fmt: skip
SERVER = ("max_inflight", "queue_deadline_ms", "offload")
BACKEND = ("backend_pool", "fanout_deadline_ms", "hedge_ms")
MIX = ("heavy_share", "heavy_cpu_ms", "blocking_share", "blocking_ms")
_DEFAULTS = {spec["name"]: spec["default"] for spec in SPECS}


def check(kind: str, value: Any) -> Any:
    """A value of one of ``KINDS``, checked (UserError without the option's name)."""
    if kind == "rate":
        return parse_rate(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if _PERCENTILE.match(text):
            q = float(text[1:])
            if not 0 < q < 100:
                raise UserError(f"a percentile must be in (0, 100), got {value!r}")
            return text
        try:
            value = float(text)
        except ValueError:
            raise UserError(
                f"must be a delay in ms or a percentile such as p95, got {value!r}"
            ) from None
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value <= 0:
        raise UserError(f"must be a delay in ms > 0 or a percentile such as p95, got {value!r}")
    return float(value)


def rate_changes(rate: float | Schedule) -> dict[str, Any]:
    """The workload's fields for ``--rate``: a number, or a schedule and its mean rate."""
    if isinstance(rate, Schedule):
        return {"rate": rate.mean_rate(), "schedule": rate}
    return {"rate": rate, "schedule": None}


def _get(o: Mapping[str, Any], name: str) -> Any:
    return o.get(name, _DEFAULTS[name])


def _ms(value: float | None) -> float | None:
    return None if value is None else value / 1e3


def quantile(dist: Distribution, q: float) -> float:
    """The ``q``-th percentile of a distribution, read off draws with a fixed seed."""
    import numpy as np  # noqa: PLC0415 - numpy loads when a run asks, not for --help

    draws = dist.sample(np.random.default_rng(0x5EED), QUANTILE_DRAWS)
    return float(np.percentile(draws, q))


def workload_changes(o: Mapping[str, Any], io: Distribution) -> dict[str, Any]:
    """The workload's overload fields from the options (None where nothing is set)."""
    out: dict[str, Any] = {}
    clients = Clients(
        timeout=_ms(_get(o, "timeout_ms")),
        retries=_get(o, "retries"),
        backoff=_get(o, "backoff_ms") / 1e3,
        backoff_max=_get(o, "backoff_max_ms") / 1e3,
        budget=_get(o, "retry_budget"),
        token_ratio=_get(o, "retry_token_ratio"),
        syn_retries=_get(o, "syn_retries"),
    )
    if clients.active:
        out["clients"] = clients
    hedge = _get(o, "hedge_ms")
    if isinstance(hedge, str):
        hedge_s: float | None = quantile(io, float(hedge[1:]))
        if not hedge_s or hedge_s <= 0:
            raise UserError(f"--hedge-ms: {hedge} of the call latency is 0; give a delay in ms")
    else:
        hedge_s = _ms(hedge)
    backend = Backend(
        pool=_get(o, "backend_pool"), deadline=_ms(_get(o, "fanout_deadline_ms")), hedge=hedge_s
    )
    if backend.active:
        out["backend"] = backend
    mix = Mix(
        heavy_share=_get(o, "heavy_share"),
        heavy_cpu=_get(o, "heavy_cpu_ms") / 1e3,
        blocking_share=_get(o, "blocking_share"),
        blocking=_get(o, "blocking_ms") / 1e3,
    )
    if mix.active:
        out["mix"] = mix
    return out


def limits(o: Mapping[str, Any]) -> Limits | None:
    """The server's limits from the options, or None when none is set."""
    out = Limits(
        max_inflight=_get(o, "max_inflight"),
        queue_deadline=_ms(_get(o, "queue_deadline_ms")),
        offload=_get(o, "offload"),
    )
    return out if out.active else None
