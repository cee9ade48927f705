"""``reactor-pool``: an event loop reads requests, a pool of W worker threads runs them.

The first generation of event-driven servers (nginx + PHP-FPM, Tomcat NIO,
gunicorn gthread): the loop owns every connection, so an idle connection
costs only its memory; each request is parsed on the loop, handed to a
worker (``dispatch``), and the worker blocks through its backend calls. It is
M/G/W over requests per process (Erlang C when service is exponential). The
catch the notes point at: a worker is held for the whole backend wait, so
W must grow with lam x W_io (Little's law).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from simlab.models import loads
from simlab.models.base import Analytic, Model, client_load, process_of, thread_cpu_overhead
from simlab.models.pool import Pool
from simlab.params import Architecture, Platform, Workload

__all__ = ["ReactorPool"]


class ReactorPool(Model):
    name = "reactor-pool"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        w, p, a = self.workload, self.platform, self.arch
        self._loop_cost = (p.parse_us + p.dispatch_us) * 1e-6
        self._fixed, _ = thread_cpu_overhead(w, p, parse=False)
        self._cs_paid = p.context_switch_us > 0
        self.loops = [Pool(self.env, 1, first_id=k) for k in range(a.processes)]
        self.pools = [Pool(self.env, a.workers, first_id=k * a.workers) for k in range(a.processes)]

    def base_levels(self) -> dict[str, int]:
        w = self.workload
        return self.preforked(self.arch.workers + 1, w.connections if w.persistent else 0)

    def session(self, i: int, conn: int) -> Generator[simpy.Event, Any, None]:
        env = self.env
        process = process_of(conn, self.arch.processes, self.salt)
        loop, pool = self.loops[process], self.pools[process]
        gil = self.cpu.gil(process)
        backlog = self.arch.backlog
        nxt: int | None = i
        while nxt is not None:
            i = nxt
            self.connect(conn)
            self.admit[i] = env.now
            if self._loop_cost > 0:
                yield from self.cpu.run(gil, self._loop_cost, 0, process, lock=loop)
            worker = pool.take()
            if worker < 0 and backlog is not None and pool.queued >= backlog:
                self.drop(i)  # the work queue is full: answer 503
            else:
                if worker < 0:
                    worker = yield pool.wait()
                self.start[i] = env.now
                self.worker[i] = worker
                self.process[i] = process
                demand = self.demand[i] + self._fixed
                cpu = yield from self.on_thread(i, gil, demand, paid=self._cs_paid, process=process)
                self.cpu_time[i] = cpu
                pool.give(worker)
                self.finish(i, self._loop_cost + cpu + self.io_time[i])
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
        fixed, switches = thread_cpu_overhead(workload, platform, parse=False)
        loop = (platform.parse_us + platform.dispatch_us) * 1e-6
        cs = switches * platform.context_switch_us * 1e-6
        worker_cpu = workload.cpu.mean + fixed + cs
        svc = loads.service(workload, fixed + cs, call_latency=platform.call_latency_us * 1e-6)
        top_share = max(loads.process_shares(workload, arch))
        out = loads.cpu_loads(
            workload, platform, arch, total=loop + worker_cpu, per_process_gil=loop + worker_cpu
        )
        out["loop"] = workload.rate * top_share * loop
        out["workers"] = workload.rate * top_share * svc.mean / arch.workers
        out["client"] = client_load(workload, loop + svc.mean)
        return out

    @classmethod
    def analytic(cls, workload: Workload, platform: Platform, arch: Architecture) -> Analytic | str:
        blocker = loads.reduction_blocker(workload, platform, arch, queue="work queue")
        if blocker is not None:
            return blocker
        if platform.parse_us + platform.dispatch_us > 0:
            return "the loop's parse and dispatch phase is a second queue in tandem"
        fixed, switches = thread_cpu_overhead(workload, platform, parse=False)
        svc = loads.service(
            workload,
            fixed + switches * platform.context_switch_us * 1e-6,
            call_latency=platform.call_latency_us * 1e-6,
        )
        return loads.mgc_reference(
            workload, arch, svc, servers=arch.workers, extra_latency=platform.rtt_us * 1e-6
        )
