"""Credentials stay out of experiments, agent commands, logs, the ledger and reports.

A variable is a *credential* when one of the words of its name (split at ``_``, digits
and camelCase humps) is a credential word: KEY, TOKEN, SECRET, PASSWORD, CREDENTIAL(S),
AUTH, PAT and the like (see ``_WORDS``). HF_TOKEN and AWS_SECRET_ACCESS_KEY are;
HF_HOME, TOKENIZERS_PARALLELISM and AWS_REGION are not. SSH_AUTH_SOCK is: it lets a
process use the user's ssh keys.

Experiments and command agents get the controller's environment minus the credentials
and minus the LLM providers' own variables (``LLM_PREFIXES``: OPENAI_BASE_URL too),
unless the task lists a name in ``[task] pass_env``. Coding-CLI agents get back the
variables of their own tool (``PROVIDER_PREFIXES`` by default). Every text overnight
writes from a command's output, and every reason it records, has the values of the
credentials replaced by ``[redacted]`` first; the providers' other settings (a base
URL, a model name) are not secret and are left as they are.
"""

from __future__ import annotations

import base64
import ctypes
import functools
import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Credential words: a variable is a credential when a word of its name is one of these.
_WORDS = frozenset({"KEY", "KEYS", "APIKEY", "ACCESSKEY", "SECRETKEY", "PRIVATEKEY", "TOKEN", "APITOKEN",
                    "AUTHTOKEN", "ACCESSTOKEN", "SECRET", "SECRETS", "PASSWORD", "PASSWD", "PASS", "PASSPHRASE",
                    "CREDENTIAL", "CREDENTIALS", "AUTH", "PAT"})  # fmt: skip
# The LLM providers' own variables: none of them is an experiment's business.
LLM_PREFIXES = ("OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_API", "GOOGLE_APPLICATION", "CODEX_", "OPENROUTER_",
                "AZURE_OPENAI", "MISTRAL_", "GROQ_", "DEEPSEEK_", "CLAUDE_CODE_")  # fmt: skip
# What a coding CLI may get back: its provider's variables, and the clouds that serve models (Bedrock, the HF hub).
PROVIDER_PREFIXES = (*LLM_PREFIXES, "HF_", "HUGGING", "AWS_")
_SHORTEST = 6  # values shorter than this are too common to redact safely (e.g. "1", "true")
REDACTED = "[redacted]"


# The password of a URL's user: postgres://user:PASSWORD@host/db.
_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:([^\s/@]+)@")
_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)(?!\[redacted\]@)[^\s/@]+@")
_ENCODED_SHORTEST = 8  # an encoding's stable middle shorter than this is not redacted (too common)


def encodings(value: str) -> set[str]:
    """``value`` and its common encodings that a command could print to slip it past redaction: reversed,
    hex (both cases), base64 (standard and URL-safe, of the value and of it reversed, also as the middle of
    a longer encoded text: the three alignments), and those base64 texts reversed."""
    raw = value.encode("utf-8", errors="surrogateescape")
    out = {value, value[::-1], raw.hex(), raw.hex().upper(), raw[::-1].hex()}
    for data in (raw, raw[::-1]):
        for shift in range(3):
            encoded = base64.b64encode(b"\0" * shift + data).decode()
            # the characters that depend on ``data`` alone: past the shift's group, before the padded end
            middle = encoded[4 if shift else 0 : len(encoded) - 4 if (shift + len(data)) % 3 else len(encoded)]
            for text in (middle, middle.replace("+", "-").replace("/", "_")):
                if len(text) >= _ENCODED_SHORTEST:
                    out |= {text, text[::-1]}
        whole = base64.b64encode(data).decode()
        out |= {whole, whole.rstrip("="), whole[::-1]}
    return {v for v in out if len(v) >= _SHORTEST}


def _words(name: str) -> list[str]:
    """The words of an environment variable's name: ``AWS_SECRET_ACCESS_KEY2`` → AWS SECRET ACCESS KEY."""
    return re.split(r"[^A-Z]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", name).upper())


def is_secret(name: str) -> bool:
    """Whether a variable holds a credential: a word of its name is a credential word."""
    return not _WORDS.isdisjoint(_words(name))


def is_llm_setting(name: str) -> bool:
    """Whether a variable belongs to an LLM provider (removed from experiments, not redacted)."""
    return name.upper().startswith(LLM_PREFIXES)


@functools.lru_cache(maxsize=4096)
def _withheld(name: str) -> bool:
    """Whether child commands do not get the variable ``name`` (kept: names are few, asked often)."""
    return is_secret(name) or is_llm_setting(name)


