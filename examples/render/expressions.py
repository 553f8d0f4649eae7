"""The expressions inside render.py's tags: lexing, evaluation, filters, and values as text.

Editable, like render.py; what they must do is specified in render.py's docstring.
"""

import re
from collections.abc import Mapping


class TemplateSyntaxError(Exception):
    """The template is malformed; ``lineno`` is the line (from 1) of the problem."""

    def __init__(self, message, lineno):
        super().__init__(f"{message} (line {lineno})")
        self.message = message
        self.lineno = lineno


# --- values ----------------------------------------------------------------------


def to_text(value):
    """The text of a value: None is "", text is itself, anything else str()."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return str(value)


def escape(text):
    """HTML-escape: & < > " ' become &amp; &lt; &gt; &quot; &#x27;."""
    text = text.replace("&", "&amp;")
    text = text.replace("<", "&lt;")
    text = text.replace(">", "&gt;")
    text = text.replace('"', "&quot;")
    text = text.replace("'", "&#x27;")
    return text


def _lookup(path, scope):
    """The value of a dotted name like ``user.address.city``; None when any part is missing."""
    parts = path.split(".")
    if parts[0] not in scope:
        return None
    value = scope[parts[0]]
    for part in parts[1:]:
        if value is None:
            return None
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, (list, tuple)) and part.isdigit():
            value = value[int(part)] if int(part) < len(value) else None
        elif not part.startswith("_") and hasattr(value, part):
            value = getattr(value, part)
        else:
            value = None
    return value


# --- expressions -------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"[^"]*"|'[^']*')
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op>==|!=|<=|>=|<|>|\||:|\(|\))
      | (?P<name>[A-Za-z_]\w*(?:\.\w+)*)
    )""",
    re.X,
)

_LITERALS = {"true": True, "True": True, "false": False, "False": False, "none": None, "None": None}
_KEYWORDS = ("and", "or", "not")
_COMPARISONS = ("==", "!=", "<", ">", "<=", ">=")
_FILTERS = ("upper", "lower", "title", "length", "escape", "safe", "default")
_NO_ARGUMENT = object()


class Expression:
    """Lexes one expression's source and evaluates it against a scope while parsing it."""

    def __init__(self, source, scope, line):
        self.source = source
        self.scope = scope
        self.line = line
        self.tokens = []
        text = source.strip()
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match:
                self.fail(f"unexpected {text[pos:].strip()[:1]!r}")
            self.tokens.append((match.lastgroup, match.group(match.lastgroup)))
            pos = match.end()
        self.pos = 0

    def fail(self, message):
        raise TemplateSyntaxError(f"{message} in {self.source!r}", self.line)

    def peek(self):
        if self.pos < len(self.tokens):
            return self.tokens[self.pos]
        return (None, None)

    def take(self):
        token = self.peek()
        if token[0] is None:
            self.fail("unexpected end of expression")
        self.pos = self.pos + 1
        return token

    def finish(self):
        if self.pos < len(self.tokens):
            self.fail(f"unexpected {self.tokens[self.pos][1]!r}")

    def value(self):
        """The whole source as a filtered value: (value, marked safe)."""
        result = self.filtered()
        self.finish()
        return result

    def condition(self):
        """The whole source as a condition: its truth."""
        result = self.either()
        self.finish()
        return bool(result)

    def either(self):
        result = self.both()
        while self.peek() == ("name", "or"):
            self.take()
            right = self.both()
            result = bool(result) or bool(right)
        return result

    def both(self):
        result = self.negation()
        while self.peek() == ("name", "and"):
            self.take()
            right = self.negation()
            result = bool(result) and bool(right)
        return result

    def negation(self):
        if self.peek() == ("name", "not"):
            self.take()
            return not self.negation()
        return self.comparison()

    def comparison(self):
        left, _ = self.filtered()
        kind, text = self.peek()
        if kind == "op" and text in _COMPARISONS:
            self.take()
            right, _ = self.filtered()
            return _compare(text, left, right)
        return left

    def filtered(self):
        value = self.primary()
        safe = False
        while self.peek() == ("op", "|"):
            self.take()
            kind, name = self.take()
            if kind != "name" or name not in _FILTERS:
                self.fail(f"unknown filter {name!r}")
            argument = _NO_ARGUMENT
            if self.peek() == ("op", ":"):
                self.take()
                argument = self.primary()
            if name == "default" and argument is _NO_ARGUMENT:
                self.fail('the default filter needs an argument, like default:"x"')
            if name != "default" and argument is not _NO_ARGUMENT:
                self.fail(f"the {name} filter takes no argument")
            value, safe = _apply_filter(name, value, safe, argument)
        return value, safe

    def primary(self):
        kind, text = self.take()
        if kind == "string":
            return text[1:-1]
        if kind == "number":
            if "." in text:
                return float(text)
            return int(text)
        if kind == "op" and text == "(":
            result = self.either()
            if self.take() != ("op", ")"):
                self.fail("expected ')'")
            return result
        if kind == "name" and text in _LITERALS:
            return _LITERALS[text]
        if kind == "name" and text not in _KEYWORDS:
            return _lookup(text, self.scope)
        self.fail(f"unexpected {text!r}")


def _compare(op, left, right):
    try:
        if op == "==":
            return left == right
        if op == "!=":
            return left != right
        if op == "<":
            return left < right
        if op == ">":
            return left > right
        if op == "<=":
            return left <= right
        return left >= right
    except TypeError:
        return False


def _apply_filter(name, value, safe, argument):
    """One filter: the new (value, marked safe)."""
    if name == "upper":
        return to_text(value).upper(), safe
    if name == "lower":
        return to_text(value).lower(), safe
    if name == "title":
        return to_text(value).title(), safe
    if name == "length":
        try:
            return len(value), safe
        except TypeError:
            return 0, safe
    if name == "escape":
        if safe:
            return value, True
        return escape(to_text(value)), True
    if name == "safe":
        return value, True
    # default
    if value is None or value == "":
        return argument, safe
    return value, safe
