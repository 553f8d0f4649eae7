"""overnight.toml parsed: defaults, coercions, errors that name the key, durations, the fingerprint."""

from __future__ import annotations

import pytest

from overnight.config import parse_config, parse_duration
from overnight.errors import ConfigError

MINIMAL = {"task": {"run": "python train.py", "editable": ["train.py"]}, "metric": {"name": "loss"}}


def test_config_defaults() -> None:
    config = parse_config(MINIMAL)
    assert config.task.budget_s == 300 and config.task.timeout_s == 600
    assert config.metric.goal == "min" and config.judge.min_delta == 0
    assert config.agent.kind == "tune"
    assert config.task.editable == ("train.py",)
    short = parse_config({**MINIMAL, "task": {**MINIMAL["task"], "budget_s": 2}})
    assert short.task.timeout_s == 62  # a short budget still leaves a minute for start-up on a busy machine


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"metric": {"name": "x"}}, "missing the [task] table"),
        ({**MINIMAL, "task": {"run": "x"}}, "[task] editable: required"),
        ({**MINIMAL, "task": {"run": "x", "editable": ["../up.py"]}}, "leaves the task folder"),
        ({**MINIMAL, "task": {"run": "x", "editable": ["a"], "budget_s": 0}}, "[task] budget_s: expected a positive"),
        ({**MINIMAL, "task": {"run": "x", "editable": [1]}}, "[task] editable: expected a list of strings"),
        ({**MINIMAL, "metric": {"name": "a", "pattern": "no group"}}, "exactly one capturing group"),
        ({**MINIMAL, "metric": {"name": "a", "pattern": "(x", "file": ""}}, "not a valid regular expression"),
        ({**MINIMAL, "metric": {"name": "a", "pattern": "(x)", "file": "m.json"}}, "either pattern or file"),
        ({**MINIMAL, "metric": {"name": "a:b"}}, "may not contain ':'"),
        ({**MINIMAL, "judge": {"min_delta": -1}}, "[judge] min_delta: expected a number >= 0"),
        ({**MINIMAL, "judge": {"min_delta": True}}, "[judge] min_delta: expected a number, got True"),
        ({**MINIMAL, "task": {"run": "x", "editable": ["a"], "colour": 1}}, "valid keys are: run, editable, protected"),
    ],
)
def test_config_errors_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, "t/overnight.toml")
    assert message in str(err.value)
    assert str(err.value).startswith("t/overnight.toml")


def test_fingerprint_ignores_the_agent() -> None:
    a = parse_config({**MINIMAL, "agent": {"kind": "command", "command": "a"}})
    b = parse_config({**MINIMAL, "agent": {"kind": "command", "command": "b"}})
    c = parse_config({**MINIMAL, "judge": {"min_delta": 0.1}})
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("30m", 1800), ("8h", 28800), ("1h30m", 5400), ("2d", 172800), ("1.5h", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "8 hours", "h", "-3", "0", "5x"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text)


def test_repeats_above_the_default_cap_raise_the_cap() -> None:
    assert parse_config({**MINIMAL, "judge": {"repeats": 3}}).judge.max_repeats == 3
    with pytest.raises(ConfigError, match="max_repeats: expected at least repeats"):
        parse_config({**MINIMAL, "judge": {"repeats": 3, "max_repeats": 1}})


def test_config_accepts_a_single_glob_string_and_integers_for_floats() -> None:
    config = parse_config({**MINIMAL, "task": {"run": "x", "editable": "*.py", "budget_s": 20, "timeout_s": 25}})
    assert config.task.editable == ("*.py",) and config.task.timeout_s == 25.0
