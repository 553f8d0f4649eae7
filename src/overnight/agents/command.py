"""The `command` agent: any shell command edits the worktree.

The command runs in the experiment's task folder with these variables:

* ``OVERNIGHT_BRIEF``: path to a JSON file (outside the worktree) with program.md,
  the metric and its goal, the baseline and best values, and the history;
* ``OVERNIGHT_EXPERIMENT_ID``, ``OVERNIGHT_WORKTREE``, ``OVERNIGHT_TASK_DIR``;
* ``OVERNIGHT_NOTES``: a file (outside the worktree) whose lines go into the run's lab
  notebook, shown to every later agent; ``Note: ...`` output lines go there too.

Its hypothesis is its last ``Hypothesis: ...`` output line (markdown allowed), else its
last non-empty line. A command that fails or runs past its timeout is reported as an AgentError
(the experiment becomes ``rejected``) and the run goes on.
"""

from __future__ import annotations

from overnight import secrets
from overnight.agents._base import Agent, Context
from overnight.agents.hypothesis import hypothesis_in, last_line, noted, stated
from overnight.errors import AgentError, ConfigError
from overnight.process import run_command
from overnight.records import Proposal


class CommandAgent(Agent):
    name = "command"

    def __init__(self, command: str, timeout_s: float) -> None:
        if not command.strip():
            raise ConfigError(
                "the command agent needs a command: pass --agent-command CMD or set [agent] command in overnight.toml"
            )
        self.command = command
        self.timeout_s = timeout_s

    def propose(self, context: Context) -> Proposal:
        brief = context.write_brief()
        env = {
            **secrets.environment(keep=context.config.task.pass_env),
            "OVERNIGHT_BRIEF": str(brief),
            "OVERNIGHT_EXPERIMENT_ID": str(context.experiment_id),
            "OVERNIGHT_WORKTREE": str(context.worktree),
            "OVERNIGHT_TASK_DIR": str(context.task_dir),
            "OVERNIGHT_NOTES": str(context.notes_path or ""),
        }
        result = run_command(
            self.command,
            cwd=context.task_dir,
            log_path=context.log_path,
            timeout_s=self.timeout_s,
            env=env,
            stop=context.stop,
            label="agent",
            token=context.token,
            sandbox=context.sandbox,
        )
        if result.interrupted:
            raise AgentError("the agent command was interrupted")
        if result.timed_out:
            raise AgentError(f"the agent command ran past its timeout of {self.timeout_s:g}s and was killed")
        if result.exit_code != 0:
            tail = last_line(result.output) or "no output"
            raise AgentError(
                f"the agent command exited with code {result.exit_code}: {tail}",
                hypothesis=stated(result.output),
                notes=noted(result.output),
            )
        return Proposal(hypothesis=hypothesis_in(result.output), agent=self.name, notes=noted(result.output))
