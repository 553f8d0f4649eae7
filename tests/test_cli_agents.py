"""Coding-CLI agents end to end: whole `overnight run` loops with `--agent claude|codex|gemini|opencode|aider`.

The programs are fakes (tests/fakes/bin) that check their flags like the real tools,
read the prompt the way each tool does, edit the worktree and print each tool's
documented output. FAKE_CLI_PLAN scripts what they do; FAKE_CLI_LOG records what they got.
The last tests run the real tools when they and their credentials are present.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import Repo, checkout_files

FAKE_BIN = Path(__file__).parent / "fakes" / "bin"
TOOLS = ("claude", "codex", "gemini", "opencode", "aider")
REAL_PATH = os.environ.get("PATH", "")
REAL = {tool: shutil.which(tool, path=REAL_PATH) for tool in TOOLS}  # before the fakes are put first
EDIT = ["train.py", "X", "4"]  # score (4 - 3)^2 + 1 = 2, from 50 at X = 10


class Fake:
    """Scripts the fake CLIs and reads back what they were given."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.plan_path = tmp_path / "cli_plan.json"
        self.log_path = tmp_path / "cli_calls.jsonl"
        # The fakes' `#!/usr/bin/env python3` finds this interpreter first: a version manager's
        # shim (pyenv's is a bash script) would reset $PWD, which the real programs read as given.
        here = Path(sys.executable).parent
        monkeypatch.setenv("PATH", os.pathsep.join((str(FAKE_BIN), str(here), REAL_PATH)))
        monkeypatch.setenv("FAKE_CLI_PLAN", str(self.plan_path))
        monkeypatch.setenv("FAKE_CLI_LOG", str(self.log_path))

    def plan(self, plan: dict[str, Any] | list[dict[str, Any]]) -> None:
        self.plan_path.write_text(json.dumps(plan))

    def calls(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fake:
    return Fake(tmp_path, monkeypatch)


def _run(cli: Callable[..., Any], task: Repo, tool: str, *extra: str, model: str | None = None) -> Any:
    args = ["run", task.path, "--tag", "cli", "--agent", tool, "--agent-timeout", "20", "--max-experiments", "1"]
    if model:
        args += ["--model", model]
    return cli(*args, *extra)


def _rows(cli: Callable[..., Any], task: Repo, tag: str = "cli") -> list[dict[str, Any]]:
    """The run's experiments as `overnight log --format json` prints them (in this process: faster)."""
    result = cli("log", task.path, "--tag", tag, "--format", "json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def _value(argv: list[str], flag: str) -> str | None:
    """The value that follows ``flag`` in ``argv``."""
    return argv[argv.index(flag) + 1] if flag in argv and argv.index(flag) + 1 < len(argv) else None


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _price(tokens_in: int, tokens_out: int, rates: tuple[float, float]) -> float:
    return (tokens_in * rates[0] + tokens_out * rates[1]) / 1e6


GPT_4O_MINI = (0.15, 0.60)  # prices.py
GEMINI_PRICES = (0.30, 2.50)  # configured in overnight.toml for the gemini case

# tool, model, plan, expected (tokens_in, tokens_out, cost_usd)
CASES = [
    ("claude", "sonnet", {"usage": [1000, 200], "cost": 0.0123}, (1000, 200, 0.0123)),
    # codex reports half of its input as read from the prompt cache: priced at gpt-4o-mini's cached rate, half the input's
    (
        "codex",
        "gpt-4o-mini",
        {"usage": [1000, 200], "reconnects": 2},
        (1000, 200, _price(500, 200, GPT_4O_MINI) + 500 * GPT_4O_MINI[0] / 2 / 1e6),
    ),
    ("gemini", "gemini-2.5-flash", {"usage": [4000, 300]}, (4000, 300, _price(4000, 300, GEMINI_PRICES))),
    ("opencode", "anthropic/claude-haiku-4-5", {"usage": [3000, 150], "cost": 0.0042}, (3000, 150, 0.0042)),
    ("aider", "gpt-4o-mini", {"usage": [1800, 300], "cost": 0.02, "reflect": True}, (1800, 300, 0.02)),
]


@pytest.mark.parametrize(("tool", "model", "plan", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_cli_edit_is_kept_with_its_hypothesis_tokens_and_cost(
    task: Repo, cli, fake: Fake, tool: str, model: str, plan: dict[str, Any], expected: tuple[int, int, float]
) -> None:
    if tool == "gemini":  # the Gemini CLI reports no cost and this model has no listed price
        prices = "\n[agent]\ninput_usd_per_mtok = 0.30\noutput_usd_per_mtok = 2.50\n"
        task.write("overnight.toml", (task.path / "overnight.toml").read_text() + prices)
        task.commit("prices")
    hypothesis = f"move X to 4 with {tool}"
    fake.plan({"set": EDIT, "hypothesis": hypothesis, **plan})
    result = _run(cli, task, tool, model=model)
    assert result.code == 0, result.err
    rows = _rows(cli, task)
    assert [r["status"] for r in rows] == ["baseline", "keep"]
    row = rows[1]
    assert (row["metric"], row["hypothesis"], row["agent"]) == (2, hypothesis, tool)
    assert (row["tokens_in"], row["tokens_out"]) == expected[:2]
    assert row["cost_usd"] == pytest.approx(expected[2])
    assert "X = 4" in task.git("show", "overnight/cli:train.py")

    [call] = fake.calls()
    assert call["tool"] == tool
    argv, prompt = call["argv"], call["prompt"]
    cwd = Path(call["cwd"]).resolve()
    assert cwd.is_relative_to((task.path / ".overnight" / "cli").resolve())  # the experiment's worktree
    assert "Make score small." in prompt  # program.md, verbatim
    assert "train.py" in prompt and "X = 10" in prompt  # the editable file as it is at the best
    assert "Hypothesis: <one line" in prompt  # the CLI rules
    if tool == "claude":
        assert argv[0] == "-p" and _value(argv, "--output-format") == "json"
        assert _value(argv, "--permission-mode") == "acceptEdits" and _value(argv, "--model") == model
        assert prompt.startswith("You are a researcher")  # all of it from stdin
    elif tool == "codex":
        assert argv[:2] == ["exec", "--json"] and _value(argv, "--sandbox") == "workspace-write"
        assert "--skip-git-repo-check" in argv and _value(argv, "-m") == model
        assert argv[-1] == "-" and prompt.startswith("You are a researcher")  # `-`: the prompt is stdin
    elif tool == "gemini":
        assert _value(argv, "-o") == "json" and _value(argv, "--approval-mode") == "auto_edit"
        assert _value(argv, "-m") == model
        instruction = _value(argv, "-p")
        assert instruction and prompt.endswith("\n\n" + instruction)  # stdin first, then -p
        assert prompt.startswith("You are a researcher")
    elif tool == "opencode":
        assert argv[:3] == ["run", "--format", "json"] and _value(argv, "-m") == model
        assert prompt.startswith(argv[-1] + "\n") and argv[-1].startswith("Carry out")  # stdin after the message
    else:
        message_file = _value(argv, "--message-file")
        assert message_file and Path(message_file).read_text() == prompt
        for flag in ("--yes-always", "--no-auto-commits", "--no-dirty-commits", "--no-pretty", "--no-stream"):
            assert flag in argv
        assert _value(argv, "--model") == model and "-m" not in argv  # -m is aider's --message
        assert argv[-1] == "train.py" and call["files"] == ["train.py"]  # the editable files join the chat


@pytest.mark.parametrize("tool", TOOLS)
def test_started_from_the_users_checkout_each_cli_edits_only_the_worktree(
    task: Repo, cli, fake: Fake, tool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a user runs it: from inside the checkout, so the shell's PWD names it. opencode (like
    # the real one) takes its folder from $PWD; aider writes its histories and tags cache at the
    # git root. Nothing of that may reach the user's files, and the change must still be kept.
    monkeypatch.chdir(task.path)
    monkeypatch.setenv("PWD", str(task.path))
    before, status = checkout_files(task.path), task.git("status", "--porcelain")
    fake.plan({"set": EDIT, "hypothesis": f"X to 4 with {tool}", "cost": 0.001})
    result = _run(cli, task, tool, model=next(model for name, model, _, _ in CASES if name == tool))
    assert result.code == 0, result.err
    assert [r["status"] for r in _rows(cli, task)] == ["baseline", "keep"]
    assert checkout_files(task.path) == before
    assert task.git("status", "--porcelain") == status
    assert "X = 4" in task.git("show", "overnight/cli:train.py")
    committed = task.git("ls-tree", "-r", "--name-only", "overnight/cli")
    assert ".aider" not in committed
    if tool == "aider":  # its histories are kept beside the agent's log
        logs = task.path / ".overnight" / "cli" / "logs"
        assert any(logs.glob("*.aider.chat.history.md")) and any(logs.glob("*.aider.input.history"))
        assert not list((task.path / ".overnight" / "cli").rglob(".aider.tags.cache.v*"))


def test_claude_codes_verbose_setting_prints_an_array_of_events_and_the_result_is_read(
    task: Repo, cli, fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = tmp_path / "claude-config"
    settings.mkdir()
    (settings / "settings.json").write_text(json.dumps({"verbose": True}))
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(settings))
    fake.plan({"set": EDIT, "hypothesis": "X to 4, verbosely", "usage": [1000, 200], "cost": 0.0123})
    result = _run(cli, task, "claude", model="sonnet")
    assert result.code == 0, result.err
    row = _rows(cli, task)[1]
    assert (row["status"], row["hypothesis"], row["tokens_in"], row["tokens_out"]) == (
        "keep",
        "X to 4, verbosely",
        1000,
        200,
    )
    assert row["cost_usd"] == pytest.approx(0.0123)


@pytest.mark.parametrize("tool", TOOLS)
def test_a_hypothesis_in_markdown_is_read_without_the_markup(task: Repo, cli, fake: Fake, tool: str) -> None:
    fake.plan({"set": EDIT, "hypothesis": "raise lr", "label": "**Hypothesis:**", "cost": 0.001})
    result = _run(cli, task, tool, model=next(model for name, model, _, _ in CASES if name == tool))
    assert result.code == 0, result.err
    assert _rows(cli, task)[1]["hypothesis"] == "raise lr"


COMMAND_AGENT = """\
import pathlib
path = pathlib.Path("train.py")
path.write_text(path.read_text().replace("X = 10", "X = 4"))
print("I moved X.")
print("**Hypothesis:** raise lr")
print("done")
"""


def test_the_command_agent_reads_its_hypothesis_like_the_clis(task: Repo, cli, tmp_path: Path) -> None:
    script = tmp_path / "agent.py"
    script.write_text(COMMAND_AGENT)
    command = f"{sys.executable} {script}"
    result = cli("run", task.path, "--tag", "cli", "--agent-command", command, "--max-experiments", "1")
    assert result.code == 0, result.err
    row = _rows(cli, task)[1]
    assert (row["agent"], row["status"], row["hypothesis"]) == ("command", "keep", "raise lr")


def test_a_cost_the_tool_does_not_report_is_unknown_for_an_unlisted_model(task: Repo, cli, fake: Fake) -> None:
    fake.plan({"set": EDIT, "hypothesis": "h", "usage": [1000, 200]})
    result = _run(cli, task, "codex", model="gpt-9-turbo")
    assert result.code == 0, result.err
    row = _rows(cli, task)[1]
    assert (row["status"], row["tokens_in"], row["tokens_out"], row["cost_usd"]) == ("keep", 1000, 200, None)
    assert _value(fake.calls()[0]["argv"], "-m") == "gpt-9-turbo"


def test_codex_without_a_model_passes_no_model_flag(task: Repo, cli, fake: Fake) -> None:
    fake.plan({"set": EDIT, "hypothesis": "h"})
    result = _run(cli, task, "codex")
    assert result.code == 0, result.err
    assert "-m" not in fake.calls()[0]["argv"]
    assert _rows(cli, task)[1]["cost_usd"] is None


@pytest.mark.parametrize(
    ("plan", "expected"),
    [
        # no prices for the model: no Cost part, priced from prices.py
        ({"usage": [2500, 117], "cost": None}, (2500, 117, _price(2500, 117, GPT_4O_MINI))),
        # cache counts, and the Cost part on its own line
        ({"usage": [12000, 344], "cost": 0.0093, "cache": [2100, 8400]}, (12000, 344, 0.0093)),
    ],
    ids=["no-cost-line", "cache-and-cost-line"],
)
def test_aider_usage_lines(task: Repo, cli, fake: Fake, plan: dict[str, Any], expected: tuple) -> None:
    fake.plan({"set": EDIT, "hypothesis": "h", **plan})
    result = _run(cli, task, "aider", model="gpt-4o-mini")
    assert result.code == 0, result.err
    row = _rows(cli, task)[1]
    assert (row["status"], row["tokens_in"], row["tokens_out"]) == ("keep", *expected[:2])
    assert row["cost_usd"] == pytest.approx(expected[2])


# tool, plan, exit code, what the reason must say
ERRORS = [
    ("claude", {"usage": [500, 20]}, 1, "error_max_turns: Reached maximum number of turns (1)"),
    ("claude", {"subtype": "success", "message": "Invalid API key · Please run /login"}, 1, "Invalid API key"),
    ("codex", {"reconnects": 3}, 1, "exceeded retry limit, last status: 401 Unauthorized"),
    ("gemini", {}, 41, "Please set an Auth method"),
    ("gemini", {"error_type": "ApiError", "message": "Quota exceeded for gemini-2.5-pro"}, 1, "Quota exceeded"),
    ("opencode", {"message": "invalid x-api-key"}, 1, "invalid x-api-key"),
    ("aider", {}, 0, "not able to authenticate you"),
]


@pytest.mark.parametrize(
    ("tool", "plan", "code", "says"),
    ERRORS,
    ids=["claude", "claude-api", "codex", "gemini-auth", "gemini-api", "opencode", "aider"],
)
def test_each_cli_error_form_rejects_the_experiment_with_the_tools_message(
    task: Repo, cli, fake: Fake, tool: str, plan: dict[str, Any], code: int, says: str
) -> None:
    fake.plan({"mode": "error", "set": EDIT, **plan})
    result = _run(cli, task, tool, model="anthropic/claude-haiku-4-5" if tool == "opencode" else "m")
    assert result.code == 0, result.err
    row = _rows(cli, task)[1]
    assert row["status"] == "rejected"
    assert row["reason"].startswith(f"{tool} failed (exit code {code}): ")
    assert says in row["reason"]
    assert "Reconnecting" not in row["reason"] and "DeprecationWarning" not in row["reason"]
    if plan.get("usage"):  # what a failed call still cost is counted
        assert (row["tokens_in"], row["tokens_out"]) == tuple(plan["usage"])
    assert len(fake.calls()) == 1


# claude: nothing on stderr, so the adapter's own words; gemini: its stderr's last line (a Node warning here)
@pytest.mark.parametrize(("tool", "says"), [("claude", "no JSON result on stdout"), ("gemini", "trace-deprecation")])
def test_output_that_is_not_the_tools_format_rejects_the_experiment(
    task: Repo, cli, fake: Fake, tool: str, says: str
) -> None:
    fake.plan({"mode": "garbage"})
    result = _run(cli, task, tool, model="m")
    assert result.code == 0, result.err
    row = _rows(cli, task)[1]
    assert row["status"] == "rejected" and row["reason"].startswith(f"{tool} failed (exit code 0): ")
    assert says in row["reason"]


def test_three_failures_in_a_row_stop_the_run(task: Repo, cli, fake: Fake) -> None:
    fake.plan({"mode": "error", "message": "stream disconnected before completion"})
    result = _run(cli, task, "codex", "--max-experiments", "5", "--keep-failed", model="gpt-4o-mini")
    assert result.code == 6
    assert "codex failed 3 proposals in a row" in result.err
    assert "last: codex failed (exit code 1): stream disconnected before completion" in result.err
    assert len(fake.calls()) == 3
    rows = _rows(cli, task)
    assert [r["status"] for r in rows] == ["baseline", "rejected", "rejected", "rejected"]
    assert "failed 3 proposals in a row" in rows[3]["reason"]


def test_a_success_resets_the_failure_count(task: Repo, cli, fake: Fake) -> None:
    error = {"mode": "error", "message": "overloaded"}
    fake.plan([error, error, {"set": EDIT, "hypothesis": "h", "cost": 0.001}, error, error])
    result = _run(cli, task, "opencode", "--max-experiments", "5", model="anthropic/claude-haiku-4-5")
    assert result.code == 0, result.err
    statuses = [r["status"] for r in _rows(cli, task)]
    assert statuses == ["baseline", "rejected", "rejected", "keep", "rejected", "rejected"]


@pytest.mark.slow
def test_a_hanging_cli_is_killed_at_the_timeout_with_its_whole_tree(task: Repo, cli, fake: Fake) -> None:
    fake.plan({"mode": "hang"})
    started = time.monotonic()
    # 5 s: time for the fake (a Python program) to start and note its call, even on a busy machine
    result = cli(
        "run", task.path, "--tag", "cli", "--agent", "claude", "--agent-timeout", "5", "--max-experiments", "1"
    )
    elapsed = time.monotonic() - started
    assert result.code == 0, result.err
    assert elapsed >= 5  # the timeout, then SIGTERM; the child ignores it, so SIGKILL after the runner's grace
    row = _rows(cli, task)[1]
    assert row["status"] == "rejected" and "ran past the agent timeout of 5s and was killed" in row["reason"]
    [call] = fake.calls()
    assert call["child"] != call["pid"]
    deadline = time.monotonic() + 60
    while (_alive(call["pid"]) or _alive(call["child"])) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(call["pid"]), "the CLI outlived its timeout"
    assert not _alive(call["child"]), "the CLI's child (which ignores SIGTERM and left the session) outlived it"


def test_a_missing_program_is_a_clear_error(task: Repo, cli, fake: Fake, tmp_path: Path, monkeypatch) -> None:
    only = tmp_path / "bin"
    only.mkdir()
    (only / "codex").symlink_to(FAKE_BIN / "codex")
    path = [only, *(p for p in REAL_PATH.split(os.pathsep) if p and not shutil.which("claude", path=p))]
    monkeypatch.setenv("PATH", os.pathsep.join(map(str, path)))
    result = cli("run", task.path, "--agent", "claude", "--model", "sonnet", "--max-experiments", "1")
    assert result.code == 6
    assert "`claude` program on PATH" in result.err and "npm install -g @anthropic-ai/claude-code" in result.err
    assert fake.calls() == []


# one bad command line per fake: they refuse what the real tools refuse
BAD = [
    (["claude", "-p", "--output-format", "json", "--permission-mode", "acceptEdits", "--bogus"], 1, "unknown option"),
    (["claude", "--output-format", "json", "--permission-mode", "acceptEdits"], 1, "-p"),
    (["claude", "-p", "--output-format", "json", "--permission-mode", "yes"], 1, "Allowed choices"),
    (["codex", "exec", "--json", "--sandbox", "workspace-write", "--bogus", "-"], 2, "unexpected argument"),
    (["codex", "exec", "--json", "--sandbox", "workspace-write", "-"], 1, "--skip-git-repo-check"),  # not a repo
    (["codex", "exec", "--json", "--skip-git-repo-check", "-"], 1, "read-only"),
    (["codex", "exec", "--sandbox", "workspace-write", "--skip-git-repo-check", "-"], 1, "--json"),
    (["gemini", "-p", "go", "-o", "json", "--approval-mode", "auto_edit", "--bogus"], 1, "Unknown arguments"),
    (["gemini", "-p", "go", "-o", "json"], 1, "approval-mode"),
    (["opencode", "run", "--format", "json", "--bogus", "go"], 1, "Unknown argument"),
    (["opencode", "run", "go"], 1, "--format json"),
    (["aider", "--message", "go", "--yes-always", "--bogus"], 2, "unrecognized arguments"),
    (["aider", "--message-file", "/nonexistent/prompt.md", "--yes-always"], 1, "message file"),
]


@pytest.mark.parametrize(("argv", "code", "says"), BAD, ids=[f"{b[0][0]}-{i}" for i, b in enumerate(BAD)])
def test_the_fakes_refuse_bad_command_lines(tmp_path: Path, argv: list[str], code: int, says: str) -> None:
    env = {**os.environ, "FAKE_CLI_LOG": str(tmp_path / "log.jsonl"), "FAKE_CLI_PLAN": ""}
    done = subprocess.run(
        [str(FAKE_BIN / argv[0]), *argv[1:]], cwd=tmp_path, input="a prompt", capture_output=True, text=True, env=env
    )
    assert (done.returncode, done.stdout) == (code, "")
    assert says in done.stderr
    assert not (tmp_path / "log.jsonl").exists()


# -- the real tools, when they are installed and have credentials ---------------------------

REAL_CASES = {
    # tool: (credential variables, any one will do; model, overridable with OVERNIGHT_TEST_<TOOL>_MODEL)
    "claude": (("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"), "haiku"),
    "codex": (("CODEX_API_KEY",), ""),
    "gemini": (("GEMINI_API_KEY",), "gemini-2.5-flash"),
    "opencode": (("ANTHROPIC_API_KEY",), "anthropic/claude-haiku-4-5"),
    "aider": (("ANTHROPIC_API_KEY",), "anthropic/claude-haiku-4-5"),
}


@pytest.mark.parametrize("tool", TOOLS)
def test_the_real_cli_runs_one_experiment(task: Repo, cli, tool: str) -> None:
    variables, model = REAL_CASES[tool]
    if REAL[tool] is None or not any(os.environ.get(v) for v in variables):
        pytest.skip(f"needs the real `{tool}` on PATH and one of {', '.join(variables)}")
    model = os.environ.get(f"OVERNIGHT_TEST_{tool.upper()}_MODEL", model)
    args = ["run", task.path, "--tag", "real", "--agent", tool, "--agent-timeout", "600", "--max-experiments", "1"]
    result = cli(*args, *(["--model", model] if model else []))
    assert result.code == 0, result.err
    row = _rows(cli, task, "real")[1]
    assert row["agent"] == tool
    assert row["status"] in ("keep", "discard"), row["reason"]
    assert row["tokens_in"] > 0 and row["hypothesis"]


def test_a_cost_budget_that_cannot_be_counted_is_refused_before_anything_starts(task: Repo, cli, fake: Fake) -> None:
    # codex reports tokens, not dollars, and this model is in no price table: --max-cost-usd
    # would never stop the run. Claude Code reports its own cost, so its alias needs no table.
    fake.plan({"set": EDIT, "hypothesis": "X to 4", "cost": 0.001})
    result = _run(cli, task, "codex", "--max-cost-usd", "1", model="gpt-7-turbo-preview")
    assert result.code == 2
    assert "--max-cost-usd cannot be kept: no price is known for the model 'gpt-7-turbo-preview'" in result.err
    assert "input_usd_per_mtok" in result.err and "--max-tokens" in result.err
    assert not (task.path / ".overnight").exists() and not fake.calls()
    result = _run(cli, task, "claude", "--max-cost-usd", "1", model="sonnet")
    assert result.code == 0, result.err
    priced = "\n[agent]\ninput_usd_per_mtok = 1.0\noutput_usd_per_mtok = 4.0\n"
    task.write("overnight.toml", (task.path / "overnight.toml").read_text() + priced)
    task.commit("prices")
    result = cli("run", task.path, "--tag", "priced", "--agent", "codex", "--model", "gpt-7-turbo-preview",
                 "--max-cost-usd", "1", "--max-experiments", "1", "--agent-timeout", "20")  # fmt: skip
    assert result.code == 0, result.err
    row = _rows(cli, task, "priced")[1]
    assert row["cost_usd"] == pytest.approx((row["tokens_in"] * 1.0 + row["tokens_out"] * 4.0) / 1e6)


def test_opencode_edits_even_where_the_users_config_says_ask(
    task: Repo, cli, fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `opencode run` has nobody to ask: with "edit": "ask" in the user's config the real one rejects
    # the edit and the proposal ended as no_change. overnight allows edits (only edits) over it.
    config = tmp_path / "xdg" / "opencode"
    config.mkdir(parents=True)
    (config / "opencode.json").write_text(json.dumps({"permission": {"edit": "ask", "bash": "ask"}}))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("OPENCODE_CONFIG_CONTENT", json.dumps({"permission": {"bash": "deny"}, "share": "disabled"}))
    fake.plan({"set": EDIT, "hypothesis": "X to 4 despite ask", "cost": 0.001})
    result = _run(cli, task, "opencode", model="anthropic/claude-haiku-4-5")
    assert result.code == 0, result.err
    assert [r["status"] for r in _rows(cli, task)] == ["baseline", "keep"]

    from overnight.agents.opencode import OpenCode
    from overnight.config import AgentSection

    told = json.loads(OpenCode(AgentSection(kind="opencode")).settings_env()["OPENCODE_CONFIG_CONTENT"])
    assert told == {"permission": {"bash": "deny", "edit": "allow"}, "share": "disabled"}  # the user's, plus edits
