"""One scenario builder: the command line, a sweep file and the dashboard build the
same scenario from the same options, with the same defaults; one data root decides
whether a calibrated profile replaces a preset, for the API and the CLI alike; bad
input is a one-line error and anything else a bug."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import simlab
from simlab.cli import build_parser, main
from simlab.cli.simulate import scenario_of
from simlab.dashboard.compute import Scenario
from simlab.paths import DATA_ENV
from simlab.scenario import build
from simlab.sweep.spec import parse_spec

ARGS = (
    "--connections 500 --rate 200 --cpu-ms 2 --io-ms 20 --calls 2 --fanout parallel "
    "--workers 8 --processes 2 --platform ideal --cores unlimited"
)
TOML = """
models = ["async"]
[base]
connections = 500
rate = 200
cpu_ms = 2
io_ms = 20
calls = 2
fanout = "parallel"
workers = 8
processes = 2
platform = "ideal"
cores = "unlimited"
[grid]
seed = [1]
"""


def _three_ways(args: str, toml: str, controls: Scenario) -> list[tuple[object, ...]]:
    cli = scenario_of(build_parser().parse_args(["simulate", "async", *args.split()]))
    sweep = build(parse_spec(toml).points()[0])
    dash = controls.built()
    return [(s.workload, s.platform, s.architecture) for s in (cli, sweep, dash)]


def test_the_same_options_build_the_same_scenario_three_ways() -> None:
    controls = Scenario(
        connections=500, rate=200.0, cpu_ms=2.0, io_ms=20.0, calls=2, fanout="parallel",
        workers=8, processes=2, platform="ideal", cores=None,
    )  # fmt: skip
    cli, sweep, dash = _three_ways(ARGS, TOML, controls)
    assert cli == sweep == dash


def test_the_defaults_are_the_same_everywhere() -> None:
    empty = 'models = ["async"]\n[grid]\nseed = [1]\n'
    cli, sweep, dash = _three_ways("", empty, Scenario.default())
    assert cli == sweep == dash
    api = simlab.simulate("async", duration=1, warmup=0, replications=1).summary
    assert (api.workload, api.platform, api.architecture) == cli


def test_the_data_root_decides_the_profile_for_the_api_and_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # With a calibrated cpython profile in the data root, "cpython" is that
    # profile; without one, the preset. The API and the CLI agree both ways.
    quick = ["--duration", "1", "--warmup", "0", "--replications", "1", "--json"]
    for root, parse in ((os.environ[DATA_ENV], 328.93), (str(tmp_path), 37.0)):
        monkeypatch.setenv(DATA_ENV, root)
        assert main(["simulate", "async", *quick]) == 0
        cli = json.loads(capsys.readouterr().out)["platform"]
        api = simlab.load_platform("cpython").describe()
        assert cli == api
        assert round(cli["parse_us"], 2) == parse
    # --help says so.
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    assert "$SIMLAB_DATA/profiles/" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["simulate", "async", "--workers", "0"], "--workers"),
        (["simulate", "async", "--cpu-dist", "lognormal:-1"], "--cpu-dist"),
        (["compare", "--set", "nosuch=1"], "--set"),
        (["simulate", "async", "--platform", "nowhere"], "--platform"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    argv: list[str], names: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own checks exit directly
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and names in err, err


def test_anything_else_is_a_bug_said_as_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # An internal ValueError is not the user's fault: it must not look like bad input.
    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("an internal mistake")

    monkeypatch.setattr("simlab.simulation.simulate", broken)
    code = main(["simulate", "async", "--duration", "1"])
    err = capsys.readouterr().err
    assert code == 1
    assert "internal error" in err and "a bug" in err and "ValueError" in err
    assert "test_scenario.py" in err  # where it happened
    assert "Traceback" not in err
