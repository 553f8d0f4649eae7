"""Module-level assignments of a Python file, found with ``ast`` and rewritten in place.

One rule for every part of overnight that changes a constant in a file it does not own
(``[judge] seed`` per run, ``overnight verify --set``): an assignment counts only at module
level (``NAME = ...`` or ``NAME: type = ...``), found by parsing, so a docstring or comment that
mentions it is left alone and a value written over several lines is replaced whole. Only the
value's characters change; comments and formatting stay as the author wrote them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

Span = tuple[int, int, int, int]  # (line, col, end_line, end_col) of a value, 1-based lines, byte columns


def assignments(source: str) -> Iterator[tuple[str, ast.expr]]:
    """(name, value) of each module-level assignment to one plain name (``NAME = ...``, ``NAME: T = ...``), in
    order; raises SyntaxError/ValueError when ``source`` does not parse."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name):
            yield target.id, value


def span(value: ast.expr) -> Span:
    assert value.end_lineno is not None and value.end_col_offset is not None
    return value.lineno, value.col_offset, value.end_lineno, value.end_col_offset


def value_spans(source: str, name: str) -> list[Span]:
    """Where the value of each module-level assignment of ``name`` stands; raises SyntaxError/ValueError
    when ``source`` does not parse."""
    return [span(value) for found, value in assignments(source) if found == name]


def offset(lines: list[str], line: int, col: int) -> int:
    """Character offset of (1-based line, byte column) in the text split into ``lines`` (with their ends)."""
    return sum(len(x) for x in lines[: line - 1]) + len(lines[line - 1].encode()[:col].decode(errors="ignore"))


def assign(source: str, name: str, value: str) -> str | None:
    """``source`` with the value of every module-level assignment of ``name`` replaced by the expression
    ``value``; None when there is none, or when ``source`` does not parse."""
    try:
        spans = value_spans(source, name)
    except (SyntaxError, ValueError):
        return None
    if not spans:
        return None
    lines = source.splitlines(keepends=True)
    for line, col, end_line, end_col in sorted(spans, reverse=True):
        start, end = offset(lines, line, col), offset(lines, end_line, end_col)
        source = source[:start] + value + source[end:]
    return source
