"""The JSON contract, key for key: saved outputs of ``simulate``, ``compare`` and
``plan`` on fixed scenarios, against what this version prints.

A change to any of these keys, strings or numbers is a change to what simlab
tells its users. Numbers are compared to a relative 1e-9, not to the last bit:
a new numpy or pandas may sum in another order and move the 16th digit of a
mean, which tells nobody anything new. When a change is meant (a bug fixed, a
key added), regenerate the files with ``SIMLAB_UPDATE_GOLDEN=1 pytest
tests/test_golden.py`` and say what changed, and why, in CHANGELOG.md. They run
against the tests' frozen cpython profile.
"""

from __future__ import annotations

import json
import math
import os
import shlex
from pathlib import Path

import pytest

from simlab.cli import main

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
CASES = {
    "compare_c10k": "compare",
    "plan_c10k": "plan",
    "simulate_async_theory": "simulate async --theory --duration 20",
    "simulate_reactor_ideal": "simulate reactor-pool --platform ideal --rate 500 "
    "--connections 2000 --cpu-dist exp --io-dist exp --theory --duration 20",
    "simulate_reactor_p4": "simulate reactor-pool --processes 4 --connections 40 --rate 100 "
    "--duration 10",
    "simulate_tpc_short": "simulate thread-per-connection --requests-per-connection 3 "
    "--duration 10 --connections 500 --rate 200",
    "simulate_tp_fast": "simulate thread-pool --platform ideal --requests-per-connection 1 "
    "--engine auto --rate 400 --duration 20 --theory",
    "simulate_ppc": "simulate process-per-connection --connections 300 --rate 100 "
    "--duration 10 --processes 2",
    "simulate_iter": "simulate iterative --connections 4 --requests-per-connection 1 "
    "--rate 20 --duration 20 --theory",
    "compare_jvm": "compare --platform jvm --duration 10",
    "compare_go_closed": "compare --platform go --think-ms 200 --connections 500 "
    "--duration 10 --replications 3",
    "compare_adpar": "compare --scenario ad-service-parallel --platform jvm --cores 8 "
    "--processes 4 --duration 5 --replications 2 --models async,reactor-pool --workers 300",
    "plan_max_conn": "plan --max-connections --memory-gib 4",
    "plan_max_rate": "plan --max-rate --analytic",
    "plan_ad_analytic": "plan --scenario ad-service --platform jvm --cores 8 --analytic "
    "--slo-p99-ms 7000",
    "plan_ideal": "plan --platform ideal --connections 1000 --rate 300 --cpu-dist exp "
    "--io-dist exp --slo-p99-ms 80 --models reactor-pool,async,thread-per-connection",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_json_output_is_unchanged(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*shlex.split(CASES[name]), "--json"])
    out = capsys.readouterr().out
    assert code == 0
    path = GOLDEN / f"{name}.json"
    if os.environ.get("SIMLAB_UPDATE_GOLDEN"):
        path.write_text(out)
    difference = _first_difference(json.loads(path.read_text()), json.loads(out), "")
    assert difference is None, f"simlab {CASES[name]} --json changed at {difference}"


def _first_difference(want: object, got: object, where: str) -> str | None:
    """Where ``got`` first departs from ``want``: a key, a length, a type or a value."""
    if isinstance(want, dict) and isinstance(got, dict):
        if list(want) != list(got):
            return f"{where or '/'}: keys {list(want)} -> {list(got)}"
        for key in want:
            found = _first_difference(want[key], got[key], f"{where}/{key}")
            if found is not None:
                return found
        return None
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return f"{where}: {len(want)} items -> {len(got)}"
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            found = _first_difference(w, g, f"{where}[{i}]")
            if found is not None:
                return found
        return None
    numbers = (int, float)
    if (
        isinstance(want, numbers)
        and isinstance(got, numbers)
        and not isinstance(want, bool)
        and not isinstance(got, bool)
        and type(want) is type(got)
    ):
        return (
            None
            if math.isclose(want, got, rel_tol=1e-9, abs_tol=1e-12)
            else (f"{where}: {want!r} -> {got!r}")
        )
    return None if want == got and type(want) is type(got) else f"{where}: {want!r} -> {got!r}"
