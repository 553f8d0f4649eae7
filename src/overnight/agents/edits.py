"""Edits from a model's reply: SEARCH/REPLACE blocks, and the ``Note:`` lines around them
(its hypothesis line is read by :mod:`overnight.agents.hypothesis`).

The reply form is aider's well-known one::

    Hypothesis: raise the learning rate
    Note: lr above 0.005 diverged in every run so far

    train.py
    <<<<<<< SEARCH
    LEARNING_RATE = 0.003
    =======
    LEARNING_RATE = 0.004
    >>>>>>> REPLACE

An empty SEARCH part replaces a whole small file (or creates a new editable one).
Matching goes strict → trailing whitespace ignored → indentation ignored (the
replacement is re-indented by the same amount). Each block stands alone: those that
apply are kept, and each one that does not gets a message written for the model (which
block, why, and what the real lines look like), so that only those are asked again.
Files keep their encoding and line ends (:mod:`overnight.agents.textfiles`).
"""

from __future__ import annotations

import difflib
import heapq
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path, PurePosixPath

from overnight.agents.hypothesis import noted
from overnight.agents.textfiles import Form, NotText, load, read_text

__all__ = [
    "Block",
    "EditError",
    "NotText",
    "Outcome",
    "Parsed",
    "apply",
    "apply_block",
    "closest",
    "parse",
    "read_text",
    "write",
]

