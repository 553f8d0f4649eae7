"""Google's Gemini CLI as an agent: `gemini -p ... -o json`."""

from __future__ import annotations

from overnight.agents import prices
from overnight.agents._base import Context
from overnight.agents.coding_cli import CodingCLI, Outcome, count, json_object
from overnight.agents.hypothesis import last_line


class Gemini(CodingCLI):
    """`gemini -p ... -o json --approval-mode auto_edit`: one JSON object; errors go to stderr."""

    binary = "gemini"
    install_hint = "install the Gemini CLI (npm install -g @google/gemini-cli) and set GEMINI_API_KEY"
    credentials = ("GEMINI_", "GOOGLE_")
    state = (".gemini",)
    # Headless, it refuses a folder it does not trust (each worktree is new to it); the variable
    # is ignored by builds that predate the check, where the --skip-trust flag would be an error.
    told = (("GEMINI_CLI_TRUST_WORKSPACE", "true"),)

    def argv(self, context: Context, prompt_file: str) -> list[str]:
        instruction = "Carry out the task described above, editing the files directly."
        return [self.binary, "-p", instruction, "-o", "json", "--approval-mode", "auto_edit", *self._model("-m")]

    def read(self, stdout: str, stderr: str) -> Outcome:
        data = json_object(stdout)
        problem = json_object(stderr)
        if problem and isinstance(problem.get("error"), dict):
            return Outcome(error=str(problem["error"].get("message") or problem["error"]))
        if data is None:
            return Outcome(error=last_line(stderr) or "no JSON output on stdout")
        if isinstance(data.get("error"), dict):
            return Outcome(error=str(data["error"].get("message") or data["error"]))
        tokens_in = tokens_out = cached = 0
        for model in ((data.get("stats") or {}).get("models") or {}).values():
            tokens = (model or {}).get("tokens") or {}
            tokens_in += count(tokens.get("prompt"))
            cached += count(tokens.get("cached"))  # part of the prompt, read from the cache
            tokens_out += count(tokens.get("candidates")) + count(tokens.get("thoughts"))
        usage = prices.priced(self.settings, tokens_in, tokens_out, cached=cached)
        return Outcome(str(data.get("response") or ""), usage)


AGENT = Gemini
