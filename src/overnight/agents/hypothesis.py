"""The one-line hypothesis an agent states in its output, found one way for every agent.

Agents are asked to end with ``Hypothesis: <one line>``; models and coding CLIs often
dress it in markdown (``**Hypothesis:** raise lr``, ``- Hypothesis: `raise lr```), so
the label and the value are read through emphasis, list and quote markers.
"""

from __future__ import annotations

import re

MAX_HYPOTHESIS = 300  # characters; the ledger and the commit message keep it short

# Markdown may come before the label (`**`, `- `, `#`, `>`) and between it and the colon (`**`);
# `[^\w\n]` keeps the match on one line.
_LABELLED = re.compile(r"^[^\w\n]*hypothesis[^\w\n:]*:(.*)$", re.IGNORECASE | re.MULTILINE)
_NOTE = re.compile(r"^[^\w\n]*note[^\w\n:]*:(.*)$", re.IGNORECASE | re.MULTILINE)  # a line for the notebook


def _unwrapped(value: str) -> str:
    """``value`` without the emphasis or code markers wrapped around it."""
    value = value.strip().strip("*").strip()
    if len(value) > 1 and value[0] == value[-1] == "`" and "`" not in value[1:-1]:
        value = value[1:-1].strip()
    return value


def stated(text: str, limit: int = MAX_HYPOTHESIS) -> str:
    """The value of the last non-empty ``Hypothesis:`` line of ``text``, else ""."""
    values = [_unwrapped(v) for v in _LABELLED.findall(text)]
    found = [v for v in values if v]
    return found[-1][:limit] if found else ""


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # terminal colours and cursor moves: not part of a message


def plain(text: str) -> str:
    """``text`` without terminal escapes (colours a tool printed for a terminal)."""
    return _ANSI.sub("", text)


def last_line(text: str, limit: int = MAX_HYPOTHESIS) -> str:
    """The last non-empty line of ``text``, stripped of terminal escapes and cut to ``limit`` characters."""
    for line in reversed(_ANSI.sub("", text).splitlines()):
        if line.strip():
            return line.strip()[:limit]
    return ""


def hypothesis_in(text: str, limit: int = MAX_HYPOTHESIS) -> str:
    """What an agent's output says it tried: its last ``Hypothesis:`` line, else its last non-empty line
    that is not a ``Note:`` line."""
    return stated(text, limit) or last_line(_NOTE.sub("", text), limit)


MAX_NOTES = 5  # notes taken from one output: a notebook, not a transcript


def noted(text: str) -> tuple[str, ...]:
    """The values of the ``Note:`` lines of ``text`` (markdown allowed, as for the hypothesis), at most MAX_NOTES."""
    found = [_unwrapped(v) for v in _NOTE.findall(plain(text))]
    return tuple(v for v in found if v)[:MAX_NOTES]
