"""What every coding-CLI agent shares: run the real program once per proposal, read its output.

The agents themselves, one module each: claude.py, codex.py, gemini.py, opencode.py, aider.py.

Each runs the real program non-interactively in the experiment's task folder, with
the brief (rules, program.md, files, scores, history) on its standard input, lets it
edit files, and reads its machine-readable output for the final message, the tokens
and the cost. The harness then diffs, commits, runs and judges as for any agent.

Every call has a hard wall-clock limit (``[agent] timeout_s``) and its whole process
tree is killed there: several of these tools retry for minutes, or hang, without a
network. A tool's own error markers (Claude Code's ``is_error``, Codex's
``turn.failed``, ...) fail the proposal; three failed proposals in a row stop the run.
Formats follow each tool's documented headless mode; unknown fields are ignored.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from overnight import secrets, untrusted
from overnight.agents import jsonbrief, prices, prompt
from overnight.agents._base import Agent, Context
from overnight.agents.failures import FailureStreak
from overnight.agents.hypothesis import hypothesis_in, last_line, noted, plain, stated
from overnight.config import AgentSection
from overnight.errors import AgentError, AgentUnavailable
from overnight.process import run_command
from overnight.records import Proposal, Usage


@dataclass(frozen=True)
class Outcome:
    """What a CLI run produced: its final message, what it spent, and its error if it failed."""

    text: str = ""
    usage: Usage | None = None
    error: str = ""


def json_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                yield value


def json_object(text: str) -> dict[str, Any] | None:
    """The output's JSON object: the whole text, else the last object that starts a line.

    An object may span lines (Gemini pretty-prints its output and its errors) and come
    after other lines (Node's warnings on stderr).
    """
    try:
        value = json.loads(text)
        return value if isinstance(value, dict) else None
    except json.JSONDecodeError:
        pass
    decoder = json.JSONDecoder()
    for start in reversed([m.start() for m in re.finditer(r"^\{", text, re.MULTILINE)]):
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    found = list(json_lines(text))  # indented one-line objects
    return found[-1] if found else None


def count(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


class CodingCLI(Agent):
    """A coding CLI run once per proposal. Subclasses give the command line and read the output."""

    binary = ""
    install_hint = ""
    credentials: tuple[str, ...] = secrets.PROVIDER_PREFIXES  # environment names the tool needs (prefixes)
    state: tuple[
        str, ...
    ] = ()  # folders and files under the home directory the tool writes (kept writable in a sandbox)
    # Globs, at the worktree's root, of what the tool writes there for itself whatever it is told
    # (aider's tags cache): removed after each call when the call created them, so they are
    # neither part of the change nor a reason to reject it.
    scratch: tuple[str, ...] = ()
    told: tuple[tuple[str, str], ...] = ()  # environment settings the tool needs to run unattended here
    reports_cost = False  # the tool prints what each call cost (else it is priced from the model's rates)

    def __init__(self, settings: AgentSection) -> None:
        self.name = self.binary
        self.settings = settings
        if shutil.which(self.binary) is None:
            raise AgentUnavailable(
                f"the {self.name} agent needs the `{self.binary}` program on PATH: {self.install_hint}"
            )
        self._failures = FailureStreak(self.name, hint="see the agent logs under .overnight/<tag>/logs/")

    def argv(self, context: Context, prompt_file: str) -> list[str]:
        raise NotImplementedError

    def read(self, stdout: str, stderr: str) -> Outcome:
        raise NotImplementedError

    def propose(self, context: Context) -> Proposal:
        brief = prompt.template("cli_rules").substitute() + "\n\n" + prompt.brief(context, self.settings.context_tokens)
        prompt_file = context.brief_path.with_suffix(".prompt.md")
        prompt_file.parent.mkdir(parents=True, exist_ok=True)
        untrusted.write_text(prompt_file, brief)  # never through a link an agent left there
        jsonbrief.prune(prompt_file.parent, context.experiment_id)  # only the latest briefs stay on disk
        sandbox = None
        if context.sandbox is not None:
            home = Path.home()
            sandbox = replace(context.sandbox, writable=(*context.sandbox.writable, *(home / s for s in self.state)))
        before = self._scratch(context)
        result = run_command(
            self.argv(context, str(prompt_file)),
            cwd=context.task_dir,
            log_path=context.log_path,
            timeout_s=self.settings.timeout_s,
            env={
                **secrets.environment(keep=context.config.task.pass_env, prefixes=self.credentials),
                **self.settings_env(),
            },
            stop=context.stop,
            label=self.name,
            token=context.token,
            stdin_path=prompt_file,
            stdout_path=context.log_path.with_suffix(".out"),
            sandbox=sandbox,
        )
        for path in self._scratch(context) - before:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)
        if result.interrupted:
            raise AgentError(f"{self.name} was interrupted")
        if result.timed_out:
            message = f"{self.name} ran past the agent timeout of {self.settings.timeout_s:g}s and was killed"
            self._failures.failed(message)
            raise AgentError(message)
        outcome = self.read(result.output, result.stderr)
        if outcome.error or result.exit_code != 0:
            reason = plain(outcome.error).strip() or last_line(result.stderr) or last_line(result.output) or "no output"
            message = f"{self.name} failed (exit code {result.exit_code}): {reason[:300]}"
            self._failures.failed(message, outcome.usage)
            raise AgentError(message, outcome.usage, hypothesis=stated(outcome.text), notes=noted(outcome.text))
        self._failures.succeeded()
        return Proposal(hypothesis_in(outcome.text) or f"{self.name} edit", agent=self.name, usage=outcome.usage,
                        info={"model": self.settings.model} if self.settings.model else {},
                        notes=noted(outcome.text))  # fmt: skip

    def uncounted(self) -> str:
        return "" if self.reports_cost else prices.unpriced(self.settings)

    def settings_env(self) -> dict[str, str]:
        """Environment settings the tool is started with (``told``), over what it inherits."""
        return dict(self.told)

    def _scratch(self, context: Context) -> set[Path]:
        return {path for pattern in self.scratch for path in context.worktree.glob(pattern)}

    def _model(self, flag: str = "--model") -> list[str]:
        return [flag, self.settings.model] if self.settings.model else []
