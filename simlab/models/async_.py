"""``async``: one event loop per process runs everything; a backend wait holds nothing.

The second generation (asyncio, Node.js, Go's netpoller seen from a single
thread, Vert.x): a request is a task, a backend call is a pending await,
and only CPU phases (parse, task creation, the request's own CPU, issuing
and reading its calls) queue for the loop. So each loop is M/G/1 over CPU
demand (Pollaczek-Khinchine), whatever the backend latency, and one thread
per process is enough. ``--processes`` runs N loops (SO_REUSEPORT).
``backlog`` bounds the requests in flight per process, as uvicorn's
``--limit-concurrency`` does: one more is answered 503 (dropped).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from simlab.models import loads
from simlab.models.base import Analytic, Model, client_load, process_of
from simlab.models.pool import Pool
from simlab.params import Architecture, Platform, Workload

__all__ = ["Async"]


def _loop_fixed(workload: Workload, platform: Platform) -> float:
    """Loop CPU seconds per request besides its own demand."""
    return (platform.parse_us + platform.task_us + workload.calls * platform.call_us) * 1e-6


class Async(Model):
    name = "async"
    busy_on_cpu = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fixed = _loop_fixed(self.workload, self.platform)
        self.loops = [Pool(self.env, 1, first_id=k) for k in range(self.arch.processes)]
        self.in_flight = [0] * self.arch.processes

    def base_levels(self) -> dict[str, int]:
        w = self.workload
        return self.preforked(1, w.connections if w.persistent else 0)

    def session(self, i: int, conn: int) -> Generator[simpy.Event, Any, None]:
        env = self.env
        process = process_of(conn, self.arch.processes, self.salt)
        loop = self.loops[process]
        backlog = self.arch.backlog
        nxt: int | None = i
        while nxt is not None:
            i = nxt
            self.connect(conn)
            self.admit[i] = env.now
            if backlog is not None and self.in_flight[process] >= backlog:
                self.drop(i)
            else:
                self.in_flight[process] += 1
                demand = self.demand[i] + self._fixed
                cpu = 0.0
                if demand > 0:
                    # The loop is the process's only thread: its GIL is never contended.
                    cpu, self.start[i] = yield from self.cpu.run(
                        None, demand, 0, process, lock=loop
                    )
                else:
                    self.start[i] = env.now
                self.worker[i] = process
                self.process[i] = process
                self.cpu_time[i] = cpu
                io = self.io_time[i]
                if io > 0:
                    yield env.timeout(io)
                self.in_flight[process] -= 1
                self.finish(i, cpu + io)
            self.answered(conn)
            nxt = self.next_on_slot(conn)
        del self.active[conn]

    # ----------------------------------------------------------------- maths

    @classmethod
    def offered_load(
        cls, workload: Workload, platform: Platform, arch: Architecture
    ) -> dict[str, float]:
        if workload.rate is None:
            return {}
        loop_cpu = workload.cpu.mean + _loop_fixed(workload, platform)
        out = loads.cpu_loads(workload, platform, arch, total=loop_cpu, per_process_gil=None)
        out["loop"] = workload.rate * max(loads.process_shares(workload, arch)) * loop_cpu
        io_mean = loads.io_moments(workload, platform.call_latency_us * 1e-6)[0]
        out["client"] = client_load(workload, loop_cpu + io_mean)
        return out

    @classmethod
    def analytic(cls, workload: Workload, platform: Platform, arch: Architecture) -> Analytic | str:
        if workload.rate is None:
            return "closed or replayed arrivals have no textbook reduction here"
        if platform.cores is not None and platform.cores < arch.processes:
            return "more loops than cores: loops contend for the CPU"
        if arch.backlog is not None:
            return "a bound on requests in flight drops some, which these formulas do not model"
        cpu = loads.service(workload, _loop_fixed(workload, platform), with_io=False)
        io_mean = loads.io_moments(workload, platform.call_latency_us * 1e-6)[0]
        if cpu.mean == 0:
            return "requests use no CPU, so nothing ever queues for the loop"
        return loads.mgc_reference(
            workload,
            arch,
            cpu,
            servers=1,
            extra_latency=io_mean + platform.rtt_us * 1e-6,
            extra_fixed=workload.calls == 0 or workload.io.cv == 0,
            busy_mean=cpu.mean,
        )
