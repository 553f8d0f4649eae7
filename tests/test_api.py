"""The public API is what __all__ says, and nothing moves by accident."""

import overnight

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
