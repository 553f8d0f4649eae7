"""opencode as an agent: `opencode run --format json`."""

from __future__ import annotations

import json
import os

from overnight.agents import prices
from overnight.agents._base import Context
from overnight.agents.coding_cli import CodingCLI, Outcome, count, json_lines


class OpenCode(CodingCLI):
    """`opencode run --format json`: JSONL events; text parts, step_finish tokens and cost."""

    binary = "opencode"
    install_hint = "install opencode (npm install -g opencode-ai) and log in to a provider"
    state = (".local/share/opencode", ".config/opencode", ".cache/opencode")
    reports_cost = True  # each step_finish event's cost

    def settings_env(self) -> dict[str, str]:
        """Edits allowed, over the user's own config: `opencode run` has nobody to ask, so a permission
        that resolves to "ask" (a user's `"edit": "ask"`) is rejected and the proposal ends as no_change.
        Only edits: the user's policy for shell commands and the rest stays as configured."""
        try:
            config = json.loads(os.environ.get("OPENCODE_CONFIG_CONTENT") or "{}")
        except json.JSONDecodeError:
            config = {}
        config = config if isinstance(config, dict) else {}
        permission = config.get("permission")
        if not isinstance(permission, dict):  # absent, or one word for every tool
            permission = {} if permission is None else {"*": permission}
        config["permission"] = {**permission, "edit": "allow"}
        return {"OPENCODE_CONFIG_CONTENT": json.dumps(config)}

    def argv(self, context: Context, prompt_file: str) -> list[str]:
        return [self.binary, "run", "--format", "json", *self._model("-m"), "Carry out the task described below."]

    def read(self, stdout: str, stderr: str) -> Outcome:
        step_text: list[str] = []
        text, tokens_in, tokens_out, cost, failed = "", 0, 0, 0.0, ""
        for event in json_lines(stdout):
            part = event.get("part") or {}
            kind = event.get("type")
            if kind == "step_start":
                step_text = []
            elif kind == "text":
                step_text.append(str(part.get("text") or ""))
            elif kind == "step_finish":
                tokens = part.get("tokens") or {}
                cache = tokens.get("cache") or {}
                tokens_in += count(tokens.get("input")) + count(cache.get("read")) + count(cache.get("write"))
                tokens_out += count(tokens.get("output")) + count(tokens.get("reasoning"))
                cost += float(part.get("cost") or 0)
                if step_text:
                    text = "".join(step_text)
            elif kind == "error":
                error = event.get("error") or {}
                failed = str((error.get("data") or {}).get("message") or error.get("name") or "error")
        usage = prices.priced(self.settings, tokens_in, tokens_out, cost or None) if tokens_in or tokens_out else None
        return Outcome(text or "".join(step_text), usage, failed)


AGENT = OpenCode
