"""The constants of a Python file that the tune agent may change: found with ``ast``, rewritten in place.

A constant is a module-level ``UPPER_CASE = <literal>`` (or annotated) assignment whose
literal is an int, a float or a bool (a sign in front included). Rewriting replaces just
the literal's characters, so comments and formatting stay as the author wrote them.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass

from overnight.pysource import assignments, offset, span

Value = int | float | bool

_UPPER = re.compile(r"^[A-Z][A-Z0-9_]*$")


@dataclass(frozen=True)
class Constant:
    """A tunable literal: where it is and what it holds."""

    file: str  # task-relative
    name: str
    value: Value
    line: int  # 1-based, of the literal (start)
    col: int
    end_line: int
    end_col: int

    @property
    def is_bool(self) -> bool:
        return isinstance(self.value, bool)

    @property
    def is_int(self) -> bool:
        return isinstance(self.value, int) and not isinstance(self.value, bool)


def _literal(node: ast.expr) -> Value | None:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
        value: Value = node.value  # type: ignore[assignment]  # narrowed by the type() check
        return value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _literal(node.operand)
        if inner is not None and not isinstance(inner, bool):  # -True is an int expression, not a flag
            return -inner if isinstance(node.op, ast.USub) else inner
    return None


def find_constants(source: str, file: str) -> list[Constant]:
    """Module-level ``UPPER_CASE = number or bool`` (or annotated) assignments of ``source``."""
    found = []
    for name, value in assignments(source):
        literal = _literal(value)
        if not _UPPER.match(name) or literal is None:
            continue
        if isinstance(literal, float) and not math.isfinite(literal):
            continue
        found.append(Constant(file, name, literal, *span(value)))
    return found


def rewrite(source: str, changes: dict[Constant, Value]) -> str:
    """``source`` with each constant's literal replaced by its new value; all else kept."""
    lines = source.splitlines(keepends=True)
    spans = sorted(
        ((offset(lines, c.line, c.col), offset(lines, c.end_line, c.end_col), v) for c, v in changes.items()),
        key=lambda span: span[0],
        reverse=True,
    )
    for start, end, value in spans:
        source = source[:start] + format_value(value) + source[end:]
    return source


def format_value(value: Value) -> str:
    """How a value is written into the file: ints and bools as they are, floats to 4 significant digits
    (more where 4 would round a value inside (0, 1) to 1: a fraction must stay a fraction)."""
    if isinstance(value, (bool, int)):
        return str(value)
    for digits in range(4, 18):
        written = float(f"{value:.{digits}g}")
        if not 0 < value < 1 or written < 1:
            break
    return repr(written)
