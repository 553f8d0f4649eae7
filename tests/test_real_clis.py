"""The real coding CLIs, pinned, against a scripted model on 127.0.0.1 (tests/fakes/model_server.py).

`.ci/run` installs them into `.clis/` (`npm install --prefix .clis ...`, versions in
CLI_VERSIONS); where a program is not installed its tests skip and say how to install it.
Each runs as overnight runs it, in a home folder of its own, pointed at the loopback server
by its own setting (Claude Code: ANTHROPIC_BASE_URL; Codex: a model provider in its
config.toml with the Responses wire API; Gemini CLI: GOOGLE_GEMINI_BASE_URL and an auth type
in its settings.json; opencode: the anthropic provider's baseURL in its opencode.json); the model edits the task's file through the
program's own edit tool (Claude Code's Edit, Codex's apply_patch, Gemini CLI's replace, opencode's edit).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from conftest import Repo, checkout_files, ledger_rows, overnight_process
from fakes.llm_server import FakeLLM
from fakes.model_server import ModelServer, Script
from test_llm_agents import GOOD

CLIS = Path(os.environ.get("OVERNIGHT_CLIS", Path(__file__).parent.parent / ".clis"))
CLI_VERSIONS = {
    "claude": "@anthropic-ai/claude-code@2.1.332",
    "codex": "@openai/codex@0.171.0",
    "gemini": "@google/gemini-cli@0.61.0",
    "opencode": "opencode-ai@1.18.33",
    "aider": "aider-chat==0.86.2",  # from PyPI, in a venv of its own: .clis/aider-venv, linked from .clis/bin
}
MODELS = {
    "claude": "sonnet",
    "codex": "gpt-5.1-codex",
    "gemini": "gemini-2.5-pro",
    "opencode": "anthropic/claude-sonnet-4-5",
    "aider": "gpt-4o",  # aider asks gpt-4o for SEARCH/REPLACE blocks (its "diff" edit format)
}
TOOLS = list(CLI_VERSIONS)
CODEX_CONFIG = """\
model_provider = "scripted"

[model_providers.scripted]
name = "scripted model on 127.0.0.1"
base_url = "{url}/v1"
env_key = "OPENAI_API_KEY"
wire_api = "responses"
"""

pytestmark = pytest.mark.slow


def _real(tool: str) -> Path:
    path = CLIS / ("bin" if tool == "aider" else "node_modules/.bin") / tool
    if not path.exists():
        how = (
            "python3 -m venv .clis/aider-venv && .clis/aider-venv/bin/pip install aider-chat==0.86.2 && "
            "ln -s ../aider-venv/bin/aider .clis/bin/aider"
            if tool == "aider"
            else f"npm install --prefix .clis {CLI_VERSIONS[tool]}"
        )
        pytest.skip(f"the real {tool} is not installed: {how} (.ci/run does)")
    return path


def _server(tool: str, script: Script) -> ModelServer | FakeLLM:
    """The scripted model: tool calls for the programs that edit through tools, SEARCH/REPLACE text for aider."""
    if tool != "aider":
        return ModelServer(script)
    step: dict[str, object] = {"text": GOOD, "usage": script.usage}  # SEARCH/REPLACE: aider applies it itself
    if script.error:
        step = {"status": script.error, "message": f"scripted {script.error} error from the model server"}
    if script.hang:
        step = {**step, "delay": script.hang}
    return FakeLLM([step])


@pytest.fixture
def home() -> Iterator[Path]:
    """A home folder for the program, outside /tmp: Codex will not make its sandbox helpers under /tmp."""
    path = Path(tempfile.mkdtemp(prefix="overnight-cli-home-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _run(tool: str, task: Repo, server: ModelServer | FakeLLM, home: Path, tag: str, *extra: str) -> tuple[int, str]:
    """`overnight run --agent TOOL` from inside the user's checkout, as a user starts it."""
    env = {
        "PATH": f"{_real(tool).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),  # its settings, sessions and caches: not the user's
        "PWD": str(task.path),
    }
    if tool == "claude":
        env |= {
            "ANTHROPIC_BASE_URL": server.url,
            "ANTHROPIC_API_KEY": "sk-ant-scripted-0000",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # no telemetry, no update check
        }
    elif tool == "aider":
        # its price list from the package, not the network
        env |= {"OPENAI_API_BASE": f"{server.url}/v1", "OPENAI_API_KEY": "sk-scripted-0000",
                "LITELLM_LOCAL_MODEL_COST_MAP": "True"}  # fmt: skip
    elif tool == "opencode":
        # a user who wants to approve each edit: `opencode run` has nobody to ask (see OpenCode.settings_env)
        config = {
            "provider": {"anthropic": {"options": {"baseURL": f"{server.url}/v1"}}},
            "permission": {"edit": "ask"},
        }
        (home / ".config" / "opencode").mkdir(parents=True, exist_ok=True)
        (home / ".config" / "opencode" / "opencode.json").write_text(json.dumps(config))
        env |= {"ANTHROPIC_API_KEY": "sk-ant-scripted-0000", "OPENCODE_DISABLE_AUTOUPDATE": "1"}
    elif tool == "gemini":
        # With GOOGLE_GEMINI_BASE_URL set, Gemini CLI takes the auth type from its settings: the
        # variable alone selects a "gateway" auth it then refuses ("Invalid auth method selected").
        (home / ".gemini").mkdir(exist_ok=True)
        (home / ".gemini" / "settings.json").write_text('{"security": {"auth": {"selectedType": "gemini-api-key"}}}')
        env |= {"GEMINI_API_KEY": "scripted-0000", "GOOGLE_GEMINI_BASE_URL": server.url}
    else:
        (home / ".codex").mkdir(exist_ok=True)
        (home / ".codex" / "config.toml").write_text(CODEX_CONFIG.format(url=server.url))
        env |= {"OPENAI_API_KEY": "sk-scripted-0000"}
    proc = overnight_process("run", task.path, "--tag", tag, "--agent", tool, "--model", MODELS[tool],
                             "--max-experiments", "1", *extra, env=env, cwd=task.path)  # fmt: skip
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out + err


