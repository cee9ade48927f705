"""Every peer's throughput on a trivial request under wrk, beside uvicorn's, in one run.

Not a test: a check that no peer is crippled by the lab's configuration of
it. Each peer serves ``/work?cpu_ms=0&io_ms=0&calls=0`` (no CPU burn, no
backend call: the server's own HTTP path only) to wrk (one thread, 50
keep-alive connections) for SECONDS after WARMUP_S of the same; the peers are
interleaved REPEATS times
so that drifting machine load hits all alike, and each median is printed
with its ratio to uvicorn's, measured in the same run. Each peer runs as the
lab runs it, sized for this machine (CONFIG); uvicorn runs one process, on
uvloop and httptools when installed (its defaults). Everything is on
127.0.0.1, and every process started here is stopped here.

Run: ``make bench-peers`` or ``python benchmarks/bench_peers_wrk.py``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys

from simlab.provenance import git_revision, machine, utc_stamp
from simlab.real import peers
from simlab.real.lock import exclusive
from simlab.real.processes import Managed, free_port, port_is_free, python

TRIVIAL = "/work?cpu_ms=0&io_ms=0&calls=0"
SECONDS = 5.0
WARMUP_S = 8.0  # the JVMs reach their compiled speed only after seconds of load
REPEATS = 3
CONNECTIONS = 50
CORES = os.cpu_count() or 1
# (workers, processes) per peer: pools of a size a deployment on this machine would use.
CONFIG = {
    "uvicorn": (1, 1),
    "nginx-php-fpm": (1, 2 * CORES),
    "nginx-uwsgi": (4, CORES),
    "tomcat-nio": (4 * CORES, 1),
    "java-threads": (1, 1),
    "go": (1, 1),
    "node": (1, 1),
}


def wrk(port: int, seconds: float) -> float:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", f"http://127.0.0.1:{port}{TRIVIAL}"],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    if re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out) or "Socket errors" in out:
        raise RuntimeError(f"the server answered errors under load:\n{out}")
    return float(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    rates: dict[str, list[float]] = {name: [] for name in CONFIG}
    started, load_before = utc_stamp(), os.getloadavg()[0]
    # One real run at a time on the machine: the lab's lock, as simlab measure takes it.
    with (
        exclusive(lambda line: print(line, file=sys.stderr)),
        Managed([python(), "-m", "simlab.real.backend"], name="backend") as backend,
    ):
        for _ in range(args.repeats):
            for name, runs in rates.items():
                workers, processes = CONFIG[name]
                cfg = peers.PeerConfig(
                    port=free_port(),
                    backend_port=backend.port,
                    workers=workers,
                    processes=processes,
                )
                with peers.start(name, cfg) as server:
                    wrk(server.port, WARMUP_S)  # warm up: JIT, first connections, pools
                    runs.append(wrk(server.port, args.seconds))
                if not port_is_free(cfg.port):
                    raise RuntimeError(f"{name} left port {cfg.port} open")
                print(f"  {name:14s} {runs[-1]:10,.0f} req/s", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in rates.items()}
    box = machine()
    print(
        f"machine: {box['cpu']}, {box['cores']} cores, Linux {box['kernel']}; started "
        f"{started}, 1-minute load average {load_before:.1f} before and "
        f"{os.getloadavg()[0]:.1f} after (other work on the machine); git {git_revision()}"
    )
    print(
        f"trivial request ({TRIVIAL}), wrk -t1 -c{CONNECTIONS}, {args.seconds:g} s, "
        f"median of {args.repeats} interleaved runs, {CORES} cores"
    )
    print(f"{'peer':14s} {'workers x processes':>20s} {'req/s':>10s} {'vs uvicorn':>11s}")
    for name, value in med.items():
        workers, processes = CONFIG[name]
        shape = f"{workers} x {processes}"
        print(f"{name:14s} {shape:>20s} {value:10,.0f} {value / med['uvicorn']:11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
