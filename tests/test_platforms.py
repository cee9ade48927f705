"""Presets and JSON profiles."""

from __future__ import annotations

import json

import pytest

from simlab import load_platform
from simlab.platforms import PRESETS


def test_presets():
    assert set(PRESETS) == {"ideal", "cpython", "jvm", "go"}
    ideal = load_platform("ideal")
    assert ideal.cores is None and not ideal.gil
    assert ideal.context_switch_us == ideal.parse_us == ideal.fork_us == 0
    assert load_platform("cpython-preset").gil
    jvm = load_platform("jvm")
    assert jvm.stack_kib == 1024 and not jvm.gil
    go = load_platform("go")
    assert go.stack_kib <= 8 and not go.gil
    for name, make in PRESETS.items():
        assert make.__doc__, f"preset {name} must document its sources"


def test_profile_file_overrides_its_base(tmp_path):
    f = tmp_path / "mine.json"
    f.write_text(
        json.dumps(
            {
                "name": "mine",
                "base": "jvm",
                "parameters": {"thread_kib": {"value": 70.0, "ci95": [65, 75]}, "cores": 8},
                "machine": {"cpu": "whatever"},
            }
        )
    )
    p = load_platform(str(f))
    assert p.name == "mine" and p.thread_kib == 70.0 and p.cores == 8 and p.stack_kib == 1024


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "cannot read profile"),
        ("[]", "must be a JSON object"),
        ('{"parameters": {"bogus": 1}}', "unknown parameter 'bogus'"),
        ('{"parameters": {"thread_kib": "a lot"}}', "thread_kib must be a number"),
        ('{"parameters": {"thread_kib": -4}}', "thread_kib"),
        ('{"base": "pdp11"}', "unknown base"),
    ],
)
def test_bad_profiles(tmp_path, content, message):
    f = tmp_path / "bad.json"
    f.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_platform(str(f))


def test_missing_profile():
    with pytest.raises(ValueError, match="no preset or profile file named 'nope'"):
        load_platform("nope")
