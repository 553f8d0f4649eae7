"""LLM agents end to end: whole `overnight run` loops through the real OpenAI and Anthropic SDKs
against a real HTTP server on 127.0.0.1 that speaks their wire formats."""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import Repo, ledger_rows
from fakes.llm_server import FakeLLM
from overnight.agents._base import Context
from overnight.agents.chat import Chat, OpenAIChat, Reply, output_limit_field
from overnight.agents.llm import LLMAgent
from overnight.config import parse_config
from overnight.errors import AgentError

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


def test_a_model_served_only_by_the_responses_api_is_reached_there(task: Repo, cli, keys) -> None:
    # Codex models answer Chat Completions 404 "only supported in v1/responses"; that was reported
    # as an unknown model. With [agent] api = "auto" (the default) the agent moves to /responses.
    with FakeLLM([{"text": GOOD, "usage": (1200, 300)}]) as server:
        result = _run(cli, task, server, "--model", "gpt-5.1-codex", "--max-experiments", "2")
    assert result.code == 0, result.err
    rows = ledger_rows(task.path, "llm")
    assert (rows[1]["status"], rows[1]["hypothesis"]) == ("keep", "move X from 10 to 4")
    assert (rows[1]["tokens_in"], rows[1]["tokens_out"]) == (1200, 300)
    paths = [r["path"] for r in server.requests]
    assert paths[0] == "/v1/chat/completions" and set(paths[1:]) == {"/v1/responses"}  # asked once, then remembered
    body = server.requests[1]["body"]
    assert body["model"] == "gpt-5.1-codex" and body["store"] is False
    assert "You are" in body["instructions"] and body["input"][0]["role"] == "user"
    assert "Make score small." in body["input"][0]["content"] and body["max_output_tokens"] > 0


def test_api_responses_goes_there_at_once_and_chat_never_does(task: Repo, cli, keys) -> None:
    task.write("overnight.toml", (task.path / "overnight.toml").read_text() + '\n[agent]\napi = "responses"\n')
    task.commit("responses api")
    with FakeLLM([{"text": GOOD}]) as server:
        result = _run(cli, task, server, "--max-experiments", "1")
    assert result.code == 0, result.err
    assert [r["path"] for r in server.requests] == ["/v1/responses"]
    task.write(
        "overnight.toml", (task.path / "overnight.toml").read_text().replace('api = "responses"', 'api = "chat"')
    )
    task.commit("chat api")
    with FakeLLM([{"text": GOOD}]) as server:
        result = _run(cli, task, server, "--model", "gpt-5.1-codex", "--max-experiments", "1", tag="chat")
    assert result.code == 6 and "only through the Responses API" in result.err and 'api = "auto"' in result.err


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


@pytest.mark.slow
def test_rate_limit_honours_retry_after_and_server_errors_are_retried(task: Repo, cli, keys) -> None:
    steps = [{"status": 429, "headers": {"Retry-After": "1"}}, {"status": 500}, {"status": 503}, {"text": GOOD}]
    with FakeLLM(steps) as server:
        result = _run(cli, task, server, "--max-experiments", "1")
    assert result.code == 0, result.err
    assert ledger_rows(task.path, "llm")[1]["status"] == "keep"
    times = [r["at"] for r in server.requests]
    assert len(times) == 4 and times[1] - times[0] >= 0.9  # waited as Retry-After asked


@pytest.mark.slow
def test_a_reply_slower_than_the_timeout_is_abandoned_and_retried(task: Repo, cli, keys) -> None:
    with FakeLLM([{"text": GOOD, "delay": 4}, {"text": GOOD}]) as server:
        result = _run(cli, task, server, "--max-experiments", "1", "--agent-timeout", "2")
    assert result.code == 0, result.err
    assert len(server.requests) == 2
    assert server.requests[1]["at"] - server.requests[0]["at"] < 3.5  # did not wait out the slow reply


def test_bad_credentials_stop_the_run_with_a_clear_message(task: Repo, cli, keys) -> None:
    with FakeLLM([{"status": 401}]) as server:  # the list of models (the probe) is not there: the proposal finds out
        result = _run(cli, task, server, "--max-experiments", "3", "--keep-failed")
    assert result.code == 6
    assert "openai refused the credentials (401)" in result.err and "OPENAI_API_KEY" in result.err
    assert len(server.requests) == 1  # no retries on auth errors
    rows = ledger_rows(task.path, "llm")
    assert [r["status"] for r in rows] == ["baseline", "rejected"]
    assert "refused the credentials" in rows[1]["reason"]


