"""The real coding CLIs, pinned, against a scripted model on 127.0.0.1 (tests/fakes/model_server.py).

`.ci/run` installs them into `.clis/` (`npm install --prefix .clis ...`, versions in
CLI_VERSIONS); where a program is not installed its tests skip and say how to install it.
Each runs as overnight runs it, in a home folder of its own, pointed at the loopback server
by its own setting (Claude Code: ANTHROPIC_BASE_URL); the model edits the task's file through
the program's own edit tool.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

from conftest import Repo, ledger_rows, overnight_process
from fakes.model_server import ModelServer, Script

CLIS = Path(os.environ.get("OVERNIGHT_CLIS", Path(__file__).parent.parent / ".clis")) / "node_modules" / ".bin"
CLI_VERSIONS = {"claude": "@anthropic-ai/claude-code@2.1.332"}

pytestmark = pytest.mark.slow


def _real(tool: str) -> Path:
    path = CLIS / tool
    if not path.exists():
        pytest.skip(f"the real {tool} is not installed: npm install --prefix .clis {CLI_VERSIONS[tool]} (.ci/run does)")
    return path


def _checkout(repo: Path) -> dict[str, bytes]:
    skip = {repo / ".git", repo / ".overnight"}
    return {
        str(p.relative_to(repo)): p.read_bytes()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and not any(p == s or s in p.parents for s in skip)
    }


def _run_claude(task: Repo, server: ModelServer, tmp_path: Path, tag: str, *extra: str) -> tuple[int, str]:
    home = tmp_path / f"home-{tag}"
    home.mkdir()
    env = {
        "PATH": f"{_real('claude').parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),  # its settings, sessions and projects: not the user's
        "ANTHROPIC_BASE_URL": server.url,
        "ANTHROPIC_API_KEY": "sk-ant-scripted-0000",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # no telemetry, no update check: nothing leaves the machine
        "PWD": str(task.path),
    }
    proc = overnight_process("run", task.path, "--tag", tag, "--agent", "claude", "--model", "sonnet",
                             "--max-experiments", "1", *extra, env=env, cwd=task.path)  # fmt: skip
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out + err


def test_real_claude_code_edits_through_its_edit_tool_and_the_change_is_kept(task: Repo, tmp_path: Path) -> None:
    before = _checkout(task.path)
    with ModelServer(Script()) as server:
        code, output = _run_claude(task, server, tmp_path, "cc")
    assert code == 0, output
    rows = ledger_rows(task.path, "cc")
    assert [r["status"] for r in rows] == ["baseline", "keep"], output
    row = rows[1]
    assert (row["metric"], row["hypothesis"], row["agent"]) == (2, "move X from 10 to 4", "claude")
    assert row["tokens_in"] and row["tokens_in"] >= 300 and row["tokens_out"]  # its own usage, every turn summed
    assert row["cost_usd"] and row["cost_usd"] > 0  # priced by Claude Code itself
    assert "X = 4" in task.git("show", "overnight/cc:train.py")
    assert _checkout(task.path) == before  # the user's files, byte for byte
    tools = [{t.get("name") for t in r["body"].get("tools", [])} for r in server.requests]
    assert any("Edit" in t for t in tools)  # the program's own tools were offered and used
    brief = next(r["body"] for r in server.requests if r["body"].get("tools"))
    assert "Make score small." in str(brief["messages"])  # program.md reached the model


def test_real_claude_code_failing_mid_proposal_is_rejected_with_its_own_message(task: Repo, tmp_path: Path) -> None:
    with ModelServer(Script(error=400)) as server:
        code, output = _run_claude(task, server, tmp_path, "err")
    assert code == 0, output
    row = ledger_rows(task.path, "err")[1]
    assert row["status"] == "rejected", row
    assert "claude failed" in row["reason"] and "scripted 400 error" in row["reason"], row["reason"]


def test_real_claude_code_hanging_past_the_agent_timeout_is_killed(task: Repo, tmp_path: Path) -> None:
    with ModelServer(Script(hang=300)) as server:
        code, output = _run_claude(task, server, tmp_path, "hang", "--agent-timeout", "20")
    assert code == 0, output
    row = ledger_rows(task.path, "hang")[1]
    assert row["status"] == "rejected" and "ran past the agent timeout of 20s" in row["reason"], row
    left = [p for p in _processes() if "claude" in p and str(task.path) in p]
    assert not left, left


def _processes() -> list[str]:
    """Every process's command line and folder, as one string each."""
    found = []
    for p in psutil.process_iter(["cmdline", "cwd"]):
        with contextlib.suppress(psutil.Error):
            found.append(" ".join(p.info["cmdline"] or []) + " " + (p.info["cwd"] or ""))
    return found


def test_the_pinned_versions_are_the_ones_installed() -> None:
    claude = _real("claude")
    version = subprocess.run([str(claude), "--version"], capture_output=True, text=True, timeout=60).stdout
    assert version.split()[0] == CLI_VERSIONS["claude"].rsplit("@", 1)[1]
    assert shutil.which("node")
