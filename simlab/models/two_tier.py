"""``two-tier``: F front event loops buffer every connection; a back pool of P x T threads works.

The first generation as the notes describe it: nginx in front of PHP-FPM
(P processes of one thread) or uWSGI (P x T). The front owns every client
connection, so an idle one costs only its front memory. It reads a whole
request (however slowly the client sends it), forwards it over a hop to the
back pool (a connection per request, as nginx does by default, or one kept
alive), buffers the whole answer and writes it back (however slowly the
client reads). A back thread is held only for the business work.

The back processes share one listen queue (PHP-FPM's ``listen.backlog``,
uWSGI's ``--listen``), so the back pool is one FCFS queue of P x T servers;
a request that finds the queue full is answered 502 by the front and counted
as dropped. Where the front is free (no front CPU, no hop time) and CPU
phases never queue, the back is M/G/(P x T) over requests: Erlang C when the
service is exponential.

A request's path, each step on its own resource:

    client sends (slow link)  front loop: parse, hop out  hop latency(s)
    back listen queue  back thread: CPU, backend calls  hop latency back
    front loop: relay the answer  client reads (slow link)
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import simpy

from simlab.footprint import Units, copies_units
from simlab.models import composition, loads
from simlab.models.base import US, Analytic, FastMode, Model, RequestCost, client_load
from simlab.models.composition import Sampler
from simlab.models.pool import Cpu, Pool
from simlab.params import Architecture, Platform, Workload
from simlab.streams import Deal, Dealer

__all__ = ["TwoTier"]

BYTES_PER_KIB = 1024


class TwoTier(Model):
    name = "two-tier"
    pooled = True
    fast_mode = FastMode.TWO_TIER

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        w, p, a = self.workload, self.platform, self.arch
        self._front_in, self._front_out = self.front_s(w, p, a)
        self._hop_in, self._hop_out = self.hop_latency_s(p, a)
        cost = self.request_cost(w)
        self._fixed = cost.thread_s(p)
        self._cs_paid = p.context_switch_us > 0
        self._threads = a.workers
        # Processes 0..P-1 are the back's, P..P+F-1 the front loops (no GIL:
        # nginx is C). Connections are dealt to front loops, not to the back.
        self.cpu = Cpu(self.env, p, a.processes + a.fronts, self.streams.gil, self.streams.place)
        self.process_of = Dealer(a.fronts, self.salt)
        self.fronts = [Pool(self.env, 1, first_id=k) for k in range(a.fronts)]
        self.back = Pool(self.env, a.processes * a.workers)

    # ------------------------------------------------------------ structure

    @classmethod
    def request_cost(cls, workload: Workload) -> RequestCost:
        # A back thread parses the forwarded request, issues and reads the
        # calls, and wakes for the request and for each backend answer. The
        # front's costs are nginx's, in ``front_s``.
        calls = workload.calls
        return RequestCost(
            loop={},
            thread={"parse_us": 1, "call_us": calls},
            switches=1 + calls,
            phases=1 + calls,
            call_phases=calls,
        )

    @classmethod
    def front_s(
        cls, workload: Workload, platform: Platform, arch: Architecture
    ) -> tuple[float, float]:
        """Front CPU seconds per request (in, out): parse and forward the request
        over the hop (a per-request hop connects first: one more hop message),
        then read and relay the answer, each byte at ``front_byte_ns``."""
        p = platform
        per_kib = BYTES_PER_KIB * p.front_byte_ns * 1e-3  # us per KiB
        hops_in = 2 if arch.hop == "per-request" else 1
        front_in = p.front_us + hops_in * p.hop_us + workload.request_kib * per_kib
        front_out = p.hop_us + workload.response_kib * per_kib
        return front_in * US, front_out * US

    @classmethod
    def hop_latency_s(cls, platform: Platform, arch: Architecture) -> tuple[float, float]:
        """Wall-clock seconds of the hop (to the back, and back): a per-request
        hop's connect is one more message before the request's."""
        one = platform.hop_latency_us * US
        return (2 if arch.hop == "per-request" else 1) * one, one

    @classmethod
    def threads_per_process(cls, arch: Architecture) -> int:
        return arch.workers

    @classmethod
    def preforked(cls, arch: Architecture) -> tuple[int, int]:
        # A back master forks every back process (PHP-FPM's and uWSGI's
        # masters do even for one), and each front loop is a thread of its own.
        return arch.fronts + arch.processes * arch.workers + 1, arch.processes

    def base_levels(self) -> dict[str, int]:
        w, a = self.workload, self.arch
        held = w.connections if w.persistent else 0
        levels = self.levels(0, held)
        levels["fronts"] = a.fronts
        levels["front_conns"] = held
        return levels

    # -------------------------------------------------------------- sessions

    def session(self, i: int, conn: int) -> Generator[simpy.Event, Any, None]:
        env = self.env
        a = self.arch
        front_id = self.process_of(conn)
        front, front_proc = self.fronts[front_id], a.processes + front_id
        back, backlog = self.back, a.backlog
        nxt: int | None = i
        while nxt is not None:
            i = nxt
            self.connect(conn)
            # The front reads a slow client's request into its buffer: no
            # back thread is involved yet.
            sent = yield from self.client_sends(i)
            self.admit[i] = env.now
            front_cpu = 0.0
            if self._front_in > 0:
                front_cpu += (
                    yield from self.cpu.run(None, self._front_in, 0, front_proc, lock=front)
                )[0]
            if self._hop_in > 0:
                yield env.timeout(self._hop_in)
            worker = back.take()
            if worker < 0 and backlog is not None and back.queued >= backlog:
                self.drop(i)  # the back's listen queue is full: the front answers 502
            else:
                if worker < 0:
                    worker = yield back.wait()
                process = worker // self._threads
                self.start[i] = env.now
                self.worker[i] = worker
                self.process[i] = process
                demand = self.demand[i] + self._fixed
                cpu = yield from self.on_thread(
                    i, self.cpu.gil(process), demand, paid=self._cs_paid, process=process
                )
                self.cpu_time[i] = cpu
                back.give(worker)  # the answer fits the hop's socket buffer
                self.let_go[i] = env.now
                if self._hop_out > 0:
                    yield env.timeout(self._hop_out)
                if self._front_out > 0:
                    front_cpu += (
                        yield from self.cpu.run(None, self._front_out, 0, front_proc, lock=front)
                    )[0]
                read = yield from self.client_reads(i)
                hops = self._hop_in + self._hop_out
                self.finish(i, sent + front_cpu + hops + cpu + self.io_time[i] + read)
            self.answered(conn)
            nxt = self.next_on_slot(conn)
        del self.active[conn]

    # ------------------------------------------------------------ fast engine

    @classmethod
    def fast_events(cls, workload: Workload, platform: Platform, arch: Architecture) -> bool:
        return True  # the front and the hop are steps the recursion does not have

    @classmethod
    def fast_front(
        cls, workload: Workload, platform: Platform, arch: Architecture
    ) -> tuple[int, float, float, float, float]:
        return (arch.fronts, *cls.front_s(workload, platform, arch),
                *cls.hop_latency_s(platform, arch))  # fmt: skip

    # ----------------------------------------------------------------- maths

    @classmethod
    def units(cls, workload: Workload, arch: Architecture, in_flight: int) -> Units:
        threads, copies = cls.preforked(arch)
        held = workload.connections if workload.persistent else 0
        return Units(
            **copies_units(copies, workload.calls),
            thread=threads,
            connection=0 if workload.persistent else in_flight,
            task=in_flight,
            backend_conn=arch.workers * arch.processes if workload.calls else 0,
            served=arch.workers * arch.processes,  # each back thread, once it has served
            front=arch.fronts,
            front_conn=held,
            buffer_kib=transfer_kib(workload),
        )

    @classmethod
    def _back_service(cls, workload: Workload, platform: Platform) -> loads.Service:
        cost = cls.request_cost(workload)
        return loads.service(
            workload,
            cost.thread_s(platform) + cost.switch_s(platform),
            call_latency=platform.call_latency_us * US,
        )

    @classmethod
    def offered_load(
        cls, workload: Workload, platform: Platform, arch: Architecture, deal: Deal
    ) -> dict[str, float]:
        w, p, a = workload, platform, arch
        if w.rate is None:
            return {}
        cost = cls.request_cost(w)
        front = sum(cls.front_s(w, p, a))
        back_cpu = w.cpu.mean + cost.thread_s(p) + cost.switch_s(p)
        svc = cls._back_service(w, p)
        out: dict[str, float] = {}
        if p.cores is not None:
            out["cores"] = w.rate * (front + back_cpu) / p.cores
        if p.gil:
            # Back processes take requests from one queue: each gets 1/P of them.
            out["gil"] = w.rate / a.processes * back_cpu
        out["front"] = w.rate * deal.busiest(w.connections, a.fronts) * front
        out["back"] = w.rate * svc.mean / (a.processes * a.workers)
        hops = sum(cls.hop_latency_s(p, a))
        transfer = w.client_send.mean + w.client_recv.mean
        out["client"] = client_load(w, transfer + front + hops + svc.mean)
        return out

    @classmethod
    def explain_overload(
        cls, resource: str, rho: float, workload: Workload, arch: Architecture, deal: Deal
    ) -> str:
        if resource == "back":
            return (
                f"the back pool of {arch.processes} x {arch.workers} threads is "
                f"offered rho = {rho:.3g} >= 1"
            )
        if resource == "front":
            return f"the busiest of {arch.fronts} front loop(s) is offered rho = {rho:.3g} >= 1"
        return super().explain_overload(resource, rho, workload, arch, deal)

    @classmethod
    def analytic(
        cls, workload: Workload, platform: Platform, arch: Architecture, deal: Deal
    ) -> Analytic | str:
        w, p, a = workload, platform, arch
        blocker = loads.reduction_blocker(w, p, a, queue="back listen queue")
        if blocker is not None:
            return blocker
        if sum(cls.front_s(w, p, a)) > 0:
            return "the front loops are a second queue in tandem (front_us, hop_us, front_byte_ns)"
        svc = cls._back_service(w, p)
        # Everything outside the back queue is a pure delay: the hop, the
        # client path and a slow client's transfers.
        delay = sum(cls.hop_latency_s(p, a)) + p.rtt_us * US
        delay += w.client_send.mean + w.client_recv.mean
        fixed = w.client_send.cv == 0 and w.client_recv.cv == 0 and p.rtt_cv == 0
        return loads.mgc_reference(
            w,
            a,
            deal,
            svc,
            servers=a.processes * a.workers,
            split=False,
            extra_latency=delay,
            extra_fixed=fixed,
        )

    @classmethod
    def latency_draws(
        cls,
        workload: Workload,
        platform: Platform,
        arch: Architecture,
        deal: Deal,
        sampler: Any,
    ) -> tuple[np.ndarray, str]:
        s: Sampler = sampler
        w, p, a = workload, platform, arch
        assert w.rate is not None
        offered = cls.offered_load(w, p, a, deal)
        # CPU waits of a back thread: each back process gets 1/P of the requests.
        held, method = composition.held_on_thread(
            w, p, offered, 1 / a.processes, s, parse=p.parse_us * US
        )
        servers = a.processes * a.workers
        pw, mw = composition.mgc_wait(w.rate, float(held.mean()), composition.scv(held), servers)
        front_in, front_out = cls.front_s(w, p, a)
        lam_front = w.rate * deal.busiest(w.connections, a.fronts)
        pl, ml = composition.mgc_wait(lam_front, front_in + front_out, 0.0, 1)
        wait = composition.mixture(s.u_pool, s.e_pool, pw, mw) + composition.mixture(
            s.u_loop, s.e_loop, pl, ml
        )
        fixed = front_in + front_out + sum(cls.hop_latency_s(p, a))
        return (
            wait + fixed + held + s.rtt + s.send + s.recv,
            f"M/G/{servers} back pool (Erlang C, Allen-Cunneen) + M/G/1 front loop + {method}",
        )


def transfer_kib(workload: Workload) -> float:
    """KiB of slow clients' bytes waiting in buffers on average (Little's law:
    the rate times each transfer's time, times its size)."""
    w = workload
    if not w.slow_clients or w.rate is None:
        return 0.0
    return w.rate * (w.client_send.mean * w.request_kib + w.client_recv.mean * w.response_kib)
