"""A fake of one real run's ``MeasuredSummary``: the fields ``simlab.validate``
keeps of a run (``_kept``), for tests that stand ``validate._measure`` in for
real runs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from simlab.measured import LabCpu, MeasuredStability, SendDelay, SpeedReference

LAG = SendDelay(p50=0.5, p99=12.0)


def measured_run(
    *,
    throughput: float,
    p50: float,
    user: float,
    kernel: float,
    threads: float,
    speed: SpeedReference | None = None,
    lag: SendDelay | None = LAG,
    client_us: float | None = 450.0,
    cpu_busy: float = 0.3,
    unsteady: tuple[str, ...] = (),
) -> Any:
    """A run whose p99 is twice its p50; ``lag`` and ``client_us`` None: a run
    measured before the load generator's were kept; ``unsteady``: its
    stability reasons (none: a steady window)."""
    return SimpleNamespace(
        throughput_rps=throughput,
        cpu_busy_cores=cpu_busy,
        latency_ms=SimpleNamespace(p50=p50, p99=2 * p50),
        memory_mib=SimpleNamespace(user_peak=user, kernel_peak=kernel),
        threads=SimpleNamespace(peak=threads),
        speed_reference=speed,
        connections=SimpleNamespace(per_process=None, per_connection=None, open_seconds=0.01),
        send_delay_ms=lag,
        stability=MeasuredStability(unsteady),
        run_queue=None,  # its threads' waits for a core not read
        lab_cpu=LabCpu(
            client_us_per_request=client_us,
            backend_us_per_call=None if client_us is None else 150.0,
        ),
    )
