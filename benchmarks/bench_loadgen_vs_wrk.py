"""Cross-check: simlab's load generator against wrk on the same server.

Two cases, each driven by wrk (Debian package ``wrk``) and by simlab's load
generator in closed loop with no think time (what wrk does), one after the
other against the same server, printed side by side:

- saturation: a trivial request (no CPU, no backend call), 50 connections:
  how many requests/s each client can push (the goal: simlab >= 5,000/s);
- below saturation: 10 connections and a 10 ms backend call, so throughput
  is set by latency, not by the server or the client: the two should agree
  within 10%.

Also an open-loop run at a fixed high rate, the mode simlab is built for.
Run: ``python benchmarks/bench_loadgen_vs_wrk.py [--server async] [--seconds 8]``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys

from simlab.real import loadgen
from simlab.real.processes import Managed, python

TRIVIAL = "cpu_ms=0&io_ms=0&calls=0"
IO10 = "cpu_ms=0&io_ms=10&calls=1"


def wrk(port: int, query: str, connections: int, seconds: float) -> float:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            f"http://127.0.0.1:{port}/work?{query}",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    return float(match.group(1))


def ours(
    port: int, query: str, connections: int, seconds: float, rate: float | None = None
) -> float:
    spec = loadgen.LoadSpec(
        host="127.0.0.1",
        port=port,
        connections=connections,
        queries=(query,),
        rate=rate,
        think_s=None if rate else 0.0,
        warmup=1.0,
        duration=seconds,
        timeout=10.0,
    )
    report = loadgen.run(spec)
    return float(report["completed_in_window"]) / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="async")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    with (
        Managed([python(), "-m", "simlab.real.backend"], name="backend") as backend,
        Managed(
            [
                python(),
                "-m",
                "simlab.real.runner",
                args.server,
                "--backend-port",
                str(backend.port),
            ],
            name=args.server,
        ) as server,
    ):
        rows = []
        for name, query, conns in (
            ("saturation, trivial request", TRIVIAL, 50),
            ("below saturation, 10 ms call", IO10, 10),
        ):
            w = wrk(server.port, query, conns, args.seconds)
            s = ours(server.port, query, conns, args.seconds)
            rows.append((name, conns, w, s))
        open_rate = ours(server.port, TRIVIAL, 50, args.seconds, rate=6000.0)
    print(f"server: {args.server}; one client process each, {args.seconds:g} s per run")
    print(
        f"{'case':32s} {'conns':>5s} {'wrk req/s':>10s} {'simlab req/s':>13s} {'simlab/wrk':>10s}"
    )
    for name, conns, w, s in rows:
        print(f"{name:32s} {conns:5d} {w:10,.0f} {s:13,.0f} {s / w:10.2f}")
    print(f"{'open loop at 6,000/s offered':32s} {50:5d} {'-':>10s} {open_rate:13,.0f}")
    below = rows[1]
    agree = abs(below[3] / below[2] - 1) <= 0.10
    print(
        f"goal: simlab >= 5,000/s at saturation -> {'met' if rows[0][3] >= 5000 else 'MISSED'}; "
        f"within 10% of wrk below saturation -> {'met' if agree else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