SEARCH = re.compile(r"^\s*<{5,9} ?SEARCH\s*$")
DIVIDER = re.compile(r"^\s*={5,9}\s*$")
REPLACE = re.compile(r"^\s*>{5,9} ?REPLACE\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
WHOLE_FILE_LINES = 400  # an empty SEARCH may replace a file up to this long
MAX_NOTE = 300  # characters of one note
CANDIDATES = 8  # windows of a file compared closely with a SEARCH that missed
SHOWN = 40  # lines of the closest match shown to the model
LONG_SEARCH = 20  # a SEARCH longer than this that misses gets advice to quote less
NO_BLOCKS = "Your reply has no SEARCH/REPLACE block; send your change as blocks in the format described."


class EditError(Exception):
    """A block cannot be applied; the message is for the model."""


@dataclass(frozen=True)
class Block:
    index: int  # 1-based, as the model sees them
    path: str
    search: str
    replace: str

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes two blocks the same edit (a model that sends an applied block again)."""
        return (self.path, self.search, self.replace)


@dataclass(frozen=True)
class Parsed:
    """A reply read: its complete blocks, the malformed ones, and what it says outside them."""

    blocks: tuple[Block, ...]
    problems: tuple[str, ...]  # one message per malformed block, for the model
    unclosed: str  # "Block 3 (train.py)" when the reply ends inside a block (cut off), else ""
    outside: str  # the reply's lines outside blocks: the hypothesis, notes, prose

    @property
    def notes(self) -> tuple[str, ...]:
        """The reply's ``Note:`` lines outside its blocks: at most MAX_NOTES, each cut to MAX_NOTE characters."""
        found: list[str] = []
        for text in noted(self.outside):
            if text[:MAX_NOTE] not in found:
                found.append(text[:MAX_NOTE])
        return tuple(found)


@dataclass
class Outcome:
    """What came of a reply's blocks: the files they changed, which applied and which did not, and why."""

    parsed: Parsed
    changed: dict[str, str] = field(default_factory=dict)  # path → new text, "\n" line ends
    forms: dict[str, Form] = field(default_factory=dict)  # path → how it is stored
    applied: list[int] = field(default_factory=list)  # indexes of the blocks applied
    repeated: list[int] = field(default_factory=list)  # blocks the caller had already applied: skipped
    problems: list[str] = field(default_factory=list)  # one message per failed block, for the model


def _path_before(lines: list[str], at: int) -> str:
    """The file path written on the line(s) just before a SEARCH marker (fences skipped)."""
    for back in range(at - 1, max(-1, at - 4), -1):
        text = lines[back].strip()
        if not text or FENCE.match(text):
            continue
        text = text.strip("*`'\"").rstrip(":").strip()
        text = re.sub(r"^(file(name)?|path)\s*:\s*", "", text, flags=re.IGNORECASE).strip("`")
        return text
    return ""


def _scan(lines: list[str], start: int, end: re.Pattern[str]) -> int:
    """The first line from ``start`` that is a block marker (``end`` or SEARCH/REPLACE), else len(lines)."""
    for i in range(start, len(lines)):
        if end.match(lines[i]) or SEARCH.match(lines[i]) or REPLACE.match(lines[i]):
            return i
    return len(lines)


def parse(reply: str) -> Parsed:
    """The reply's blocks in order; a malformed block is a problem and reading goes on at the next marker."""
    lines = reply.splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    outside: list[str] = []
    unclosed = ""
    i, index = 0, 0
    while i < len(lines):
        if not SEARCH.match(lines[i]):
            outside.append(lines[i])
            i += 1
            continue
        index += 1
        path = _path_before(lines, i)
        where = f"Block {index} ({path})" if path else f"Block {index}"
        j = _scan(lines, i + 1, DIVIDER)
        k = _scan(lines, j + 1, REPLACE) if j < len(lines) and DIVIDER.match(lines[j]) else j
        if k >= len(lines):
            unclosed = where
            break
        if not DIVIDER.match(lines[j]):
            problems.append(f"{where}: expected a `=======` line between SEARCH and REPLACE.")
        elif not REPLACE.match(lines[k]):
            problems.append(f"{where}: expected `>>>>>>> REPLACE` to end the block.")
        elif not path:
            problems.append(f"{where}: put the file's path alone on the line before `<<<<<<< SEARCH`.")
        else:
            search, replace = "\n".join(lines[i + 1 : j]), "\n".join(lines[j + 1 : k])
            blocks.append(Block(index, path, search + "\n" if search else "", replace + "\n" if replace else ""))
        i = k if SEARCH.match(lines[k]) else k + 1  # a SEARCH where an end was expected starts the next block
    return Parsed(tuple(blocks), tuple(problems), unclosed, "\n".join(outside))


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _find(content: list[str], search: list[str], key: Callable[[str], str]) -> list[int]:
    wanted = [key(s) for s in search]
    n = len(wanted)
    keyed = [key(c) for c in content]
    first = wanted[0]
    return [i for i in range(len(content) - n + 1) if keyed[i] == first and keyed[i : i + n] == wanted]


def _reindent(replace: list[str], found: list[str], search: list[str]) -> list[str]:
    """Shift the replacement's indentation by what separates the model's SEARCH from the file."""
    first = next((k for k, s in enumerate(search) if s.strip()), None)
    if first is None:
        return replace
    have, wrote = _indent(found[first]), _indent(search[first])
    out = []
    for line in replace:
        if not line.strip():
            out.append(line)
        elif wrote and line.startswith(wrote):
            out.append(have + line[len(wrote) :])
        else:
            out.append(have + line if not wrote else line)
    return out


class _Likeness:
    """How alike a run of lines is to ``search``: line by line, then character by character (cheaply when long).

    difflib indexes its second sequence once per matcher, so ``search`` is indexed once for all windows.
    """

    def __init__(self, search: list[str]) -> None:
        self.lines = difflib.SequenceMatcher(None, autojunk=False)
        self.lines.set_seq2([s.strip() for s in search])
        text = "".join(search)
        self.chars = difflib.SequenceMatcher(None, autojunk=False)
        self.chars.set_seq2(text)
        self.short = len(text) <= 1000

    def __call__(self, window: list[str]) -> float:
        text = "".join(window)
        self.lines.set_seq1([s.strip() for s in window])
        self.chars.set_seq1(text)
        exact = self.short and len(text) <= 4000  # ratio() is quadratic at worst; quick_ratio() linear
        return self.lines.ratio() + (self.chars.ratio() if exact else self.chars.quick_ratio())


def closest(content: list[str], search: list[str]) -> int:
    """Where the run of ``len(search)`` lines of ``content`` most like ``search`` starts.

    Bounded whatever the sizes: every window is scored in one pass by the lines and words
    it shares with ``search`` (sliding sums), and only the best CANDIDATES windows are
    compared closely with difflib.
    """
    n = min(len(search), len(content))
    lines = {s.strip() for s in search if s.strip()}
    words = {w for s in search for w in re.findall(r"\w+", s)}
    scores = [(3 if c.strip() in lines else 0) + len(words.intersection(re.findall(r"\w+", c))) for c in content]
    sums = [0, *accumulate(scores)]
    windows = range(len(content) - n + 1)
    best = heapq.nlargest(CANDIDATES, windows, key=lambda i: (sums[i + n] - sums[i], -i))
    likeness = _Likeness(search)
    return max(best, key=lambda i: (likeness(content[i : i + n]), -i))


def _clip(line: str, limit: int = 400) -> str:
    """A line as the model is shown it: a very long one (minified code, data) cut short."""
    return line if len(line) <= limit else line[:limit] + " [...]\n"


def _miss(where: str, path: str, content: list[str], search: list[str]) -> str:
    """The message for a SEARCH that matches nothing: the closest lines, and the first that differs."""
    if not content:
        return f"{where}: the SEARCH lines do not match any lines of {path}: it is empty."
    at = closest(content, search)
    window = content[at : at + len(search)]
    show_from = 0
    differs = ""
    ops = difflib.SequenceMatcher(None, window, search, autojunk=False).get_opcodes()
    change = next((op for op in ops if op[0] != "equal"), None)
    if change is not None:
        tag, i1, _, j1, _ = change
        have = _clip(window[i1]).rstrip("\n") if i1 < len(window) else "(the end of the lines)"
        wrote = _clip(search[j1]).rstrip("\n") if j1 < len(search) and tag != "delete" else "(nothing)"
        differs = f"The first difference: your SEARCH has `{wrote}` where the file has `{have}`.\n"
        show_from = max(0, i1 - 5) if len(window) > SHOWN else 0
    shown = [_clip(line) for line in window[show_from : show_from + SHOWN]]
    span = f"lines {at + show_from + 1}-{at + show_from + len(shown)}"
    advice = ""
    if len(search) > LONG_SEARCH:
        advice = (
            f" Your SEARCH has {len(search)} lines: quote only the few lines you change, with enough around them "
            "to match one place."
        )
    return (
        f"{where}: the SEARCH lines do not match any lines of {path}. The closest lines in the file ({span}) are:\n"
        f"```\n{''.join(shown).rstrip(chr(10))}\n```\n{differs}"
        f"SEARCH must copy existing lines exactly, whitespace included.{advice}"
    )


def apply_block(content: str, block: Block) -> str:
    """``content`` with ``block`` applied; EditError when it does not match exactly once."""
    where = f"Block {block.index} ({block.path})"
    if not block.search:
        if len(_lines(content)) > WHOLE_FILE_LINES:
            raise EditError(
                f"{where}: an empty SEARCH replaces the whole file, and {block.path} has more than "
                f"{WHOLE_FILE_LINES} lines; send SEARCH/REPLACE blocks for the lines you change."
            )
        return block.replace
    text, search, replace = _lines(content), _lines(block.search), _lines(block.replace)
    if content and not content.endswith("\n"):
        text[-1] += "\n"
    for key, reindent in ((lambda s: s, False), (str.rstrip, False), (str.strip, True)):
        found = _find(text, search, key)
        if len(found) > 1:
            raise EditError(
                f"{where}: the SEARCH lines occur {len(found)} times in {block.path}; "
                "add surrounding lines so they match exactly one place."
            )
        if found:
            at = found[0]
            new = _reindent(replace, text[at : at + len(search)], search) if reindent else replace
            return "".join(text[:at] + new + text[at + len(search) :])
    raise EditError(_miss(where, block.path, text, search))


def _check_path(block: Block, root: Path, allowed: Callable[[str], bool], editable: list[str]) -> str:
    """The block's task-relative path; EditError when it may not be edited this way."""
    path = PurePosixPath(block.path)
    if path.is_absolute() or ".." in path.parts:
        raise EditError(f"Block {block.index}: {block.path} is outside the task folder; use paths relative to it.")
    name = str(path)
    if not allowed(name):
        raise EditError(f"Block {block.index}: {name} is not editable. You may change only: {', '.join(editable)}.")
    if block.search and not (root / name).is_file():
        raise EditError(f"Block {block.index}: {name} does not exist; to create it, leave its SEARCH part empty.")
    return name


def apply(
    reply: str,
    root: Path,
    allowed: Callable[[str], bool],
    editable: list[str],
    done: Collection[tuple[str, str, str]] = (),
    cut_off: bool = False,
) -> Outcome:
    """Apply each block of ``reply`` to the files under ``root``, in memory; nothing is written.

    ``allowed(path)`` says whether a (task-relative) path may be changed. Blocks are applied
    in order, each to the text the earlier ones left; one that fails is a problem and the
    others go on. A block whose :attr:`Block.key` is in ``done`` was applied by an earlier
    reply of the same conversation: it is skipped, not failed. A block left open at the end
    of the reply is a problem unless the reply was ``cut_off`` at the output limit (then the
    caller says so, once, for the whole reply).
    """
    parsed = parse(reply)
    outcome = Outcome(parsed, problems=list(parsed.problems))
    if parsed.unclosed and not cut_off:
        outcome.problems.append(f"{parsed.unclosed}: the block is not closed; end it with `>>>>>>> REPLACE`.")
    touched: set[str] = set()
    for block in parsed.blocks:
        if block.key in done:
            outcome.repeated.append(block.index)
            continue
        try:
            name = _check_path(block, root, allowed, editable)
            if name not in outcome.changed:
                file = root / name
                text, form = load(file, name) if file.is_file() else ("", Form())
                outcome.changed[name], outcome.forms[name] = text, form
            new = apply_block(outcome.changed[name], block)
            outcome.forms[name].encode(new)  # a file keeps its encoding: refuse what it cannot hold
        except EditError as err:
            outcome.problems.append(str(err))
            continue
        except NotText as err:
            outcome.problems.append(f"Block {block.index}: {err}; it cannot be edited with SEARCH/REPLACE.")
            continue
        except UnicodeEncodeError as err:
            bad = err.object[err.start : err.end]
            outcome.problems.append(
                f"Block {block.index} ({name}): {name} is stored as {outcome.forms[name].label}, which cannot "
                f"hold {bad!r} from your REPLACE; use only characters {outcome.forms[name].encoding} has."
            )
            continue
        outcome.changed[name] = new
        outcome.applied.append(block.index)
        touched.add(name)
    outcome.changed = {name: text for name, text in outcome.changed.items() if name in touched}
    return outcome


def write(outcome: Outcome, root: Path) -> None:
    """Write the files ``outcome`` changed under ``root``, each in its own encoding and line ends."""
    for name, text in outcome.changed.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(outcome.forms[name].encode(text))
