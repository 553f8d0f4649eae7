"""OpenAI's Codex CLI as an agent: `codex exec --json`."""

from __future__ import annotations

from overnight.agents import prices
from overnight.agents._base import Context
from overnight.agents.coding_cli import CodingCLI, Outcome, count, json_lines


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
        for event in json_lines(stdout):
            kind = event.get("type")
            item = event.get("item") or {}
            if kind == "item.completed" and item.get("type") == "agent_message":
                text = str(item.get("text") or "")
            elif kind == "turn.completed":
                u = event.get("usage") or {}  # the thread's running total
                usage = prices.priced(
                    self.settings,
                    count(u.get("input_tokens")),  # cached and cache-written tokens included
                    count(u.get("output_tokens")),
                    cached=count(u.get("cached_input_tokens")),
                    written=count(u.get("cache_write_input_tokens")),
                )
            elif kind == "turn.failed":
                failed = str((event.get("error") or {}).get("message") or "turn failed")
        return Outcome(text, usage, failed)


AGENT = Codex
