"""``simlab plan --burst``: the burst's parsing and errors, the remedies' logic
(with a stand-in simulation whose answers are set), and one small DES run."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest

from simlab.errors import UserError
from simlab.overload.burst import (
    BUDGET_TOKENS,
    LEAD_S,
    Burst,
    burst_schedule,
    check_burst,
    limit_candidates,
    parse_burst,
)
from simlab.overload.policy import Clients
from simlab.params import Architecture, Workload


def test_bursts_parse() -> None:
    assert parse_burst("2000/s for 10s") == Burst(2000.0, 10.0)
    assert parse_burst(" 500 / s for 1.5 min ") == Burst(500.0, 90.0)
    assert parse_burst("300/s for 250ms") == Burst(300.0, 0.25)
    s = burst_schedule(100.0, Burst(300.0, 5.0), 20.0)
    assert s.rate_at(LEAD_S - 0.1) == 100.0 and s.rate_at(LEAD_S + 1) == 300.0
    assert s.rate_at(LEAD_S + 5.1) == 100.0 and s.settles_at() == LEAD_S + 5.0


@pytest.mark.parametrize(
    "text", ["", "2000", "2000/s", "-5/s for 10s", "100/s for 0s", "abc/s for 1s", "1/s for xs"]
)
def test_bad_bursts_are_refused(text: str) -> None:
    with pytest.raises(UserError):
        parse_burst(text)


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simlab", "plan", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (("--burst", "lots"), "--burst"),
        (("--burst", "0/s for 10s"), "--burst"),
        (("--rate", "100", "--burst", "50/s for 10s"), "--burst"),
        (("--rate", "100/s for 10s, 300/s for 5s", "--burst", "500/s for 2s"), "--burst"),
        (("--rate", "100", "--timeout-ms", "500"), "--timeout-ms"),
        (("--rate", "100", "--burst", "500/s for 2s", "--max-rate"), "--burst"),
        (("--rate", "100", "--burst", "500/s for 2s", "--recover-within-s", "0"), "--recover"),
        (("--rate", "100", "--burst", "500/s for 2s", "--retries", "-1"), "--retries"),
    ],
)
def test_bad_burst_options_are_one_line_exit_2(argv: tuple[str, ...], flag: str) -> None:
    r = _cli("--analytic", *argv)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0], r.stderr


def test_limit_candidates_follow_the_pool_or_the_timeout() -> None:
    assert limit_candidates(8, 2, 100.0, None) == [128, 64, 32, 16]
    assert limit_candidates(None, 1, 100.0, Clients(timeout=0.5)) == [400, 200, 100, 50]


@dataclass
class _Overload:
    recovery: Any
    goodput_rps: float = 10.0
    timeouts: int = 0
    retries: int = 0
    wasted_share: float | None = None


@dataclass
class _Recovery:
    recovered_s: float | None


@dataclass
class _Summary:
    overload: _Overload
    throughput_rps: float = 10.0


def _stand_in(answer: Any) -> Any:
    """A simulation whose recovery is ``answer(workload, architecture)``."""
    calls: list[tuple[Workload, Architecture]] = []

    def simulate(w: Workload, a: Architecture) -> _Summary:
        calls.append((w, a))
        return _Summary(_Overload(_Recovery(answer(w, a))))

    simulate.calls = calls  # type: ignore[attr-defined]
    return simulate


WORKLOAD = Workload(connections=1000, rate=100.0, clients=Clients(timeout=1.0, retries=3))
ARCH = Architecture(workers=8)
BURST = Burst(300.0, 10.0)


def test_a_plan_that_survives_tries_no_remedy() -> None:
    sim = _stand_in(lambda w, a: 4.0)
    b = check_burst("thread-pool", WORKLOAD, ARCH, BURST, recover_within=30.0, simulate=sim)
    assert b.plain.survives and b.limited is None and b.budgeted is None
    assert b.recommendation == "survives as planned"
    ((w, _),) = sim.calls
    assert w.schedule is not None and w.schedule.peak == 300.0


def test_recovering_too_late_is_not_surviving() -> None:
    sim = _stand_in(lambda w, a: 31.0)
    b = check_burst("thread-pool", WORKLOAD, ARCH, BURST, recover_within=30.0, simulate=sim)
    assert not b.plain.survives and b.plain.recovered_s == 31.0


def test_the_largest_limit_that_works_and_the_budget_are_recommended() -> None:
    def answer(w: Workload, a: Architecture) -> float | None:
        if a.limits is not None and a.limits.max_inflight is not None:
            return 2.0 if a.limits.max_inflight <= 32 else None
        if w.clients is not None and w.clients.budget is not None:
            return 10.0
        return None

    sim = _stand_in(answer)
    b = check_burst("thread-pool", WORKLOAD, ARCH, BURST, recover_within=30.0, simulate=sim)
    assert not b.plain.survives
    assert b.tried_limits == [64, 32] and b.limited is not None and b.limited.max_inflight == 32
    assert b.budgeted is not None and b.budgeted.retry_budget == BUDGET_TOKENS
    text = b.recommendation
    assert "concurrency limit of 32" in text and "retry budget" in text
    assert b.to_dict()["survives"] is False


def test_no_remedy_that_works_says_so_and_no_budget_without_retries() -> None:
    sim = _stand_in(lambda w, a: None)
    calm = Workload(connections=1000, rate=100.0, clients=Clients(timeout=1.0))
    b = check_burst("thread-pool", calm, ARCH, BURST, recover_within=30.0, simulate=sim)
    assert b.budgeted is None and b.tried_limits == [64, 32, 16, 8]
    assert b.recommendation.startswith("does not survive: needs more capacity")


def test_the_storm_plan_under_a_burst_end_to_end() -> None:
    # The retry storm's server: a x3 burst with retries tips it over, and the
    # planner finds a concurrency limit that brings it back (the DES, 1 replication).
    r = _cli(
        "--rate", "100", "--connections", "5000", "--requests-per-connection", "1",
        "--cpu-ms", "1", "--io-ms", "50", "--models", "thread-pool", "--analytic",
        "--burst", "300/s for 10s", "--timeout-ms", "1000", "--retries", "3",
        "--recover-within-s", "20", "--replications", "1", "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    (plan,) = out["burst"]["plans"]
    assert plan["model"] == "thread-pool" and plan["survives"] is False
    assert plan["limited"]["survives"] is True
    assert "concurrency limit" in plan["recommendation"]
