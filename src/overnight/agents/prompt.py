"""The brief an agent reads: program.md, the files, the scores, the history, in a token budget.

Templates are package data (``agents/prompts/*.md``) filled with ``string.Template``
(``$name``), so code and braces in files never collide with the template syntax.
Tokens are estimated as characters / 4: good enough to stay inside a context window
without a tokenizer dependency.

The harness's facts (``overnight.agents.brief``) become text here. A history longer than its
share of the budget loses its least useful parts first: the diffs and log tails of older
experiments, then the old middle one experiment at a time (summarised by status), never
the keeps or the most recent; the text says what it left out.
"""

from __future__ import annotations

from collections import Counter
from importlib import resources
from pathlib import Path
from string import Template

from overnight import untrusted
from overnight.agents import brief as briefing
from overnight.agents._base import Context
from overnight.agents.textfiles import read_text
from overnight.records import Status
from overnight.views.text import figure_runs, plural

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
        "rule": rule_text(facts),
        "progress": progress_text(facts.progress) if facts.progress else "(not known)",
        "editable_list": "\n".join(f"- {name}" for name in context.editable),
        "running": running_text(facts),
        "files": "",
        "history": "",
        "notebook": "",
    }
    # What agents and experiments wrote goes inside fences it cannot forge (see overnight.untrusted).
    fence = untrusted.Fence()
    values["running"] = fence.wrap("experiments in flight", values["running"])
    skeleton = template("brief").substitute(values)
    room = max(4000, budget - len(skeleton) - 3 * _FENCE_CHARS)
    values["files"] = fence.wrap("the editable files", _files(context, room // 2))
    left = max(1000, room - len(values["files"]))
    # the notes are data; how to add one is the harness's word, outside the fence
    notes, how = notebook_text(facts, left // 4).rsplit("\n", 1)
    values["notebook"] = fence.wrap("the lab notebook", notes) + "\n" + how
    values["history"] = fence.wrap("experiments so far", history_text(facts, max(800, left - len(values["notebook"]))))
    return template("brief").substitute(values)


_FENCE_CHARS = len(untrusted.Fence("0" * 12).wrap("experiments in flight", ""))  # one fence's delimiters


def facts_of(context: Context) -> briefing.Facts:
    """Facts from the context alone (no ledger, logs or git): for a context built without them."""
    samples = {(e.id, e.round): [e.metric] for e in context.history if e.metric is not None}
    return briefing.gather(config=context.config, history=context.history, running=context.running, samples=samples)


# -- as text, within a budget ------------------------------------------------------------------------


def rule_text(facts: briefing.Facts) -> str:
    """The keep rule and the guards."""
    lines = [facts.rule]
    if facts.guards:
        lines.append("Guards (a change that breaks one is discarded, however good its metric):")
        lines += [f"- {g}" for g in facts.guards]
    return "\n".join(lines)


def running_text(facts: briefing.Facts) -> str:
    if not facts.running:
        return "(no other experiment is in flight)"
    return "\n".join(
        f"- #{i} (worker {w}, {untrusted.name(a or 'agent')}): {untrusted.line(h, 400)}" for i, h, a, w in facts.running
    )


def notebook_text(facts: briefing.Facts, limit: int) -> str:
    """The notebook within ``limit`` characters: the newest notes first to be kept, shown oldest first; its
    last line says how to add a note."""
    how = (
        "To add to it, end your reply with lines that start with `Note:` (what you learnt, a dead end, an idea "
        "for later; short)" + (f", or append lines to the file {facts.notes_path}" if facts.notes_path else "") + "."
    )
    if not facts.notes:
        return f"(empty: no agent has left a note yet)\n{how}"
    lines: list[str] = []
    size = 0
    for note in reversed(facts.notes):
        agent = f", {untrusted.name(note.agent)}" if note.agent else ""
        line = (
            f"- #{note.experiment} (worker {note.worker}{agent}): {untrusted.line(note.text, briefing.MAX_NOTE_CHARS)}"
        )
        if size + len(line) + 1 > limit and lines:
            break
        lines.append(line)
        size += len(line) + 1
    left = len(facts.notes) - len(lines)
    lines.reverse()
    if left:
        lines.insert(0, f"({plural(left, 'older note')} not shown for room)")
    return "\n".join([*lines, how])


def history_text(facts: briefing.Facts, limit: int) -> str:
    """The history within about ``limit`` characters, oldest first.

    Kept in this order while there is room: the keeps and the RECENT most recent
    experiments (their lines, reasons and notes; newest first), the log tails of recent
    failures, the diffs, then the old middle one line at a time, newest first. What does
    not fit is summarised by status, and the text says what it left out.
    """
    entries = facts.entries
    if not entries:
        return "(none yet)"
    recent = {e.id for e in entries[-briefing.RECENT :]}
    pieces: list[tuple[int, int, int, str, str]] = []  # (priority, age, id, part, text)
    for age, e in enumerate(reversed(entries)):
        block = "\n".join([entry_line(e, facts.metric), *entry_details(e)])
        if e.kept or e.id in recent:
            pieces.append((0 if e.kept else 1, age, e.id, "line", block))
            if e.tail:
                pieces.append(
                    (2, age, e.id, "tail", _fenced(f"the end of its log ({e.tail.count(chr(10)) + 1} lines)", e.tail))
                )
            if e.diff:
                pieces.append((3, age, e.id, "diff", _fenced("its diff", e.diff)))
        else:
            pieces.append((4, age, e.id, "line", block))
    pieces.sort(key=lambda p: (p[0], p[1]))
    chosen: dict[tuple[int, str], str] = {}
    size = 0
    reserve = 300  # room for the lines that say what was left out
    newest = entries[-1].id
    for _, _, ident, part, text in pieces:
        if size + len(text) + 1 > limit - reserve and (ident, part) != (newest, "line"):
            continue  # a smaller piece further down may still fit
        chosen[(ident, part)] = text
        size += len(text) + 1
    out: list[str] = []
    dropped = Counter[str]()
    dropped_ids: list[int] = []
    left_out = Counter[str]()
    for e in entries:
        if (e.id, "line") not in chosen:
            dropped[e.status] += 1
            dropped_ids.append(e.id)
            continue
        out.append(chosen[(e.id, "line")])
        for part in ("tail", "diff"):
            if (e.id, part) in chosen:
                out.append(chosen[(e.id, part)])
            elif getattr(e, part):
                left_out[part] += 1
    said: list[str] = []
    if dropped_ids:
        span = f"#{dropped_ids[0]}–#{dropped_ids[-1]}" if len(dropped_ids) > 1 else f"#{dropped_ids[0]}"
        counts = ", ".join(f"{n} {status}" for status, n in dropped.most_common())
        said.append(f"({plural(len(dropped_ids), 'older experiment')} in {span} are not shown one by one: {counts})")
    if left_out:
        parts = [plural(n, "log tail" if part == "tail" else "diff") for part, n in left_out.items()]
        said.append(f"(left out for room: {' and '.join(parts)} of older experiments)")
    return "\n".join(said + out)


def _fenced(title: str, body: str) -> str:
    """A log tail or a diff under its entry: every line quoted, so none can pass for the harness's."""
    return f"    {title}:\n" + untrusted.quoted(body, "    | ")


def progress_text(progress: briefing.Progress) -> str:
    """How far the night has come, in a sentence or three."""
    parts = [f"This is experiment {progress.experiment} of the run; {plural(progress.kept, 'change')} kept so far."]
    if progress.max_experiments is not None:
        left = max(0, progress.max_experiments - progress.started)
        parts.append(
            f"{plural(left, 'more experiment')} after this one (--max-experiments {progress.max_experiments})."
        )
    if progress.max_time_s is not None:
        left_s = max(0.0, progress.max_time_s - progress.elapsed_s)
        parts.append(f"About {_duration(left_s)} of the {_duration(progress.max_time_s)} allowed are left.")
    if progress.max_experiments is None and progress.max_time_s is None:
        parts.append("The run has no experiment or time limit: it goes on until it is stopped.")
    return " ".join(parts)


def entry_line(entry: briefing.Entry, metric: str) -> str:
    """The experiment in one line: status, estimate, comparison, hypothesis."""
    head = f"#{entry.id} {entry.status}"
    if entry.metric is not None:
        head += f" {metric}={entry.metric:.6g} ({figure_runs(max(1, entry.runs))})"
        if entry.delta is not None and entry.reference is not None and entry.status != Status.BASELINE.value:
            against = f"#{entry.reference_id}" if entry.reference_id is not None else "its best"
            head += f", {entry.delta:+.4g} vs {against}'s {entry.reference:.6g}"
            if entry.verdict:
                head += f": {entry.verdict}"
    return f"- {head} — {untrusted.line(entry.hypothesis, 400) or '(no hypothesis)'}"


def entry_details(entry: briefing.Entry) -> list[str]:
    """The lines under the experiment's line: why it ended, what else moved, its notes."""
    out: list[str] = []
    if entry.reason and entry.status not in (Status.BASELINE.value,):
        out.append(f"    why: {untrusted.line(entry.reason, 400)}")
    if entry.gain_ci is not None and entry.status == Status.KEEP.value:
        out.append(f"    gain in the goal's direction: interval [{entry.gain_ci[0]:.4g}, {entry.gain_ci[1]:.4g}]")
    if entry.changed:
        moved = ", ".join(
            f"{untrusted.name(name)} {before:.4g} → {after:.4g} ({_pct(before, after)})"
            for name, (before, after) in entry.changed.items()
        )
        out.append(f"    also moved: {moved}")
    for note in entry.notes:
        out.append(f"    note: {untrusted.line(note, briefing.MAX_NOTE_CHARS)}")
    return out


def _pct(before: float, after: float) -> str:
    if not before:
        return "from 0"
    return f"{100 * (after - before) / abs(before):+.0f}%"


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
