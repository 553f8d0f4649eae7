"""LLM agents end to end: whole `overnight run` loops through the real OpenAI and Anthropic SDKs
against a real HTTP server on 127.0.0.1 that speaks their wire formats."""

from __future__ import annotations

import sys

import pytest

from conftest import Repo, ledger_rows
from fakes.llm_server import FakeLLM

GOOD = """I will move X closer to its optimum.

Hypothesis: move X from 10 to 4

train.py
```python
<<<<<<< SEARCH
X = 10
=======
X = 4
>>>>>>> REPLACE
```
"""

WRONG_SEARCH = """Hypothesis: set X to 4
train.py
<<<<<<< SEARCH
X = 11
=======
X = 4
>>>>>>> REPLACE
"""

PROTECTED = """Hypothesis: change the helper
helper.py
<<<<<<< SEARCH
VALUE = 1
=======
VALUE = 2
>>>>>>> REPLACE
"""


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")


def _run(cli, task: Repo, server: FakeLLM, *extra: str, provider: str = "openai", tag: str = "llm"):
    base = server.url + ("/v1" if provider == "openai" else "")
    model = [] if "--model" in extra else ["--model", "local-model"]  # a model with no known price
    return cli("run", task.path, "--tag", tag, "--agent", provider, "--base-url", base, *model, *extra)


def test_openai_edit_is_applied_measured_and_priced(task: Repo, cli, keys) -> None:
    with FakeLLM([{"text": GOOD, "usage": (1000, 200)}]) as server:
        result = _run(cli, task, server, "--model", "gpt-4o-mini", "--max-experiments", "1")
    assert result.code == 0, result.err
    row = ledger_rows(task.path, "llm")[1]
    assert (row["status"], row["metric"], row["hypothesis"]) == ("keep", 2, "move X from 10 to 4")
    assert (row["agent"], row["tokens_in"], row["tokens_out"]) == ("openai", 1000, 200)
    assert row["cost_usd"] == pytest.approx((1000 * 0.15 + 200 * 0.60) / 1e6)
    body = server.requests[0]["body"]
    assert body["model"] == "gpt-4o-mini" and body["messages"][0]["role"] == "system"
    brief = body["messages"][1]["content"]
    assert "Make score small." in brief  # program.md, verbatim
    assert "X = 10" in brief and "train.py" in brief  # the editable file's content at the best
    assert "current best: 50" in brief and "#0 baseline score=50" in brief
    assert server.requests[0]["headers"]["authorization"] == "Bearer sk-test"


def test_a_block_that_does_not_match_is_sent_back_with_the_real_lines(task: Repo, cli, keys) -> None:
    with FakeLLM([{"text": WRONG_SEARCH}, {"text": GOOD}]) as server:
        result = _run(cli, task, server, "--max-experiments", "1")
    assert result.code == 0, result.err
    assert ledger_rows(task.path, "llm")[1]["status"] == "keep"
    second = server.requests[1]["body"]["messages"]
    assert [m["role"] for m in second[1:]] == ["user", "assistant", "user"]
    feedback = second[-1]["content"]
    assert "Block 1 (train.py): the SEARCH lines do not match" in feedback and "X = 10" in feedback
    assert ledger_rows(task.path, "llm")[1]["tokens_in"] == 200  # both calls are counted


def test_edits_to_protected_files_are_refused_then_rejected(task: Repo, cli, keys) -> None:
    with FakeLLM([{"text": PROTECTED}]) as server:
        result = _run(cli, task, server, "--max-experiments", "1", "--agent-retries", "1")
    assert result.code == 0, result.err
    row = ledger_rows(task.path, "llm")[1]
    assert row["status"] == "rejected" and "did not apply after 2 tries" in row["reason"]
    assert (
        "helper.py is not editable. You may change only: train.py"
        in server.requests[1]["body"]["messages"][-1]["content"]
    )
    assert len(server.requests) == 2
    assert "VALUE = 1" in task.git("show", "overnight/llm:helper.py")


