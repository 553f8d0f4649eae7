"""aider as an agent: `aider --message-file ...`, plain text."""

from __future__ import annotations

import re

from overnight.agents import prices
from overnight.agents._base import Context
from overnight.agents.coding_cli import CodingCLI, Outcome
from overnight.agents.hypothesis import last_line, plain

_AIDER_TOKENS = re.compile(
    r"Tokens: ([\d.]+k?) sent(?:, [\d.]+k? cache write)?(?:, [\d.]+k? cache hit)?, ([\d.]+k?) received\."
    r"(?:\s*Cost: \$([\d.]+) message, \$([\d.]+) session\.)?"
)


def _last_paragraph(text: str) -> str:
    """The last block of non-empty lines, joined: aider wraps its messages at the terminal's width."""
    blocks = [b for b in re.split(r"\n\s*\n", plain(text)) if b.strip()]
    return " ".join(line.strip() for line in blocks[-1].splitlines()) if blocks else ""


def _aider_count(text: str) -> int:
    return round(float(text[:-1]) * 1000) if text.endswith("k") else int(float(text))


class Aider(CodingCLI):
    """`aider --message-file ... --yes-always --no-auto-commits`: plain text; tokens from its usage lines."""

    binary = "aider"
    install_hint = "install aider (pip install aider-install && aider-install) and set your provider's API key"
    state = (".aider",)
    scratch = (".aider.tags.cache.v*",)  # the repo map's cache: always at the git root

    def argv(self, context: Context, prompt_file: str) -> list[str]:
        # aider's histories go beside the agent's log, outside the worktree: at the git root
        # (its default) they would be files the change may not touch, and every proposal rejected.
        history = context.log_path.parent / f"{context.log_path.stem}.aider"
        return [
            self.binary, "--message-file", prompt_file,
            "--chat-history-file", f"{history}.chat.history.md", "--input-history-file", f"{history}.input.history", "--yes-always", "--no-auto-commits", "--no-dirty-commits",
            "--no-pretty", "--no-stream", "--no-fancy-input", "--no-check-update", "--no-show-release-notes",
            "--analytics-disable", "--no-gitignore", "--no-detect-urls", "--no-suggest-shell-commands",
            *self._model(), *context.editable,
        ]  # fmt: skip

    def read(self, stdout: str, stderr: str) -> Outcome:
        found = _AIDER_TOKENS.findall(stdout)
        if not found:
            # aider exits 0 even when every model call failed: no usage line means no answer.
            return Outcome(stdout, None, _last_paragraph(stdout) or last_line(stderr) or "aider made no model call")
        tokens_in = sum(_aider_count(sent) for sent, _, _, _ in found)
        tokens_out = sum(_aider_count(received) for _, received, _, _ in found)
        session = found[-1][3]
        return Outcome(stdout, prices.priced(self.settings, tokens_in, tokens_out, float(session) if session else None))


AGENT = Aider