def test_a_new_run_whose_agent_made_no_proposal_is_removed_again(task: Repo, cli, keys) -> None:
    with FakeLLM([{"status": 401}]) as server:
        result = _run(cli, task, server, "--max-experiments", "3", tag="badkey")
    assert result.code == 6 and "openai refused the credentials (401)" in result.err
    assert "the run was removed again (its branch overnight/badkey" in result.err and "--keep-failed" in result.err
    assert not (task.path / ".overnight" / "badkey").exists() and "overnight/badkey" not in task.git("branch")
    assert "no runs of this task yet" in cli("runs", task.path).out


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


def test_the_cost_budget_stops_the_run(task: Repo, cli, keys) -> None:
    # gpt-4o-mini: $0.15 in and $0.60 out per million tokens; each reply costs $0.00027.
    worse = GOOD.replace("X = 4", "X = 20").replace("from 10 to 4", "from 10 to 20")
    with FakeLLM([{"text": worse, "usage": (1000, 200)}]) as server:
        result = _run(cli, task, server, "--model", "gpt-4o-mini", "--max-experiments", "9", "--max-cost-usd", "0.0005")
    assert result.code == 0, result.err
    assert len(ledger_rows(task.path, "llm")) == 3  # the baseline, then two replies: $0.00054 >= $0.0005
    assert "reached --max-cost-usd 0.0005 (spent $0.0005)" in result.out


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


@pytest.mark.parametrize(
    ("model", "field"),
    [("o4-mini", "max_completion_tokens"), ("openai/gpt-5", "max_completion_tokens"), ("local-model", "max_tokens")],
)
def test_reasoning_models_get_max_completion_tokens(task: Repo, cli, keys, model: str, field: str) -> None:
    with FakeLLM([{"text": GOOD}]) as server:
        result = _run(cli, task, server, "--model", model, "--max-experiments", "1")
    assert result.code == 0, result.err
    assert ledger_rows(task.path, "llm")[1]["status"] == "keep"
    [request] = server.requests
    limits = {k: v for k, v in request["body"].items() if k in ("max_tokens", "max_completion_tokens")}
    assert limits == {field: 8192}


def test_the_official_api_gets_max_completion_tokens_and_other_servers_max_tokens() -> None:
    assert output_limit_field("gpt-4o", "") == "max_completion_tokens"  # api.openai.com
    assert output_limit_field("gpt-4o", "http://localhost:8000/v1") == "max_tokens"
    assert output_limit_field("o3", "https://proxy.example/v1") == "max_completion_tokens"
    assert output_limit_field("olmo-2", "http://localhost:8000/v1") == "max_tokens"  # an "o", not o-series


