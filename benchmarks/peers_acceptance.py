"""Issue 13's acceptance runs: each peer at 2,000 connections and 200 req/s, 1 ms of CPU
and one 20 ms backend call, with the table the docs show.

Not a test: real runs of about a minute each. For each peer it runs the
acceptance command (``simlab measure PEER --connections 2000 --rate 200
--cpu-ms 1 --io-ms 20 --duration 10``, sized as in ``SIZES`` to be stable on
this machine), which saves its record under ``data/measurements/`` as usual,
and then prints one Markdown table: offered and served rate, p50 and p99, and
the Little's law check (sampled in-flight count against throughput x mean
latency), headed by the date, the command and the git revision. Run it at low
priority on a shared machine (``nice -n 19``); the record keeps the machine's
state in its own fields.

Run: ``python benchmarks/peers_acceptance.py [--peers go,node] [--records R.json ...]``
(``--records`` only prints the table of records already taken).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from simlab.provenance import git_revision

COMMAND = "measure {peer} --connections 2000 --rate 200 --cpu-ms 1 --io-ms 20 --duration 10"
# Each peer's size: the smallest that kept up with the offered rate here (a pool
# must hold rate x latency = about 5 requests, with room for the machine's stalls).
SIZES = {
    "tomcat-nio": "--workers 32",
    "go": "",
    "node": "",
    "nginx-php-fpm": "--processes 16",
    "nginx-uwsgi": "--processes 2 --workers 8",
}
LITTLE_GOAL = 0.05


def run(peer: str) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    argv = [sys.executable, "-m", "simlab", *shlex.split(COMMAND.format(peer=peer))]
    argv += [*shlex.split(SIZES[peer]), "--json"]
    out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"{peer}: simlab measure failed ({out.returncode}): {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    # --json prints the result; a saved record nests the same summary under "summary".
    summary: dict[str, Any] = result.get("summary", result)
    summary["load_before"] = load_before  # other work on the machine, as the run began
    return summary


def row(s: dict[str, Any]) -> str:
    lat, little = s["latency_ms"], s["little"]
    err = little["rel_error"]
    size = SIZES.get(s["model"], "")
    ok = "yes" if err <= LITTLE_GOAL else "**no**"
    load = f"{s['load_before']:.1f}" if "load_before" in s else "-"
    return (
        f"| {s['model']} | {f'`{size}`' if size else ''} | {s['offered_rps']:.1f} / "
        f"{s['throughput_rps']:.1f} | {lat['p50']:.1f} / {lat['p99']:.1f} | "
        f"{little['in_flight_sampled']:.2f} vs {little['throughput_x_latency']:.2f}: "
        f"{err:.1%} ({ok}) | {s['dropped'] + sum(s['errors'].values())} | "
        f"{'yes' if s['stable'] else 'no'} | {load} | {s['started']} |"
    )


def table(summaries: list[dict[str, Any]], *, ran: bool = True) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = f"simlab {COMMAND.format(peer='PEER')} [size]"
    how = (
        f"`nice -n 19 {command}`, run by this script on {when}"
        if ran
        else f"`{command}`, from the records named in the last column (their start, UTC)"
    )
    lines = [
        f"<!-- printed by benchmarks/peers_acceptance.py on {when}, git {git_revision()} -->",
        f"{how}:",
        "",
        "| peer | size | offered / served req/s | p50 / p99 ms | Little: in flight vs "
        "X x R (error, within 5%) | dropped + errors | stable | load average | record |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [row(s) for s in summaries]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers", default=",".join(SIZES), help="comma-separated peers to run")
    ap.add_argument("--records", nargs="*", type=Path, help="print the table of these records")
    args = ap.parse_args()
    if args.records:
        summaries = [json.loads(p.read_text())["summary"] for p in args.records]
    else:
        peers = [p for p in args.peers.split(",") if p]
        unknown = sorted(set(peers) - set(SIZES))
        if unknown:
            raise SystemExit(f"--peers: unknown {', '.join(unknown)} (one of {', '.join(SIZES)})")
        summaries = []
        for peer in peers:
            print(f"measuring {peer} ...", file=sys.stderr, flush=True)
            summaries.append(run(peer))
    print(table(summaries, ran=not args.records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
