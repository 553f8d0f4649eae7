"""The public API is what __all__ says, nothing moves by accident, and reading a run loads no write side."""

import subprocess
import sys

import overnight
from conftest import AGENT, Repo

PUBLIC = {
    "AGENTS",
    "EXECUTORS",
    "Agent",
    "AgentError",
    "AgentUnavailable",
    "CommandAgent",
    "Config",
    "ConfigError",
    "Context",
    "DirtyTreeError",
    "Executor",
    "Experiment",
    "GitError",
    "Goal",
    "Job",
    "Ledger",
    "Limits",
    "LocalExecutor",
    "Measurement",
    "OvernightError",
    "Proposal",
    "Run",
    "RunResult",
    "RunStateError",
    "Controller",
    "RunState",
    "Status",
    "Summary",
    "Task",
    "Usage",
    "TaskBrokenError",
    "__version__",
    "load_config",
    "make_agent",
    "make_executor",
    "parse_config",
    "run_command",
}


def test_all_is_pinned() -> None:
    assert set(overnight.__all__) == PUBLIC
    for name in overnight.__all__:
        assert hasattr(overnight, name), name


def test_statuses() -> None:
    assert [s.value for s in overnight.Status] == [
        "running",
        "baseline",
        "keep",
        "discard",
        "crash",
        "timeout",
        "no_metric",
        "gate_failed",
        "rejected",
        "no_change",
        "duplicate",
        "stale",
        "interrupted",
    ]


def test_every_error_derives_from_the_root() -> None:
    for name in (
        "AgentError",
        "AgentUnavailable",
        "ConfigError",
        "DirtyTreeError",
        "GitError",
        "RunStateError",
        "TaskBrokenError",
    ):
        assert issubclass(getattr(overnight, name), overnight.OvernightError)


WRITE_SIDE = ("overnight.run.loop", "overnight.run.controller", "overnight.judge.measure", "overnight.process", "overnight.agents",
              "overnight.executors", "overnight.run.state", "overnight.run.standing", "overnight.run.start",
              "overnight.run.handoff")  # fmt: skip


def _loaded(code: str) -> set[str]:
    """The overnight modules a fresh interpreter has loaded after running ``code``."""
    script = (
        f"{code}\nimport sys\nprint(' '.join(m for m in sys.modules if m.startswith('overnight')), file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stderr
    return set(out.split())


def _write_side(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == w or m.startswith(w + ".") for w in WRITE_SIDE))


def test_importing_the_package_loads_only_its_init() -> None:
    assert _loaded("import overnight") == {"overnight", "overnight._version"}
    assert "overnight.records" in _loaded("import overnight; overnight.Status")  # a name loads on first use


def test_the_read_side_loads_none_of_the_write_side() -> None:
    loaded = _loaded(
        "import overnight.views, overnight.views.dashboard, overnight.views.report, overnight.views.finalize"
    )
    assert _write_side(loaded) == []


def test_overnight_log_loads_none_of_the_write_side(task: Repo, plan, cli) -> None:
    plan({"*": [["set", "train.py", "X", "5"]]})
    assert cli("run", task.path, "--tag", "r", "--agent-command", AGENT, "--max-experiments", "1").code == 0
    for args in (["log", str(task.path)], ["status", str(task.path)], ["show", "1", str(task.path)]):
        loaded = _loaded(f"from overnight.cli import main; assert main({args!r}) == 0")
        assert "overnight.views" in loaded and _write_side(loaded) == [], args


def test_overnight_help_loads_only_the_command_line_grammar() -> None:
    loaded = _loaded(
        "from overnight.cli import main\nimport contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n    assert main([]) == 0"
    )
    # not the views, the config, the dashboard or git: `overnight --help` stays fast
    assert loaded == {"overnight", "overnight._version", "overnight.cli", "overnight.cli.grammar", "overnight.choices",
                      "overnight.errors"}  # fmt: skip
