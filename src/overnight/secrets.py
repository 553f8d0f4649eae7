"""Credentials stay out of experiments, agent commands, logs, the ledger and reports.

Experiments and command agents get the controller's environment minus every
variable whose name says it is a credential (it contains KEY, TOKEN, SECRET,
PASSWORD, CREDENTIAL, or AUTH as a word) and minus the LLM providers' own variables, unless the
task lists it in ``[task] pass_env``. Coding-CLI agents get the credential variables
of their own tool back. Every text overnight writes from a command's output, and
every reason it records, has the values of those variables replaced by
``[redacted]`` first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

_NAMES = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|(^|_)AUTH(_|$)", re.IGNORECASE)
_PROVIDERS = ("OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_API", "GOOGLE_APPLICATION", "CODEX_", "OPENROUTER_",
              "AZURE_OPENAI", "MISTRAL_", "GROQ_", "DEEPSEEK_", "HF_", "HUGGING", "AWS_", "CLAUDE_CODE_")  # fmt: skip
_SHORTEST = 6  # values shorter than this are too common to redact safely (e.g. "1", "true")
REDACTED = "[redacted]"


def is_secret(name: str) -> bool:
    return bool(_NAMES.search(name)) or name.upper().startswith(_PROVIDERS)


@dataclass(frozen=True)
class Secrets:
    """The credentials of an environment, and what to do with them."""

    names: frozenset[str]
    values: tuple[str, ...]  # longest first, so a value containing another is redacted whole

    @classmethod
    def of(cls, env: Mapping[str, str] | None = None) -> Secrets:
        env = os.environ if env is None else env
        names = frozenset(n for n in env if is_secret(n))
        values = sorted({env[n] for n in names if len(env[n]) >= _SHORTEST}, key=len, reverse=True)
        return cls(names, tuple(values))

    def scrub(self, env: Mapping[str, str], keep: Iterable[str] = (), prefixes: tuple[str, ...] = ()) -> dict[str, str]:
        """``env`` without the credentials, but for the names in ``keep`` or starting with ``prefixes``."""
        allowed = set(keep)
        return {k: v for k, v in env.items() if k not in self.names or k in allowed or k.upper().startswith(prefixes)}

    def redact(self, text: str) -> str:
        for value in self.values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def redact_file(self, path: Path, start: int = 0) -> None:
        """Redact the part of a log file from byte ``start`` on (what one command wrote)."""
        if not self.values or not path.exists():
            return
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read()
        text = data.decode("utf-8", errors="surrogateescape")
        cleaned = self.redact(text)
        if cleaned != text:
            with open(path, "r+b") as fh:
                fh.seek(start)
                fh.write(cleaned.encode("utf-8", errors="surrogateescape"))
                fh.truncate()


PROVIDER_PREFIXES = _PROVIDERS
_current: tuple[tuple[tuple[str, str], ...], Secrets] | None = None


def current() -> Secrets:
    """The credentials of this process's environment (recomputed only when it changes)."""
    global _current
    key = tuple(sorted((k, v) for k, v in os.environ.items() if is_secret(k)))
    if _current is None or _current[0] != key:
        _current = (key, Secrets.of(os.environ))
    return _current[1]


def environment(keep: Iterable[str] = (), prefixes: tuple[str, ...] = ()) -> dict[str, str]:
    """This process's environment for a child command, credentials removed (see the module docstring)."""
    return current().scrub(os.environ, keep, prefixes)
