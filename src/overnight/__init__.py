"""overnight: the autonomous research loop, on anything measurable.

An agent proposes a change to the editable files of a task; the harness commits it,
runs the experiment under a time budget, reads the metric, keeps the change on the
run branch if it beats the best, and records everything in the ledger.
"""

from __future__ import annotations

__version__ = "0.1.0"

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
from overnight.executors import EXECUTORS, Executor, LocalExecutor, make_executor
from overnight.ledger import Ledger
from overnight.measure import Job, Measurement
from overnight.process import run_command
from overnight.records import Experiment, Goal, Proposal, RunResult, Status, Usage
from overnight.run import Run
from overnight.scheduler import Limits, Scheduler, Summary
from overnight.task import Task

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
    "Scheduler",
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
