"""The kernel-memory probes of ``simlab.real.forklaw``, small and short, on loopback.

Each reads a memory cgroup of its own (root, cgroup memory controller): a
fork's kernel memory against its parent's size, what a connection waiting
in the listen backlog is charged, and what closed short connections leave.
"""

from __future__ import annotations

import pytest

from simlab.real import forklaw
from simlab.real.kernel import KernelAccount

pytestmark = [pytest.mark.real, pytest.mark.timeout(120)]


def _cgroup() -> None:
    account, why = KernelAccount.create()
    if account is None:
        pytest.fail(f"these probes need a memory cgroup: {why}")
    account.close()


def test_a_fork_pays_about_two_kib_of_page_tables_per_mib_of_its_parent() -> None:
    _cgroup()
    law = forklaw.measure_fork_law(ballasts=(0, 32), forks=(5, 25), repeats=1)
    small, big = law["points"]
    assert big["parent_pss_mib"] - small["parent_pss_mib"] > 30
    slope = (big["kernel_per_fork_kib"] - small["kernel_per_fork_kib"]) / (
        big["parent_pss_mib"] - small["parent_pss_mib"]
    )
    # 4 KiB of entries map 2 MiB on x86-64: 2 KiB per MiB, within the noise
    # of a 20-fork difference.
    assert 1.0 < slope < 4.0, law


def test_a_connection_in_the_backlog_is_charged_at_accept() -> None:
    _cgroup()
    out = forklaw.measure_backlog(n=100, repeats=1)
    row = out["repeats"][0]
    assert abs(row["waiting_kib"]["kernel"]) < 0.5, out
    assert row["at_accept_kib"]["kernel"] > 0.5, out


def test_a_closed_short_connection_leaves_nothing_in_the_servers_cgroup() -> None:
    _cgroup()
    out = forklaw.measure_short(n=200, repeats=1)
    for row in out["repeats"]:
        assert abs(row["held_after_close_kib"]["kernel"]) < 0.5, out
        assert row["time_wait_added"] > 0, out
