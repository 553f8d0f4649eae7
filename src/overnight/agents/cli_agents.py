"""Headless coding CLIs as agents: `claude`, `codex`, `gemini`, `opencode`, `aider`.

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

from overnight import secrets
from overnight.agents import prices, prompt
from overnight.agents._base import Agent, Context, FailureStreak
from overnight.agents.hypothesis import hypothesis_in, last_line
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


def _json_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                yield value


def _json_object(text: str) -> dict[str, Any] | None:
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
    found = list(_json_lines(text))  # indented one-line objects
    return found[-1] if found else None


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


class CodingCLI(Agent):
    """A coding CLI run once per proposal. Subclasses give the command line and read the output."""

    binary = ""
    install_hint = ""
    credentials: tuple[str, ...] = secrets.PROVIDER_PREFIXES  # environment names the tool needs (prefixes)
    state: tuple[
        str, ...
    ] = ()  # folders and files under the home directory the tool writes (kept writable in a sandbox)

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
        prompt_file.write_text(brief, encoding="utf-8")
        sandbox = None
        if context.sandbox is not None:
            home = Path.home()
            sandbox = replace(context.sandbox, writable=(*context.sandbox.writable, *(home / s for s in self.state)))
        result = run_command(
            self.argv(context, str(prompt_file)),
            cwd=context.task_dir,
            log_path=context.log_path,
            timeout_s=self.settings.timeout_s,
            env=secrets.environment(keep=context.config.task.pass_env, prefixes=self.credentials),
            stop=context.stop,
            label=self.name,
            token=context.token,
            stdin_path=prompt_file,
            stdout_path=context.log_path.with_suffix(".out"),
            sandbox=sandbox,
        )
        if result.interrupted:
            raise AgentError(f"{self.name} was interrupted")
        if result.timed_out:
            message = f"{self.name} ran past the agent timeout of {self.settings.timeout_s:g}s and was killed"
            self._failures.failed(message)
            raise AgentError(message)
        outcome = self.read(result.output, result.stderr)
        if outcome.error or result.exit_code != 0:
            reason = outcome.error or last_line(result.stderr) or last_line(result.output) or "no output"
            message = f"{self.name} failed (exit code {result.exit_code}): {reason[:300]}"
            self._failures.failed(message, outcome.usage)
            raise AgentError(message, outcome.usage)
        self._failures.succeeded()
        return Proposal(hypothesis_in(outcome.text) or f"{self.name} edit", agent=self.name, usage=outcome.usage,
                        info={"model": self.settings.model} if self.settings.model else {})  # fmt: skip

    def _model(self, flag: str = "--model") -> list[str]:
        return [flag, self.settings.model] if self.settings.model else []


class ClaudeCode(CodingCLI):
    """`claude -p --output-format json --permission-mode acceptEdits`: one JSON result object."""

    binary = "claude"
    install_hint = "install Claude Code (npm install -g @anthropic-ai/claude-code) and log in"
    credentials = ("ANTHROPIC_", "CLAUDE_", "AWS_")
    state = (".claude", ".claude.json", ".config/claude")

    def argv(self, context: Context, prompt_file: str) -> list[str]:
        return [self.binary, "-p", "--output-format", "json", "--permission-mode", "acceptEdits", *self._model()]

    def read(self, stdout: str, stderr: str) -> Outcome:
        data = _json_object(stdout)
        if data is None:
            return Outcome(error=last_line(stderr) or "no JSON result on stdout")
        u = data.get("usage") or {}
        tokens_in = (
            _int(u.get("input_tokens"))
            + _int(u.get("cache_creation_input_tokens"))
            + _int(u.get("cache_read_input_tokens"))
        )
        cost = data.get("total_cost_usd")
        reported = float(cost) if isinstance(cost, (int, float)) else None
        usage = prices.priced(self.settings, tokens_in, _int(u.get("output_tokens")), reported)
        text = str(data.get("result") or "")
        if data.get("is_error") or (data.get("subtype") not in (None, "success")):
            errors = "; ".join(map(str, data.get("errors") or [])) or text or str(data.get("subtype"))
            return Outcome(text, usage, f"{data.get('subtype', 'error')}: {errors}")
        return Outcome(text, usage)


class Codex(CodingCLI):
    """`codex exec --json --sandbox workspace-write`: JSONL events."""

    binary = "codex"
    install_hint = "install the Codex CLI (npm install -g @openai/codex) and log in"
    credentials = ("CODEX_", "OPENAI_")
    state = (".codex",)

    def argv(self, context: Context, prompt_file: str) -> list[str]:
        return [
            self.binary,
            "exec",
            "--json",
            "--sandbox",
            "workspace-write",
            "--skip-git-repo-check",
            *self._model("-m"),
            "-",
        ]

    def read(self, stdout: str, stderr: str) -> Outcome:
        text, usage, failed = "", None, ""
        for event in _json_lines(stdout):
            kind = event.get("type")
            item = event.get("item") or {}
            if kind == "item.completed" and item.get("type") == "agent_message":
                text = str(item.get("text") or "")
            elif kind == "turn.completed":
                u = event.get("usage") or {}  # the thread's running total
                usage = prices.priced(self.settings, _int(u.get("input_tokens")), _int(u.get("output_tokens")))
            elif kind == "turn.failed":
                failed = str((event.get("error") or {}).get("message") or "turn failed")
        return Outcome(text, usage, failed)


class Gemini(CodingCLI):
    """`gemini -p ... -o json --approval-mode auto_edit`: one JSON object; errors go to stderr."""

    binary = "gemini"
    install_hint = "install the Gemini CLI (npm install -g @google/gemini-cli) and set GEMINI_API_KEY"
    credentials = ("GEMINI_", "GOOGLE_")
    state = (".gemini",)

    def argv(self, context: Context, prompt_file: str) -> list[str]:
        instruction = "Carry out the task described above, editing the files directly."
        return [self.binary, "-p", instruction, "-o", "json", "--approval-mode", "auto_edit", *self._model("-m")]

    def read(self, stdout: str, stderr: str) -> Outcome:
        data = _json_object(stdout)
        problem = _json_object(stderr)
        if problem and isinstance(problem.get("error"), dict):
            return Outcome(error=str(problem["error"].get("message") or problem["error"]))
        if data is None:
            return Outcome(error=last_line(stderr) or "no JSON output on stdout")
        if isinstance(data.get("error"), dict):
            return Outcome(error=str(data["error"].get("message") or data["error"]))
        tokens_in = tokens_out = 0
        for model in ((data.get("stats") or {}).get("models") or {}).values():
            tokens = (model or {}).get("tokens") or {}
            tokens_in += _int(tokens.get("prompt"))
            tokens_out += _int(tokens.get("candidates")) + _int(tokens.get("thoughts"))
        return Outcome(str(data.get("response") or ""), prices.priced(self.settings, tokens_in, tokens_out))


class OpenCode(CodingCLI):
    """`opencode run --format json`: JSONL events; text parts, step_finish tokens and cost."""

    binary = "opencode"
    install_hint = "install opencode (npm install -g opencode-ai) and log in to a provider"
    state = (".local/share/opencode", ".config/opencode", ".cache/opencode")

    def argv(self, context: Context, prompt_file: str) -> list[str]:
        return [self.binary, "run", "--format", "json", *self._model("-m"), "Carry out the task described below."]

    def read(self, stdout: str, stderr: str) -> Outcome:
        step_text: list[str] = []
        text, tokens_in, tokens_out, cost, failed = "", 0, 0, 0.0, ""
        for event in _json_lines(stdout):
            part = event.get("part") or {}
            kind = event.get("type")
            if kind == "step_start":
                step_text = []
            elif kind == "text":
                step_text.append(str(part.get("text") or ""))
            elif kind == "step_finish":
                tokens = part.get("tokens") or {}
                cache = tokens.get("cache") or {}
                tokens_in += _int(tokens.get("input")) + _int(cache.get("read")) + _int(cache.get("write"))
                tokens_out += _int(tokens.get("output")) + _int(tokens.get("reasoning"))
                cost += float(part.get("cost") or 0)
                if step_text:
                    text = "".join(step_text)
            elif kind == "error":
                error = event.get("error") or {}
                failed = str((error.get("data") or {}).get("message") or error.get("name") or "error")
        usage = prices.priced(self.settings, tokens_in, tokens_out, cost or None) if tokens_in or tokens_out else None
        return Outcome(text or "".join(step_text), usage, failed)


_AIDER_TOKENS = re.compile(
    r"Tokens: ([\d.]+k?) sent(?:, [\d.]+k? cache write)?(?:, [\d.]+k? cache hit)?, ([\d.]+k?) received\."
    r"(?:\s*Cost: \$([\d.]+) message, \$([\d.]+) session\.)?"
)


def _aider_count(text: str) -> int:
    return round(float(text[:-1]) * 1000) if text.endswith("k") else int(float(text))


class Aider(CodingCLI):
    """`aider --message-file ... --yes-always --no-auto-commits`: plain text; tokens from its usage lines."""

    binary = "aider"
    install_hint = "install aider (pip install aider-install && aider-install) and set your provider's API key"
    state = (".aider",)

    def argv(self, context: Context, prompt_file: str) -> list[str]:
        return [
            self.binary, "--message-file", prompt_file, "--yes-always", "--no-auto-commits", "--no-dirty-commits",
            "--no-pretty", "--no-stream", "--no-fancy-input", "--no-check-update", "--no-show-release-notes",
            "--analytics-disable", "--no-gitignore", "--no-detect-urls", "--no-suggest-shell-commands",
            *self._model(), *context.editable,
        ]  # fmt: skip

    def read(self, stdout: str, stderr: str) -> Outcome:
        found = _AIDER_TOKENS.findall(stdout)
        if not found:
            # aider exits 0 even when every model call failed: no usage line means no answer.
            return Outcome(stdout, None, last_line(stderr) or last_line(stdout) or "aider made no model call")
        tokens_in = sum(_aider_count(sent) for sent, _, _, _ in found)
        tokens_out = sum(_aider_count(received) for _, received, _, _ in found)
        session = found[-1][3]
        return Outcome(stdout, prices.priced(self.settings, tokens_in, tokens_out, float(session) if session else None))


CLIS: dict[str, type[CodingCLI]] = {c.binary: c for c in (ClaudeCode, Codex, Gemini, OpenCode, Aider)}
