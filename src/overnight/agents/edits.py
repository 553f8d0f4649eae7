"""Edits from a model's reply: SEARCH/REPLACE blocks (its hypothesis line is read by
:mod:`overnight.agents.hypothesis`).

The reply form is aider's well-known one::

    Hypothesis: raise the learning rate

    train.py
    <<<<<<< SEARCH
    LEARNING_RATE = 0.003
    =======
    LEARNING_RATE = 0.004
    >>>>>>> REPLACE

An empty SEARCH part replaces a whole small file (or creates a new editable one).
Matching goes strict → trailing whitespace ignored → indentation ignored (the
replacement is re-indented by the same amount). Nothing is written unless every
block applies; otherwise :class:`EditError` carries a message written for the model:
which block, why, and what the real lines look like.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

SEARCH = re.compile(r"^\s*<{5,9} ?SEARCH\s*$")
DIVIDER = re.compile(r"^\s*={5,9}\s*$")
REPLACE = re.compile(r"^\s*>{5,9} ?REPLACE\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
WHOLE_FILE_LINES = 400  # an empty SEARCH may replace a file up to this long


class EditError(Exception):
    """The reply's edits cannot be applied; the message is for the model."""


@dataclass(frozen=True)
class Block:
    index: int  # 1-based, as the model sees them
    path: str
    search: str
    replace: str


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


def parse(reply: str) -> Iterator[Block]:
    """The reply's blocks, in order; a malformed block raises EditError."""
    lines = reply.splitlines()
    i, index = 0, 0
    while i < len(lines):
        if not SEARCH.match(lines[i]):
            i += 1
            continue
        index += 1
        path = _path_before(lines, i)
        if not path:
            raise EditError(f"Block {index}: put the file's path alone on the line before `<<<<<<< SEARCH`.")
        j = i + 1
        while j < len(lines) and not DIVIDER.match(lines[j]):
            if SEARCH.match(lines[j]) or REPLACE.match(lines[j]):
                raise EditError(f"Block {index} ({path}): expected a `=======` line between SEARCH and REPLACE.")
            j += 1
        k = j + 1
        while k < len(lines) and not REPLACE.match(lines[k]):
            if SEARCH.match(lines[k]):
                raise EditError(f"Block {index} ({path}): expected `>>>>>>> REPLACE` to end the block.")
            k += 1
        if j >= len(lines) or k >= len(lines):
            raise EditError(f"Block {index} ({path}): the block is not closed; end it with `>>>>>>> REPLACE`.")
        search = "\n".join(lines[i + 1 : j])
        replace = "\n".join(lines[j + 1 : k])
        yield Block(index, path, search + "\n" if search else "", replace + "\n" if replace else "")
        i = k + 1


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _find(content: list[str], search: list[str], key: Callable[[str], str]) -> list[int]:
    wanted = [key(s) for s in search]
    n = len(wanted)
    keyed = [key(c) for c in content]
    return [i for i in range(len(content) - n + 1) if keyed[i : i + n] == wanted]


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


def _closest(content: list[str], search: list[str]) -> str:
    if not content:
        return "(the file is empty)"
    n = max(1, len(search))
    target = "".join(search)
    best, best_at = -1.0, 0
    for i in range(max(1, len(content) - n + 1)):
        ratio = difflib.SequenceMatcher(None, "".join(content[i : i + n]), target).quick_ratio()
        if ratio > best:
            best, best_at = ratio, i
    return "".join(content[best_at : best_at + n]).rstrip("\n")


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
    raise EditError(
        f"{where}: the SEARCH lines do not match any lines of {block.path}. The closest lines in the file are:\n"
        f"```\n{_closest(text, search)}\n```\n"
        "SEARCH must copy existing lines exactly, whitespace included."
    )


def apply(reply: str, root: Path, allowed: Callable[[str], bool], editable: list[str]) -> dict[str, str]:
    """Apply every block of ``reply`` to files under ``root`` in memory; return path → new text.

    ``allowed(path)`` says whether a (task-relative) path may be changed. Raises EditError,
    listing every problem, when anything does not apply; nothing is written.
    """
    changed: dict[str, str] = {}
    problems: list[str] = []
    blocks = list(parse(reply))
    if not blocks:
        raise EditError("Your reply has no SEARCH/REPLACE block; send your change as blocks in the format described.")
    for block in blocks:
        path = PurePosixPath(block.path)
        if path.is_absolute() or ".." in path.parts:
            problems.append(f"Block {block.index}: {block.path} is outside the task folder; use paths relative to it.")
            continue
        name = str(path)
        if not allowed(name):
            problems.append(f"Block {block.index}: {name} is not editable. You may change only: {', '.join(editable)}.")
            continue
        file = root / name
        if name not in changed and not file.is_file() and block.search:
            problems.append(f"Block {block.index}: {name} does not exist; to create it, leave its SEARCH part empty.")
            continue
        current = changed[name] if name in changed else (file.read_text(encoding="utf-8") if file.is_file() else "")
        try:
            changed[name] = apply_block(current, block)
        except EditError as err:
            problems.append(str(err))
    if problems:
        raise EditError("\n\n".join(problems))
    return changed


def write(changed: dict[str, str], root: Path) -> None:
    for name, text in changed.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
