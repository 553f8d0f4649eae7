"""Claude Code as an agent: `claude -p --output-format json`."""

from __future__ import annotations

import json
from typing import Any

from overnight.agents import prices
from overnight.agents._base import Context
from overnight.agents.coding_cli import CodingCLI, Outcome, count, json_object
from overnight.agents.hypothesis import last_line


class ClaudeCode(CodingCLI):
    """`claude -p --output-format json --permission-mode acceptEdits`: one JSON result object."""

    binary = "claude"
    install_hint = "install Claude Code (npm install -g @anthropic-ai/claude-code) and log in"
    credentials = ("ANTHROPIC_", "CLAUDE_", "AWS_")
    state = (".claude", ".claude.json", ".config/claude")
    reports_cost = True  # total_cost_usd, cache reads and writes priced by Claude Code itself

    def argv(self, context: Context, prompt_file: str) -> list[str]:
        return [self.binary, "-p", "--output-format", "json", "--permission-mode", "acceptEdits", *self._model()]

    def read(self, stdout: str, stderr: str) -> Outcome:
        data = _result(stdout)
        if data is None:
            return Outcome(error=last_line(stderr) or "no JSON result on stdout")
        u = data.get("usage") or {}
        tokens_in = (
            count(u.get("input_tokens"))
            + count(u.get("cache_creation_input_tokens"))
            + count(u.get("cache_read_input_tokens"))
        )
        cost = data.get("total_cost_usd")
        reported = float(cost) if isinstance(cost, (int, float)) else None
        usage = prices.priced(self.settings, tokens_in, count(u.get("output_tokens")), reported)
        text = str(data.get("result") or "")
        if data.get("is_error") or (data.get("subtype") not in (None, "success")):
            errors = "; ".join(map(str, data.get("errors") or [])) or text or str(data.get("subtype"))
            return Outcome(text, usage, f"{data.get('subtype', 'error')}: {errors}")
        return Outcome(text, usage)


def _result(stdout: str) -> dict[str, Any] | None:
    """The result object: the output itself, or, when Claude Code's verbose setting is on, the
    last event of type "result" in the JSON array of every event it prints instead."""
    try:
        events = json.loads(stdout)
    except json.JSONDecodeError:
        return json_object(stdout)
    if isinstance(events, list):
        results = [e for e in events if isinstance(e, dict) and e.get("type") == "result"]
        return results[-1] if results else None
    return events if isinstance(events, dict) else None


AGENT = ClaudeCode
