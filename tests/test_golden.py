"""The JSON contract, byte for byte: saved outputs of ``simulate``, ``compare`` and
``plan`` on fixed scenarios, against what this version prints.

A change to any of these bytes is a change to what simlab tells its users.
When one is meant (a bug fixed, a key added), regenerate the files with
``SIMLAB_UPDATE_GOLDEN=1 pytest tests/test_golden.py`` and say what changed,
and why, in CHANGELOG.md. They run against the tests' frozen cpython profile.
"""

from __future__ import annotations

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
    assert out == path.read_text(), f"simlab {CASES[name]} --json changed"