@dataclass(frozen=True)
class Secrets:
    """The credentials of an environment, and what to do with them."""

    names: frozenset[str]  # what child commands do not get: the credentials and the LLM providers' variables
    values: tuple[str, ...]  # the credentials' values, longest first, so one containing another is redacted whole

    @classmethod
    def of(cls, env: Mapping[str, str] | None = None) -> Secrets:
        env = os.environ if env is None else env
        names = frozenset(n for n in env if _withheld(n))
        found = {env[n] for n in names if is_secret(n) and len(env[n]) >= _SHORTEST}
        found |= {p for v in env.values() for p in _URL_PASSWORD.findall(v) if len(p) >= _SHORTEST}
        values = sorted({e for v in found for e in encodings(v)}, key=len, reverse=True)
        return cls(names, tuple(values))

    def scrub(self, env: Mapping[str, str], keep: Iterable[str] = (), prefixes: tuple[str, ...] = ()) -> dict[str, str]:
        """``env`` without the withheld names, but for the names in ``keep`` or starting with ``prefixes``."""
        allowed = set(keep)
        return {k: v for k, v in env.items() if k not in self.names or k in allowed or k.upper().startswith(prefixes)}

    def redact(self, text: str) -> str:
        for value in self.values:
            if value in text:
                text = text.replace(value, REDACTED)
        if "://" in text:  # a password in a URL (DATABASE_URL=postgres://user:password@host/db), known or not
            text = _URL_USERINFO.sub(rf"\1{REDACTED}@", text)
        return text

    def stream(self) -> Redactor:
        """A redactor for one stream of bytes read in pieces (a command's output)."""
        return Redactor(tuple(v.encode("utf-8", errors="surrogateescape") for v in self.values))


class Redactor:
    """Redacts a byte stream as it arrives, also a secret split across two pieces.

    ``feed`` returns what is safe to write now. It holds back only the end of the
    stream so far that could be the start of a secret (usually nothing, so a log
    stays current); ``end`` returns what was held back once the stream is over.
    """

    def __init__(self, values: tuple[bytes, ...]) -> None:
        self._values = values  # longest first
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        if not self._values:
            return chunk
        data = self._pending + chunk
        for value in self._values:
            if value in data:
                data = data.replace(value, REDACTED.encode())
        keep = self._held(data)
        self._pending = data[len(data) - keep :] if keep else b""
        return data[: len(data) - keep]

    def end(self) -> bytes:
        rest, self._pending = self._pending, b""
        return rest

    def _held(self, data: bytes) -> int:
        """The length of the longest end of ``data`` that a secret starts with (but is not whole)."""
        longest = 0
        for value in self._values:
            for size in range(min(len(value) - 1, len(data)), longest, -1):
                if data.endswith(value[:size]):
                    longest = size
                    break
        return longest


# What the last look at this process's environment found: its state, its secrets, and the
# environments made from it for child commands. Commands start several times per experiment
# and os.environ decodes every name and value on each pass, so both are kept until it changes.
_seen: tuple[object, ...] = ()
_secrets: Secrets | None = None
_children: dict[tuple[frozenset[str], tuple[str, ...]], dict[str, str]] = {}
_lock = threading.Lock()


def _state() -> tuple[object, ...]:
    """A cheap exact picture of os.environ: its raw (undecoded) items, when CPython exposes them."""
    raw = getattr(os.environ, "_data", None)
    return tuple(raw.items()) if isinstance(raw, dict) else tuple(os.environ.items())


def _refresh() -> Secrets:
    global _seen, _secrets
    state = _state()
    with _lock:
        if _secrets is None or state != _seen:
            _seen, _secrets = state, Secrets.of(os.environ)
            _children.clear()
        return _secrets


def current() -> Secrets:
    """The credentials of this process's environment (recomputed only when it changes)."""
    return _refresh()


def environment(keep: Iterable[str] = (), prefixes: tuple[str, ...] = ()) -> dict[str, str]:
    """This process's environment for a child command, credentials removed (see the module docstring).

    A new dict each call: the caller may add to it.
    """
    found = _refresh()
    key = (frozenset(keep), prefixes)
    with _lock:
        env = _children.get(key)
        if env is None:
            env = _children[key] = found.scrub(os.environ, keep, prefixes)
        return dict(env)


_PR_SET_DUMPABLE = 4


def conceal() -> bool:
    """Make this process's /proc files (environ, memory, ...) unreadable to the commands it starts.

    Experiments run as the same user as the controller: without this, any of them reads the
    controller's credentials from /proc/<pid>/environ, however well its own environment was
    scrubbed. A non-dumpable process's /proc files belong to root (prctl(2) PR_SET_DUMPABLE);
    children become dumpable again when they exec. Root's commands can still read them unless
    the sandbox takes their capabilities (it does) or they run in a user namespace (overnight.process.userns). Also turns off core dumps of the controller.
    True when it took effect (Linux only).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False