def test_the_fake_refuses_max_tokens_for_reasoning_models_like_openai(keys) -> None:
    import openai

    with FakeLLM([{"text": "hello"}]) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="Unsupported parameter: 'max_tokens'"):
            client.chat.completions.create(model="o3", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
        reply = client.chat.completions.create(
            model="o3", messages=[{"role": "user", "content": "hi"}], max_completion_tokens=5
        )
    assert reply.choices[0].message.content == "hello"  # the refusal used up no scripted step


@pytest.mark.slow
def test_three_failed_calls_in_a_row_stop_the_run(task: Repo, cli, keys) -> None:
    with FakeLLM([{"status": 400}]) as server:
        result = _run(cli, task, server, "--max-experiments", "5", "--keep-failed")
    assert result.code == 6
    assert "openai failed 3 proposals in a row; last: openai call to " in result.err
    assert f"{server.url}/v1" in result.err and "failed after retries: BadRequestError" in result.err
    assert len(server.requests) == 3
    assert [r["status"] for r in ledger_rows(task.path, "llm")] == ["baseline", "rejected", "rejected", "rejected"]


class SlowChat(Chat):
    """A model that takes ``delay`` seconds to send edits that never apply."""

    provider = "openai"

    def __init__(self, delay: float) -> None:  # no SDK: nothing goes over the network
        self.model, self.base_url, self.max_output_tokens, self.delay = "m", "", 100, delay
        self.calls = 0

    def complete(self, system: str, messages: list[dict[str, str]], timeout_s: float) -> Reply:
        self.calls += 1
        time.sleep(self.delay)
        return Reply(WRONG_SEARCH, 10, 5)


def test_retries_cut_short_by_the_time_limit_count_the_tries_made(tmp_path: Path) -> None:
    config = parse_config({"task": {"run": "python train.py", "editable": ["train.py"]}, "metric": {"name": "score"}})
    (tmp_path / "train.py").write_text("X = 10\n")
    context = Context(
        experiment_id=1, program="Make score small.", config=config, worktree=tmp_path, task_dir=tmp_path,
        editable=("train.py",), baseline=50.0, best=50.0, best_commit="c0", history=(),
        log_path=tmp_path / "a.log", brief_path=tmp_path / "b.json",
    )  # fmt: skip
    chat = SlowChat(delay=0.6)
    agent = LLMAgent(chat, replace(config.agent, timeout_s=1.0, retries=5))
    with pytest.raises(AgentError) as caught:
        agent.propose(context)
    assert chat.calls == 2
    assert "did not apply after 2 tries (no time was left for more)" in str(caught.value)


def test_a_server_that_is_not_there_is_named_before_any_run_exists(task: Repo, cli, keys) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    result = cli("run", task.path, "--tag", "gone", "--agent", "openai", "--base-url", url, "--model", "m",
                 "--max-experiments", "1")  # fmt: skip
    assert result.code == 6
    assert f"openai at {url} could not be reached" in result.err and "check the server is up" in result.err
    assert "nothing was run: the agent is checked before any baseline" in result.err
    assert not (task.path / ".overnight" / "gone").exists() and "overnight/gone" not in task.git("branch", "--list")
    assert "no runs of this task yet" in cli("runs", task.path).out


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_refused_credentials_are_found_by_the_probe_before_the_baseline(task: Repo, cli, keys, provider) -> None:
    with FakeLLM([{"text": GOOD}], models=401) as server:
        result = _run(cli, task, server, "--max-experiments", "3", provider=provider, tag="badkey")
    assert result.code == 6
    assert f"{provider} refused the credentials (401)" in result.err and f"{provider.upper()}_API_KEY" in result.err
    assert server.listed and server.listed[0].endswith("/models") and server.requests == []  # no proposal asked
    assert not (task.path / ".overnight" / "badkey").exists()  # the newest run is still the one before


def test_a_server_without_a_list_of_models_passes_the_probe(task: Repo, cli, keys) -> None:
    with FakeLLM([{"text": GOOD}]) as server:  # GET /models: 404
        result = _run(cli, task, server, "--max-experiments", "1")
    assert result.code == 0, result.err
    assert server.listed == ["/v1/models"] and len(server.requests) == 1


def test_a_missing_model_and_a_missing_key_are_said_in_one_message(
    task: Repo, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for provider in ("openai", "anthropic"):
        result = cli("run", task.path, "--agent", provider)
        assert result.code == 6
        assert f"the {provider} agent needs a model: pass --model NAME" in result.err
        assert f"; and {provider.upper()}_API_KEY in the environment" in result.err
        assert not (task.path / ".overnight").exists()


# A reply that reached the output limit inside its second block, and the rest, sent when asked.
CUT_OFF = """Hypothesis: move X from 10 to 4 and say that it cannot crash
Note: X below 3 was never tried

train.py
<<<<<<< SEARCH
X = 10
=======
X = 4
>>>>>>> REPLACE

train.py
<<<<<<< SEARCH
CRASH = 0
=======
CRASH = 0  # this exp"""

REST = """train.py
<<<<<<< SEARCH
CRASH = 0
=======
CRASH = 0  # this experiment never crashes
>>>>>>> REPLACE
"""


def _said_last(request: dict) -> str:
    """The last thing the agent said to the model in ``request``, whichever the wire format."""
    body = request["body"]
    turns = body.get("messages") or body.get("input")
    return turns[-1]["content"]


@pytest.mark.parametrize(
    ("provider", "api", "path"),
    [
        ("openai", "chat", "/v1/chat/completions"),  # finish_reason "length"
        ("openai", "responses", "/v1/responses"),  # status "incomplete", incomplete_details.reason "max_output_tokens"
        ("anthropic", "auto", "/v1/messages"),  # stop_reason "max_tokens"
    ],
)
def test_a_reply_cut_off_at_the_output_limit_keeps_its_blocks_and_the_rest_is_asked_shorter(
    task: Repo, cli, keys, provider: str, api: str, path: str
) -> None:
    task.write("overnight.toml", (task.path / "overnight.toml").read_text() + f'\n[agent]\napi = "{api}"\n')
    task.commit(f"{api} api")
    with FakeLLM([{"text": CUT_OFF, "usage": (1000, 20), "cut_off": True}, {"text": REST}]) as server:
        result = _run(cli, task, server, "--max-experiments", "1", provider=provider)
    assert result.code == 0, result.err
    assert [r["path"] for r in server.requests] == [path, path]
    follow_up = _said_last(server.requests[1])
    assert "Your reply was cut off: it reached the output limit of 8192 tokens inside Block 2 (train.py)." in follow_up
    assert "Your block 1 applied and is in the files now; do not send it again." in follow_up
    assert "fewer and smaller blocks" in follow_up
    row = ledger_rows(task.path, "llm")[1]
    assert (row["status"], row["hypothesis"]) == ("keep", "move X from 10 to 4 and say that it cannot crash")
    assert row["tokens_out"] == 8192 + 20  # the cut-off reply used the whole limit
    kept = task.git("show", "overnight/llm:train.py")
    assert "X = 4\n" in kept and "CRASH = 0  # this experiment never crashes\n" in kept


PARTLY = """Hypothesis: move X from 10 to 4 and say that it cannot crash

train.py
<<<<<<< SEARCH
X = 10
=======
X = 4
>>>>>>> REPLACE

train.py
<<<<<<< SEARCH
CRASH = 1
=======
CRASH = 0  # this experiment never crashes
>>>>>>> REPLACE
"""


def test_blocks_that_apply_are_kept_and_only_the_failed_ones_are_asked_again(task: Repo, cli, keys) -> None:
    with FakeLLM([{"text": PARTLY}, {"text": REST}]) as server:
        result = _run(cli, task, server, "--max-experiments", "1")
    assert result.code == 0, result.err
    follow_up = _said_last(server.requests[1])
    assert "Your block 1 applied and is in the files now; do not send it again." in follow_up
    assert "Block 2 (train.py): the SEARCH lines do not match any lines of train.py" in follow_up
    assert "CRASH = 0" in follow_up and "Block 1 (train.py)" not in follow_up
    assert "Send again only the blocks that failed" in follow_up
    row = ledger_rows(task.path, "llm")[1]
    assert (row["status"], row["hypothesis"]) == ("keep", "move X from 10 to 4 and say that it cannot crash")
    kept = task.git("show", "overnight/llm:train.py")
    assert "X = 4\n" in kept and "CRASH = 0  # this experiment never crashes\n" in kept


def test_replies_cut_off_every_time_are_rejected_with_the_limit_named(task: Repo, cli, keys) -> None:
    with FakeLLM([{"text": CUT_OFF.split("train.py")[0] + "train.py\n<<<<<<< SEA", "cut_off": True}]) as server:
        result = _run(cli, task, server, "--max-experiments", "1", "--agent-retries", "1")
    assert result.code == 0, result.err
    follow_up = _said_last(server.requests[1])
    assert "output limit of 8192 tokens before any complete SEARCH/REPLACE block" in follow_up
    assert "Nothing was changed" in follow_up
    row = ledger_rows(task.path, "llm")[1]
    assert row["status"] == "rejected"
    assert (
        "2 of the model's replies were cut off at the output limit (8192 tokens; raise [agent] max_output_tokens)"
        in (row["reason"])
    )


def _context(folder: Path, train: bytes = b"X = 10\nCRASH = 0\n") -> Context:
    config = parse_config({"task": {"run": "python train.py", "editable": ["train.py"]}, "metric": {"name": "score"}})
    (folder / "train.py").write_bytes(train)
    return Context(
        experiment_id=1, program="Make score small.", config=config, worktree=folder, task_dir=folder,
        editable=("train.py",), baseline=50.0, best=50.0, best_commit="c0", history=(),
        log_path=folder / "a.log", brief_path=folder / "b.json",
    )  # fmt: skip


def test_notes_and_a_cut_off_reply_with_nothing_missing(tmp_path: Path, keys) -> None:
    # Cut off after its last block: the model is asked for the rest and answers that nothing is missing.
    first = (
        CUT_OFF.split("train.py\n<<<<<<< SEARCH\nCRASH")[0]
        + "Note: X = 4 should be close\nNote: X below 3 was never tried\n"
    )
    context = _context(tmp_path)
    with FakeLLM(
        [{"text": first, "cut_off": True}, {"text": "Hypothesis: move X to 4\nNote: one block was enough"}]
    ) as server:
        agent = LLMAgent(OpenAIChat("local-model", server.url + "/v1", 8192), context.config.agent)
        proposal = agent.propose(context)
    assert "If nothing is missing, reply with your Hypothesis line alone." in _said_last(server.requests[1])
    assert proposal.hypothesis == "move X to 4"
    assert proposal.notes == ("X below 3 was never tried", "X = 4 should be close", "one block was enough")
    assert (tmp_path / "train.py").read_text() == "X = 4\nCRASH = 0\n"


def test_a_latin_1_file_is_shown_and_edited_in_latin_1(tmp_path: Path, keys) -> None:
    context = _context(tmp_path, "# r\u00e9glage fin\nX = 10\nCRASH = 0\n".encode("latin-1"))
    with FakeLLM([{"text": GOOD.replace("X = 4", "X = 4  # d\u00e9j\u00e0 mieux")}]) as server:
        agent = LLMAgent(OpenAIChat("local-model", server.url + "/v1", 8192), context.config.agent)
        proposal = agent.propose(context)
    assert "# r\u00e9glage fin\nX = 10" in server.requests[0]["body"]["messages"][1]["content"]  # shown, decoded
    assert proposal.hypothesis == "move X from 10 to 4"
    assert (
        tmp_path / "train.py"
    ).read_bytes() == "# r\u00e9glage fin\nX = 4  # d\u00e9j\u00e0 mieux\nCRASH = 0\n".encode("latin-1")
