"""Pure pieces: config parsing, globs, metric reading, the keep rule, durations."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from overnight.config import MetricSection, parse_config, parse_duration
from overnight.errors import ConfigError
from overnight.executors.metrics import read, summary_values
from overnight.globs import Rules, matches
from overnight.process.logsink import Sink
from overnight.secrets import REDACTED, Secrets, is_secret

MINIMAL = {"task": {"run": "python train.py", "editable": ["train.py"]}, "metric": {"name": "loss"}}


def test_config_defaults() -> None:
    config = parse_config(MINIMAL)
    assert config.task.budget_s == 300 and config.task.timeout_s == 600
    assert config.metric.goal == "min" and config.judge.min_delta == 0
    assert config.agent.kind == "tune"
    assert config.task.editable == ("train.py",)
    short = parse_config({**MINIMAL, "task": {**MINIMAL["task"], "budget_s": 2}})
    assert short.task.timeout_s == 62  # a short budget still leaves a minute for start-up on a busy machine


def test_config_accepts_a_single_glob_string_and_integers_for_floats() -> None:
    config = parse_config({**MINIMAL, "task": {"run": "x", "editable": "*.py", "budget_s": 20, "timeout_s": 25}})
    assert config.task.editable == ("*.py",) and config.task.timeout_s == 25.0


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


@pytest.mark.parametrize(
    ("path", "patterns", "expected"),
    [
        ("train.py", ["train.py"], True),
        ("train.py", ["*.py"], True),
        ("src/train.py", ["*.py"], False),
        ("src/train.py", ["**/*.py"], True),
        ("train.py", ["**/*.py"], True),
        ("src/a/b.py", ["src"], True),
        ("src/a/b.py", ["src/"], True),
        ("srcx/b.py", ["src"], False),
        ("model_v2.py", ["model_v?.py"], True),
        ("model_v2.py", ["model_v[13].py"], False),
        ("model_v2.py", ["model_v[!13].py"], True),
        ("a.py", ["./a.py"], True),
    ],
)
def test_globs(path: str, patterns: list[str], expected: bool) -> None:
    assert matches(path, patterns) is expected


def test_protected_wins_over_editable_and_outside_is_never_editable() -> None:
    rules = Rules(editable=("*.py",), protected=("prepare.py",))
    assert rules.allows("train.py") and not rules.allows("prepare.py") and not rules.allows(None)
    assert rules.violations({"t/prepare.py": "prepare.py", "t/train.py": "train.py", "x.py": None}) == [
        "t/prepare.py",
        "x.py",
    ]


KARPATHY = """\
step 100 | loss 2.3
---
val_bpb:          0.997900
training_seconds: 300.1
peak_vram_mb:     45060.2
num_params_M:     50.3
"""


def test_summary_lines() -> None:
    values = summary_values(KARPATHY + "val_bpb: 0.9\nnot a metric: abc\n  indented: 1e-3\n")
    assert values == {
        "val_bpb": 0.9,
        "training_seconds": 300.1,
        "peak_vram_mb": 45060.2,
        "num_params_M": 50.3,
        "indented": 0.001,
    }


def _metric(**kw: str) -> MetricSection:
    return MetricSection(**{"name": "val_bpb", **kw}).check("t")


def test_read_summary_metric(tmp_path: Path) -> None:
    reading = read(_metric(), KARPATHY, tmp_path)
    assert reading.value == 0.9979 and reading.metrics["training_seconds"] == 300.1


@pytest.mark.parametrize(
    ("text", "reason"),
    [("val_bpb: nan\n", "is nan"), ("val_bpb: inf\n", "is inf"), ("loss: 1\n", "no 'val_bpb: <number>' line")],
)
def test_unusable_metric_is_no_metric(tmp_path: Path, text: str, reason: str) -> None:
    reading = read(_metric(), text, tmp_path)
    assert reading.value is None and reason in reading.reason


def test_read_pattern(tmp_path: Path) -> None:
    reading = read(_metric(pattern=r"bpb=([\d.]+)"), "bpb=1.5\nbpb=1.25\n", tmp_path)
    assert reading.value == 1.25
    assert read(_metric(pattern=r"bpb=([\d.]+)"), "nothing", tmp_path).reason.startswith("pattern")


def test_read_json_file(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text(json.dumps({"val_bpb": 0.5, "steps": 10, "note": "x", "flag": True}))
    reading = read(_metric(file="m.json"), "", tmp_path)
    assert reading.value == 0.5 and reading.metrics == {"val_bpb": 0.5, "steps": 10.0}
    (tmp_path / "m.json").write_text(json.dumps({"val_bpb": "nan"}))
    assert "is nan" in read(_metric(file="m.json"), "", tmp_path).reason
    (tmp_path / "m.json").write_text("{oops")
    assert "not valid JSON" in read(_metric(file="m.json"), "", tmp_path).reason
    assert "did not write" in read(_metric(file="other.json"), "", tmp_path).reason


def test_evaluator_output_is_the_only_source_of_the_metric(tmp_path: Path) -> None:
    reading = read(_metric(command="python eval.py"), "val_bpb: 0.1\nsteps: 5\n", tmp_path, "val_bpb: 0.7\n")
    assert reading.value == 0.7 and reading.metrics["steps"] == 5
    assert read(_metric(command="e"), "val_bpb: 0.1\n", tmp_path, "").value is None


NOT_CREDENTIALS = ["HF_HOME", "HF_DATASETS_CACHE", "HF_HUB_OFFLINE", "HUGGINGFACE_HUB_CACHE", "TOKENIZERS_PARALLELISM",
                   "AWS_REGION", "OPENAI_BASE_URL", "PATH", "PWD", "KEYRING_BACKEND", "MONKEY_PATCH",
                   "AIDER_MAP_TOKENS", "MAX_TOKENS"]  # fmt: skip
CREDENTIALS = ["OPENAI_API_KEY", "HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "MY_TOKEN", "DB_PASSWORD",
               "GITHUB_PAT", "ANTHROPIC_AUTH_TOKEN", "SSH_AUTH_SOCK", "GOOGLE_APPLICATION_CREDENTIALS", "apiKey",
               "STRIPE_KEY2", "smtp_pass", "ngrok_authtoken"]  # fmt: skip


@pytest.mark.parametrize("name", NOT_CREDENTIALS)
def test_a_name_that_merely_contains_a_credential_word_is_no_credential(name: str) -> None:
    assert not is_secret(name)


@pytest.mark.parametrize("name", CREDENTIALS)
def test_credential_words_are_whole_words_of_the_name(name: str) -> None:
    assert is_secret(name)


def test_experiments_keep_their_settings_and_only_credentials_are_redacted() -> None:
    env = {name: f"value-of-{name}" for name in NOT_CREDENTIALS + CREDENTIALS}
    found = Secrets.of(env)
    kept = found.scrub(env)
    assert [n for n in NOT_CREDENTIALS if n in kept] == [n for n in NOT_CREDENTIALS if n != "OPENAI_BASE_URL"]
    assert not set(CREDENTIALS) & set(kept)  # the LLM providers' settings go too, the credentials of course
    assert found.redact(env["OPENAI_BASE_URL"] + env["HF_HOME"] + env["HF_TOKEN"]) == (
        env["OPENAI_BASE_URL"] + env["HF_HOME"] + REDACTED
    )
    assert set(found.scrub(env, keep=["HF_TOKEN"], prefixes=("OPENAI_",))) - set(kept) == {
        "HF_TOKEN", "OPENAI_API_KEY", "OPENAI_BASE_URL"
    }  # fmt: skip


def test_a_secret_split_across_pieces_is_redacted_and_the_rest_is_not_held_back() -> None:
    redactor = Secrets.of({"MY_TOKEN": "tok-abcdefgh", "API_KEY": "abcdefgh"}).stream()
    out = [redactor.feed(piece) for piece in (b"line 1\n", b"x tok-ab", b"cd", b"efgh y ab", b"cdefgh", b" tok-a")]
    assert out[0] == b"line 1\n"  # nothing that could start a secret: written at once
    assert b"".join(out) + redactor.end() == b"line 1\nx [redacted] y [redacted] tok-a"
    assert not any(b"abcdefgh" in b"".join(out[: i + 1]) for i in range(len(out)))


def test_a_sink_writes_nothing_after_finish_even_if_the_stream_goes_on(tmp_path: Path, monkeypatch) -> None:
    raised: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: raised.append(args.exc_value))
    read_end, write_end = os.pipe()
    path = tmp_path / "log"
    with open(path, "ab", buffering=0) as file:
        stream = open(read_end, "rb")  # noqa: SIM115 (the sink closes it; closing it here would wait on its read)
        sink = Sink(stream, file, cap=0, secrets=Secrets.of({"MY_TOKEN": "tok-abcdefgh"}))
        os.write(write_end, b"before tok-abc")  # an escaped process keeps the pipe open
        deadline = time.monotonic() + 60
        while path.read_bytes() != b"before " and time.monotonic() < deadline:  # the sink read it ("tok-abc" held back)
            time.sleep(0.01)
        sink.finish(timeout=0.1)
    os.write(write_end, b"after\n")  # the file is closed now: the copying thread must not write
    os.close(write_end)
    sink._thread.join(5)
    assert not sink._thread.is_alive() and raised == [] and sink.error is None
    assert path.read_bytes() == b"before tok-abc"


def test_cached_input_is_priced_at_its_own_rate_and_the_table_says_where_it_comes_from() -> None:
    from overnight.agents import prices

    sonnet = prices.rates("claude-sonnet-4-5-20250929")
    assert sonnet == prices.Rates(3.0, 15.0, 0.3, 3.75)
    # 1000 input tokens of which 600 read from the cache and 100 written to it, 200 out
    assert prices.cost("claude-sonnet-4-5", 1000, 200, cached=600, written=100) == pytest.approx(
        (300 * 3.0 + 600 * 0.3 + 100 * 3.75 + 200 * 15.0) / 1e6
    )
    assert prices.cost("openai/gpt-5.4", 1000, 0, cached=1000) == pytest.approx(1000 * 0.25 / 1e6)
    # configured prices know no cache discount: every input token at the configured rate
    assert prices.cost("local-model", 1000, 0, 2.0, 8.0, cached=500) == pytest.approx(1000 * 2.0 / 1e6)
    assert prices.rates("gpt-7-turbo") is None and prices.READ_ON and prices.SOURCE.startswith("https://")


def test_repeats_above_the_default_cap_raise_the_cap() -> None:
    assert parse_config({**MINIMAL, "judge": {"repeats": 3}}).judge.max_repeats == 3
    with pytest.raises(ConfigError, match="max_repeats: expected at least repeats"):
        parse_config({**MINIMAL, "judge": {"repeats": 3, "max_repeats": 1}})
