"""The coats' programs (simlab.real.peers.coats), small and short: each holds its
pending operations and counts its hops, and leaves no process behind."""

from __future__ import annotations

import psutil
import pytest

from simlab.real.peers.coats import COATS, hop_cpu, pending_memory

pytestmark = [pytest.mark.real, pytest.mark.timeout(300)]


@pytest.mark.parametrize("name", list(COATS))
def test_a_coat_holds_its_operations_and_counts_its_hops(name: str) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    coat = COATS[name]
    small, large = pending_memory(coat, 100), pending_memory(coat, 20_000)
    # 19,900 more pending operations, each with its own timer and state, take memory.
    # Fewer would not do: in CI a JVM holding 5,000 Kotlin coroutines once measured
    # 0.45 MiB less than one holding 100; at these sizes what its heap has touched
    # moves more than 4,900 coroutines take (about 2.8 MiB at 0.57 KiB each).
    assert large["pss"] + large["kernel"] > small["pss"] + small["kernel"]
    h = hop_cpu(coat, concurrency=10, hops=5, ms=100)
    assert h["rounds"] >= 1
    assert h["requests"] == 10 * h["rounds"]
    assert h["wall_s"] >= 0.1
    assert h["cpu_s"] > 0
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before
