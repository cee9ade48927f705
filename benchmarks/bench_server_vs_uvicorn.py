"""Real server speed: simlab's ``async`` server against uvicorn, measured by wrk in one run.

Both run one process on uvloop with httptools parsing (uvicorn's
``--loop uvloop --http httptools``; simlab's ``--uvloop --parser httptools``)
and serve the same trivial request (``/work`` with no CPU and no backend
call). wrk (one thread, 50 keep-alive connections) drives each for SECONDS,
the two interleaved REPEATS times so that drifting machine load hits both
alike; the medians and their ratio are printed. The goal: simlab >= 0.8x
uvicorn. simlab's h11 parser is measured too, for scale. Everything runs on
127.0.0.1, and every process started here is stopped here.

Run: ``make bench`` (part of it) or ``python benchmarks/bench_server_vs_uvicorn.py``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys

from simlab.real import peers
from simlab.real.processes import Managed, free_port, port_is_free, python, wait_listening

TRIVIAL = "/work?cpu_ms=0&io_ms=0&calls=0"
SECONDS = 6.0
REPEATS = 3
CONNECTIONS = 50


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
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if errors is not None:
        raise RuntimeError(f"the server answered errors under load:\n{out}")
    return float(match.group(1))


def simlab_server(backend_port: int, parser: str) -> Managed:
    return Managed(
        [
            python(),
            "-m",
            "simlab.real.runner",
            "async",
            "--backend-port",
            str(backend_port),
            "--uvloop",
            "--parser",
            parser,
        ],
        name=f"simlab async ({parser})",
    )


def uvicorn_server(backend_port: int) -> Managed:
    port = free_port()
    cmd = peers.command("uvicorn", port=port, workers=1, processes=1, backlog=None)
    cmd += ["--loop", "uvloop", "--http", "httptools"]
    server = Managed(
        cmd, env={"SIMLAB_BACKEND_PORT": str(backend_port)}, ready_line=False, name="uvicorn"
    )
    server.port = port
    try:
        wait_listening(port, server.proc)
    except BaseException:
        server.stop()
        raise
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    rates: dict[str, list[float]] = {"simlab httptools": [], "uvicorn": [], "simlab h11": []}
    with Managed([python(), "-m", "simlab.real.backend"], name="backend") as backend:
        for _ in range(args.repeats):
            for name, runs in rates.items():
                if name == "uvicorn":
                    server = uvicorn_server(backend.port)
                else:
                    server = simlab_server(backend.port, name.split()[1])
                with server:
                    wrk(server.port, 1.0)  # warm up: imports, first connections
                    runs.append(wrk(server.port, args.seconds))
                    port = server.port
                if not port_is_free(port):
                    raise RuntimeError(f"{name} left port {port} open")
                print(f"  {name:17s} {runs[-1]:10,.0f} req/s", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(
        f"trivial request, wrk -t1 -c{CONNECTIONS}, {args.seconds:g} s, "
        f"median of {args.repeats} interleaved runs, one server process on uvloop"
    )
    print(f"{'server':18s} {'req/s':>10s} {'vs uvicorn':>11s}")
    for name, value in med.items():
        print(f"{name:18s} {value:10,.0f} {value / med['uvicorn']:11.2f}")
    ratio = med["simlab httptools"] / med["uvicorn"]
    verdict = "met" if ratio >= 0.8 else "MISSED"
    print(f"goal: simlab (uvloop + httptools) >= 0.8x uvicorn -> {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