def test_rate_limit_honours_retry_after_and_server_errors_are_retried(task: Repo, cli, keys) -> None:
    steps = [{"status": 429, "headers": {"Retry-After": "1"}}, {"status": 500}, {"status": 503}, {"text": GOOD}]
    with FakeLLM(steps) as server:
        result = _run(cli, task, server, "--max-experiments", "1")
    assert result.code == 0, result.err
    assert ledger_rows(task.path, "llm")[1]["status"] == "keep"
    times = [r["at"] for r in server.requests]
    assert len(times) == 4 and times[1] - times[0] >= 0.9  # waited as Retry-After asked


def test_a_reply_slower_than_the_timeout_is_abandoned_and_retried(task: Repo, cli, keys) -> None:
    with FakeLLM([{"text": GOOD, "delay": 4}, {"text": GOOD}]) as server:
        result = _run(cli, task, server, "--max-experiments", "1", "--agent-timeout", "2")
    assert result.code == 0, result.err
    assert len(server.requests) == 2
    assert server.requests[1]["at"] - server.requests[0]["at"] < 3.5  # did not wait out the slow reply


def test_bad_credentials_stop_the_run_with_a_clear_message(task: Repo, cli, keys) -> None:
    with FakeLLM([{"status": 401}]) as server:
        result = _run(cli, task, server, "--max-experiments", "3")
    assert result.code == 6
    assert "openai refused the credentials (401)" in result.err and "OPENAI_API_KEY" in result.err
    assert len(server.requests) == 1  # no retries on auth errors
    rows = ledger_rows(task.path, "llm")
    assert [r["status"] for r in rows] == ["baseline", "rejected"]
    assert "refused the credentials" in rows[1]["reason"]


def test_anthropic_messages_api(task: Repo, cli, keys) -> None:
    with FakeLLM([{"text": GOOD, "usage": (3000, 100)}]) as server:
        result = _run(
            cli, task, server, "--model", "claude-sonnet-4-20250514", "--max-experiments", "1", provider="anthropic"
        )
    assert result.code == 0, result.err
    row = ledger_rows(task.path, "llm")[1]
    assert (row["status"], row["agent"], row["tokens_in"], row["tokens_out"]) == ("keep", "anthropic", 3000, 100)
    assert row["cost_usd"] == pytest.approx((3000 * 3 + 100 * 15) / 1e6)
    request = server.requests[0]
    headers = request["headers"]
    assert request["path"] == "/v1/messages" and "anthropic-version" in headers
    assert "sk-ant-test" in (headers.get("x-api-key", "") + headers.get("authorization", ""))
    assert request["body"]["system"].startswith("You are a researcher")


def test_the_same_edit_twice_is_a_duplicate_and_budgets_stop_the_run(task: Repo, cli, keys) -> None:
    worse = GOOD.replace("X = 4", "X = 20").replace("from 10 to 4", "from 10 to 20")
    with FakeLLM([{"text": worse, "usage": (500, 50)}]) as server:
        result = _run(cli, task, server, "--max-experiments", "5", "--max-tokens", "1500")
    assert result.code == 0, result.err
    rows = ledger_rows(task.path, "llm")
    assert [r["status"] for r in rows] == ["baseline", "discard", "duplicate", "duplicate"]
    assert "the same change as experiment 1" in rows[2]["reason"]
    assert "reached --max-tokens 1500" in result.out
    assert "#2 duplicate" in server.requests[2]["body"]["messages"][1]["content"]  # told to the agent


def test_a_missing_sdk_names_the_extra(task: Repo, cli, keys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)
    result = cli("run", task.path, "--agent", "openai", "--model", "m", "--max-experiments", "1")
    assert result.code == 6 and "pip install 'overnight[openai]'" in result.err


def test_a_missing_key_is_a_clear_error(task: Repo, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    result = cli("run", task.path, "--agent", "openai", "--model", "m")
    assert result.code == 6 and "OPENAI_API_KEY" in result.err


def test_a_missing_model_is_a_clear_error(task: Repo, cli, keys) -> None:
    result = cli("run", task.path, "--agent", "anthropic")
    assert result.code == 6 and "needs a model: pass --model" in result.err