@pytest.mark.parametrize("tool", TOOLS)
def test_the_real_program_edits_through_its_own_tool_and_the_change_is_kept(task: Repo, home: Path, tool: str) -> None:
    before = checkout_files(task.path)
    with _server(tool, Script()) as server:
        code, output = _run(tool, task, server, home, "k")
    assert code == 0, output
    rows = ledger_rows(task.path, "k")
    assert [r["status"] for r in rows] == ["baseline", "keep"], output
    row = rows[1]
    assert (row["metric"], row["hypothesis"], row["agent"]) == (2, "move X from 10 to 4", tool)
    assert row["tokens_in"] and row["tokens_in"] >= 300 and row["tokens_out"]  # its own usage, every turn summed
    if tool == "claude":
        assert row["cost_usd"] and row["cost_usd"] > 0  # priced by Claude Code itself
    assert "X = 4" in task.git("show", "overnight/k:train.py")
    assert checkout_files(task.path) == before  # the user's files, byte for byte
    asked = [r["body"] for r in server.requests if r["body"].get("tools") or tool == "aider"]
    assert asked and "Make score small." in json.dumps(asked[0])  # program.md reached the model


@pytest.mark.parametrize("tool", TOOLS)
def test_the_real_program_failing_mid_proposal_is_rejected_with_its_own_message(
    task: Repo, home: Path, tool: str
) -> None:
    with _server(tool, Script(error=400)) as server:
        code, output = _run(tool, task, server, home, "err")
    assert code == 0, output
    row = ledger_rows(task.path, "err")[1]
    assert row["status"] == "rejected", row
    assert f"{tool} failed" in row["reason"] and "scripted 400 error" in row["reason"], row["reason"]
    assert "\x1b" not in row["reason"]  # the program's terminal colours are not part of its message


@pytest.mark.parametrize("tool", TOOLS)
def test_the_real_program_hanging_past_the_agent_timeout_is_killed(task: Repo, home: Path, tool: str) -> None:
    with _server(tool, Script(hang=300)) as server:
        code, output = _run(tool, task, server, home, "hang", "--agent-timeout", "20")
    assert code == 0, output
    row = ledger_rows(task.path, "hang")[1]
    assert row["status"] == "rejected" and "ran past the agent timeout of 20s" in row["reason"], row
    left = [p for p in _processes() if tool in p and str(task.path) in p]
    assert not left, left


def _processes() -> list[str]:
    """Every process's command line and folder, as one string each."""
    found = []
    for p in psutil.process_iter(["cmdline", "cwd"]):
        with contextlib.suppress(psutil.Error):
            found.append(" ".join(p.info["cmdline"] or []) + " " + (p.info["cwd"] or ""))
    return found


@pytest.mark.parametrize("tool", TOOLS)
def test_the_pinned_versions_are_the_ones_installed(tool: str) -> None:
    version = subprocess.run([str(_real(tool)), "--version"], capture_output=True, text=True, timeout=60).stdout
    assert re.split("@|==", CLI_VERSIONS[tool])[-1] in version.split()
