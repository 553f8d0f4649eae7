"""The brief an agent reads: program.md, the files, the scores, the history, in a token budget.

Templates are package data (``agents/prompts/*.md``) filled with ``string.Template``
(``$name``), so code and braces in files never collide with the template syntax.
Tokens are estimated as characters / 4: good enough to stay inside a context window
without a tokenizer dependency.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from string import Template

from overnight import brief as briefing
from overnight.agents._base import Context
from overnight.agents.textfiles import read_text

CHARS_PER_TOKEN = 4


def template(name: str) -> Template:
    return Template((resources.files("overnight.agents") / "prompts" / f"{name}.md").read_text(encoding="utf-8"))


def _number(value: float | None) -> str:
    return "(not measured yet)" if value is None else f"{value:.6g}"


def _marker(start: int, end: int, total: int) -> str:
    return (
        f"[... lines {start + 1}-{end} of {total} are not shown: the file is too long for the prompt. "
        "SEARCH blocks can only quote lines shown here ...]\n"
    )


def _cut(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters: its head and tail, with the cut said in the middle.

    The marker counts against ``limit``; a limit too small for it gives the marker alone.
    """
    if len(text) <= limit:
        return text
    lines = text.splitlines(keepends=True)
    room = limit - len(_marker(len(lines), len(lines), len(lines)))  # the marker at its longest
    start, end, size, from_start = 0, len(lines), 0, True
    while start < end:  # take lines from both ends in turn while they fit
        line = lines[start] if from_start else lines[end - 1]
        if size + len(line) > room:
            break
        size += len(line)
        if from_start:
            start += 1
        else:
            end -= 1
        from_start = not from_start
    return "".join(lines[:start]) + _marker(start, end, len(lines)) + "".join(lines[end:])


def _read(path: Path) -> str | None:
    try:
        return read_text(path)[0]  # in its own encoding (Latin-1, UTF-16, ...): what the edits will match
    except (OSError, ValueError):  # unreadable, or not text (NotText)
        return None


def _shown(name: str, text: str | None, room: int) -> str:
    """One file as the brief shows it, within about ``room`` characters, its name and fences included."""
    if text is None:
        return f"{name}\n(not shown: not a text file)\n"
    frame = f"{name}\n```\n\n```\n"
    return f"{name}\n```\n{_cut(text, room - len(frame)).rstrip()}\n```\n"


def _files(context: Context, limit: int) -> str:
    """The editable files within ``limit`` characters in all.

    Each file gets an equal share of what is left; files are taken shortest first, so the
    share a short file does not use goes on to the longer ones. Only when there are so many
    files that a share cannot hold the cut marker does the total go past ``limit``.
    """
    texts = {name: _read(context.task_dir / name) for name in context.editable}
    order = sorted(context.editable, key=lambda name: len(texts[name] or ""))
    shown: dict[str, str] = {}
    left = limit
    for i, name in enumerate(order):
        share = max(0, left) // (len(order) - i)
        shown[name] = _shown(name, texts[name], share)
        left -= len(shown[name]) + 1  # and the blank line between files
    return "\n".join(shown[name] for name in context.editable)


def brief(context: Context, budget_tokens: int) -> str:
    """The brief as text, within about ``budget_tokens``: files get half of what is left, the history
    and the notebook the rest (the notebook at most a quarter of it)."""
    budget = budget_tokens * CHARS_PER_TOKEN
    facts = context.facts or facts_of(context)
    values = {
        "program": context.program.strip(),
        "run": context.config.task.run,
        "budget_s": f"{context.config.task.budget_s:g}",
        "metric": context.metric,
        "direction": "lower" if context.goal.value == "min" else "higher",
        "baseline": _number(context.baseline),
        "best": _number(context.best),
        "rule": briefing.rule_text(facts),
        "progress": facts.progress.text() if facts.progress else "(not known)",
        "editable_list": "\n".join(f"- {name}" for name in context.editable),
        "running": briefing.running_text(facts),
        "files": "",
        "history": "",
        "notebook": "",
    }
    skeleton = template("brief").substitute(values)
    room = max(4000, budget - len(skeleton))
    values["files"] = _files(context, room // 2)
    left = max(1000, room - len(values["files"]))
    values["notebook"] = briefing.notebook_text(facts, left // 4)
    values["history"] = briefing.history_text(facts, max(800, left - len(values["notebook"])))
    return template("brief").substitute(values)


def facts_of(context: Context) -> briefing.Facts:
    """Facts from the context alone (no ledger, logs or git): for a context built without them."""
    samples = {(e.id, e.round): [e.metric] for e in context.history if e.metric is not None}
    return briefing.gather(config=context.config, history=context.history, running=context.running, samples=samples)
