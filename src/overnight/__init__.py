"""overnight: the autonomous research loop, on anything measurable.

An agent proposes a change to the editable files of a task; the harness commits it,
runs the experiment under a time budget, reads the metric, keeps the change on the
run branch if it beats the best, and records everything in the ledger.

Importing the package loads nothing but this file: each public name is imported from
its module the first time it is used, so a tool that only reads runs (``overnight
log``, the dashboard) never loads the loop, the agents or the process code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from overnight._version import __version__

if TYPE_CHECKING:
    from overnight.agents import AGENTS, Agent, CommandAgent, Context, make_agent
    from overnight.config import Config, load_config, parse_config
    from overnight.errors import (
        AgentError,
        AgentUnavailable,
        ConfigError,
        DirtyTreeError,
        GitError,
        OvernightError,
        RunStateError,
        TaskBrokenError,
    )
    from overnight.executors import EXECUTORS, Executor, Job, LocalExecutor, Measurement, make_executor
    from overnight.process import run_command
    from overnight.records import Experiment, Goal, Proposal, RunResult, Status, Usage
    from overnight.run.controller import Controller, Limits, Summary
    from overnight.run.ledger import Ledger
    from overnight.run.start import Run
    from overnight.run.state import RunState
    from overnight.task import Task

# public name → the module that defines it
_HOMES = {
    "AGENTS": "agents",
    "Agent": "agents",
    "CommandAgent": "agents",
    "Context": "agents",
    "make_agent": "agents",
    "Config": "config",
    "load_config": "config",
    "parse_config": "config",
    "Controller": "run.controller",
    "Limits": "run.controller",
    "Summary": "run.controller",
    "AgentError": "errors",
    "AgentUnavailable": "errors",
    "ConfigError": "errors",
    "DirtyTreeError": "errors",
    "GitError": "errors",
    "OvernightError": "errors",
    "RunStateError": "errors",
    "TaskBrokenError": "errors",
    "EXECUTORS": "executors",
    "Executor": "executors",
    "Job": "executors",
    "LocalExecutor": "executors",
    "Measurement": "executors",
    "make_executor": "executors",
    "Ledger": "run.ledger",
    "run_command": "process",
    "Experiment": "records",
    "Goal": "records",
    "Proposal": "records",
    "RunResult": "records",
    "Status": "records",
    "Usage": "records",
    "Run": "run.start",
    "RunState": "run.state",
    "Task": "task",
}

__all__ = [
    "AGENTS",
    "EXECUTORS",
    "Agent",
    "AgentError",
    "AgentUnavailable",
    "CommandAgent",
    "Config",
    "ConfigError",
    "Context",
    "Controller",
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
    "RunState",
    "RunStateError",
    "Status",
    "Summary",
    "Task",
    "TaskBrokenError",
    "Usage",
    "__version__",
    "load_config",
    "make_agent",
    "make_executor",
    "parse_config",
    "run_command",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'overnight' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"overnight.{home}"), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
