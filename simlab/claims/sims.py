"""The short model runs some claims need, on the calibrated profile of the data root
(``Evidence.platform()``).

They use the planner's analytic estimates (milliseconds each), so that the
ledger stays quick; the commands each row cites rerun them, with the DES check.
"""

from __future__ import annotations

from simlab.distributions import Fixed
from simlab.params import Architecture, Platform, Workload
from simlab.planner import Goals, plan
from simlab.planner.inverse import rate_limit
from simlab.planner.search import Search

__all__ = ["gil_rates", "journey_load", "plan_workers"]


def plan_workers(
    model: str,
    platform: Platform,
    *,
    rate: float,
    io_ms: float,
    p99_ms: float,
    connections: int = 10_000,
) -> tuple[int | None, float]:
    """(workers, p99 ms) of the analytic plan for ``model`` on the calibrated
    profile: 1 ms of CPU and one backend call of ``io_ms`` per request."""
    w = Workload(
        connections=connections, rate=rate, cpu=Fixed(0.001), io=Fixed(io_ms / 1e3), calls=1
    )
    report = plan(w, platform, Goals(p99_ms=p99_ms), models=[model], check="analytic")
    p = report.plans[0]
    return (p.workers if p.feasible else None), float(p.latency_ms.get("p99", float("nan")))


def gil_rates(model: str, platform: Platform, *, cores: int, workers: int) -> dict[bool, float]:
    """The highest rate one process of ``model`` serves (p99 within 1 s) on the
    calibrated profile with ``cores`` cores, with the GIL and without it."""
    w = Workload(connections=256, rate=100.0, cpu=Fixed(0.002), io=Fixed(0.01), calls=1)
    base = platform.with_(cores=cores)
    deal = Search(max_processes=1).deal()
    arch = Architecture(workers=workers, processes=1)
    return {
        gil: rate_limit(model, w, base.with_(gil=gil), arch, Goals(p99_ms=1000.0), deal=deal)
        for gil in (True, False)
    }


def journey_load(
    model: str, platform: Platform, *, clients: int, params: dict[str, float]
) -> float:
    """Cores of CPU one process of ``model`` needs for ``clients`` journey clients
    (each ``per_client_rate`` req/s, ``cpu_s`` of CPU, one request per connection),
    from the calibrated profile's per-request costs: the load on the one core a
    GIL lets a process use."""
    from simlab.models import get_model  # noqa: PLC0415

    rate = clients * float(params["per_client_rate"])
    w = Workload(
        connections=clients,
        rate=rate,
        cpu=Fixed(float(params["cpu_s"])),
        io=Fixed(float(params["io_s"])),
        calls=1,
        requests_per_connection=1,
    )
    cost = get_model(model).request_cost(w)
    per = (
        float(params["cpu_s"])
        + cost.loop_s(platform)
        + cost.thread_s(platform)
        + cost.switch_s(platform)
        + cost.accept_s(platform)
    )
    return rate * per
