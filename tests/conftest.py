"""Shared fixtures: real git repositories in temp dirs, real subprocesses, a scripted agent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from overnight.cli import main

FAKES = Path(__file__).parent / "fakes"
AGENT = f"{sys.executable} {FAKES / 'agent.py'}"

# The experiment: score = (X - 3)^2 + 1, lower is better. Knobs let the agent make it
# sleep, crash, print something else, or leave a process behind.
TRAIN = """\
import os, sys, time
X = 10
SLEEP = 0
CRASH = 0
VALUE = None
if SLEEP:
    if os.environ.get("MARK_DIR"):
        open(os.path.join(os.environ["MARK_DIR"], f"pid-{os.environ['OVERNIGHT_EXPERIMENT_ID']}"), "w").write(str(os.getpid()))
    time.sleep(SLEEP)
if CRASH:
    sys.exit(CRASH)
print("---")
print(f"score: {VALUE if VALUE is not None else (X - 3) ** 2 + 1}")
print(f"budget: {os.environ['OVERNIGHT_BUDGET_S']}")
print(f"seed: {os.environ['OVERNIGHT_SEED']}")
"""

# A gate that fails when X goes negative, and a plan whose first seven experiments end
# keep, discard, crash, timeout (with timeout_s = 1.5), no_metric, gate_failed, rejected.
GATE = f"{sys.executable} -c \"import sys; sys.exit(1 if 'X = -' in open('train.py').read() else 0)\""
OUTCOMES_PLAN: dict[str, list[list[object]]] = {
    "1": [["set", "train.py", "X", "5"], ["print", "Hypothesis: move X toward 3"]],
    "2": [["set", "train.py", "X", "9"], ["print", "Hypothesis: X = 9"]],
    "3": [["set", "train.py", "CRASH", "3"]],
    "4": [["set", "train.py", "SLEEP", "30"]],
    "5": [["set", "train.py", "VALUE", "float('nan')"]],
    "6": [["set", "train.py", "X", "-1"]],
    "7": [["write", "helper.py", "VALUE = 2\n"], ["set", "train.py", "X", "4"]],
}

CONFIG = """\
[task]
run = "{python} train.py"
editable = ["train.py"]
budget_s = 5
timeout_s = {timeout}
{extra_task}
[metric]
name = "score"
goal = "min"
{extra_metric}
[judge]
min_delta = 0.0
exact = true  # the scripted train.py has no randomness: equal repeats are exact
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@dataclass
class Repo:
    path: Path

    def write(self, name: str, text: str) -> Path:
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def commit(self, message: str = "update") -> str:
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "-m", message)
        return git(self.path, "rev-parse", "HEAD").strip()

    def git(self, *args: str) -> str:
        return git(self.path, *args)

    def snapshot(self) -> dict[str, str]:
        """What a run must never change: branches, HEAD, index and working tree status."""
        return {
            "head": self.git("rev-parse", "HEAD"),
            "symbolic": self.git("symbolic-ref", "HEAD"),
            "branches": "\n".join(
                line
                for line in self.git("for-each-ref", "refs/heads", "--format=%(refname) %(objectname)").splitlines()
                if not line.startswith("refs/heads/overnight/")
            ),
            "status": self.git("status", "--porcelain", "--untracked-files=all"),
            "files": json.dumps({p.name: p.read_text() for p in sorted(self.path.glob("*")) if p.is_file()}),
        }


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "user.name", "Test")
    git(path, "config", "commit.gpgsign", "false")
    return Repo(path)


def task_config(timeout: float = 10, extra_task: str = "", extra_metric: str = "") -> str:
    return CONFIG.format(python=sys.executable, timeout=timeout, extra_task=extra_task, extra_metric=extra_metric)


def tune_task(repo: Repo, script: str, extra: str = "") -> str:
    """``repo`` made a task for the tune agent: ``script`` as train.py (it prints ``score: X``), 5 s budget,
    ``extra`` TOML after the [agent] section; committed. Returns the commit."""
    repo.write("train.py", script)
    repo.write("overnight.toml", f'[task]\nrun = "{sys.executable} train.py"\neditable = ["train.py"]\nbudget_s = 5\n'
               f'[metric]\nname = "score"\n[agent]\nkind = "tune"\n{extra}')  # fmt: skip
    repo.write("program.md", "Make score small.\n")
    return repo.commit("a task for the tune agent")


@pytest.fixture
def task(repo: Repo) -> Repo:
    """A committed task: train.py (editable), a protected helper, overnight.toml, program.md."""
    repo.write("train.py", TRAIN)
    repo.write("helper.py", "VALUE = 1\n")
    repo.write("overnight.toml", task_config())
    repo.write("program.md", "Make score small.\n")
    repo.commit("task")
    return repo


@pytest.fixture
def marks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder where experiments leave marks (pids, timings): $MARK_DIR."""
    path = tmp_path / "marks"
    path.mkdir()
    monkeypatch.setenv("MARK_DIR", str(path))
    return path


@pytest.fixture
def plan_dir(tmp_path: Path) -> Path:
    """Where the fake agent's plan is written (tests of sandboxed agents put it outside /tmp)."""
    return tmp_path


@pytest.fixture
def plan(plan_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, list[list[object]]]], Path]:
    """Write the fake agent's plan and point FAKE_PLAN at it."""

    def write(steps: dict[str, list[list[object]]]) -> Path:
        path = plan_dir / "plan.json"
        path.write_text(json.dumps(steps))
        monkeypatch.setenv("FAKE_PLAN", str(path))
        return path

    return write


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run the overnight CLI in this process; returns exit code and output."""

    def run(*args: str | Path) -> Result:
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def overnight_process(*args: str | Path, env: dict[str, str] | None = None, **kwargs: object) -> subprocess.Popen[str]:
    """Start the overnight CLI as a real process (for signals and kill -9)."""
    return subprocess.Popen(
        [sys.executable, "-m", "overnight", *map(str, args)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[arg-type]
    )


def checkout_files(repo: Path) -> dict[str, bytes]:
    """Every file of the user's checkout, byte for byte (git's internals and overnight's folder aside)."""
    skip = {repo / ".git", repo / ".overnight"}
    return {
        str(p.relative_to(repo)): p.read_bytes()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and not any(p == s or s in p.parents for s in skip)
    }


def ledger_rows(task_dir: Path, tag: str | None = None) -> list[dict[str, Any]]:
    """The run's experiments as `overnight log --format json` prints them."""
    args = [sys.executable, "-m", "overnight", "log", str(task_dir), "--format", "json"]
    out = subprocess.run([*args, "--tag", tag] if tag else args, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


@pytest.fixture
def outside() -> Iterator[Path]:
    """A folder outside /tmp: a sandboxed command sees the host's files, but not its /tmp."""
    path = Path(tempfile.mkdtemp(prefix="overnight-sandbox-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def agent_in(folder: Path) -> str:
    """The fake agent's command, run from a copy in ``folder`` (a checkout under /tmp is hidden in the sandbox)."""
    shutil.copy(FAKES / "agent.py", folder / "agent.py")
    return f"{sys.executable} {folder / 'agent.py'}"
