"""A small HTML template renderer: the file the agent makes faster.

    render("Hello {{ user.name|title }}!", {"user": {"name": "ada"}})  ->  "Hello Ada!"

It is written plainly, not for speed: every call tokenizes and parses the template
again, every expression is lexed from its source text each time it is evaluated
(once per loop iteration), every loop iteration copies the scope, and the output is
built by string concatenation. The behaviour below is what test_render.py checks.

Syntax
    {{ expr }}      the value of expr as text, HTML-escaped unless it went through
                    |safe or |escape; None (and so a missing name) renders as nothing
    {# text #}      a comment: renders as nothing
    {% for x in expr %} ... {% endfor %}
                    the body once per item of expr (nothing for None), with x bound to
                    the item and loop.index (from 1), loop.index0, loop.first,
                    loop.last and loop.length; both names are restored after the loop
    {% if expr %} ... {% elif expr %} ... {% else %} ... {% endif %}
                    the first branch whose condition is true (Python truthiness)
    Text outside these tags is copied as it is, whitespace included.

Expressions
    names           user.name looks up a dict (any mapping) key; on a list or tuple a
                    number part is an index (items.0); on anything else an attribute
                    (never one starting with "_"); a missing name or part is None
    literals        "text", 'text', 12, -3, 1.5, true, false, none (True, False, None)
    filters         x|f|g applies f then g: upper, lower, title (str.title), length
                    (len; 0 for a value without one), escape (HTML-escape, unless
                    marked safe already, and mark safe), safe (mark safe),
                    default:x (x when the value is None or "")
    conditions      not, and, or, parentheses, one comparison per operand pair with
                    ==, !=, <, >, <=, >= (an ordering between values that cannot be
                    ordered, like none < 3, is false)

upper, lower, title and escape work on text: None becomes "", anything else str().
A value marked safe stays marked through later filters. HTML escaping replaces
& < > " ' with &amp; &lt; &gt; &quot; &#x27;.

A malformed template raises TemplateSyntaxError, with the line, on every call, even
when the malformed part is in a branch that is not taken.
"""

import re
from collections.abc import Mapping


class TemplateSyntaxError(Exception):
    """The template is malformed; ``lineno`` is the line (from 1) of the problem."""

    def __init__(self, message, lineno):
        super().__init__(f"{message} (line {lineno})")
        self.message = message
        self.lineno = lineno


def render(template, context):
    """Render ``template`` (a string) with the names in ``context`` (a dict)."""
    nodes = _parse(template)
    scope = dict(context)
    return _render_nodes(nodes, scope)


# --- the template: text and tags --------------------------------------------------

_CLOSERS = {"{{": "}}", "{%": "%}", "{#": "#}"}


def _tokenize(template):
    """Split the template into ("text", text, line), ("var", source, line) and ("tag", source, line)."""
    tokens = []
    text = ""
    line = 1
    pos = 0
    while pos < len(template):
        opener = template[pos : pos + 2]
        if opener in _CLOSERS:
            end = template.find(_CLOSERS[opener], pos + 2)
            if end == -1:
                raise TemplateSyntaxError(f"unclosed {opener!r}", line)
            if text:
                tokens.append(("text", text, line))
                text = ""
            inner = template[pos + 2 : end]
            if opener == "{{":
                tokens.append(("var", inner.strip(), line))
            elif opener == "{%":
                tokens.append(("tag", inner.strip(), line))
            line = line + inner.count("\n")
            pos = end + 2
        else:
            char = template[pos]
            text = text + char
            if char == "\n":
                line = line + 1
            pos = pos + 1
    if text:
        tokens.append(("text", text, line))
    return tokens


def _parse(template):
    """The template as a tree of nodes (dicts); every expression is checked on the way."""
    root = []
    open_blocks = []
    body = root
    for kind, source, line in _tokenize(template):
        if kind == "text":
            body.append({"type": "text", "text": source})
        elif kind == "var":
            if not source:
                raise TemplateSyntaxError("empty {{ }}", line)
            _check_value(source, line)
            body.append({"type": "var", "source": source, "line": line})
        else:
            words = source.split()
            word = words[0] if words else ""
            if word == "for":
                match = re.fullmatch(r"for\s+([A-Za-z_]\w*)\s+in\s+(.+)", source, re.S)
                if not match:
                    raise TemplateSyntaxError(
                        f"malformed tag {{% {source} %}}: expected {{% for name in expression %}}", line
                    )
                _check_value(match.group(2), line)
                node = {"type": "for", "name": match.group(1), "source": match.group(2), "body": [], "line": line}
                body.append(node)
                open_blocks.append(node)
                body = node["body"]
            elif word == "if":
                condition = source[2:].strip()
                if not condition:
                    raise TemplateSyntaxError("{% if %} needs a condition", line)
                _check_condition(condition, line)
                node = {"type": "if", "branches": [(condition, [])], "else": None, "line": line}
                body.append(node)
                open_blocks.append(node)
                body = node["branches"][0][1]
            elif word == "elif":
                if not open_blocks or open_blocks[-1]["type"] != "if":
                    raise TemplateSyntaxError("{% elif %} outside {% if %}", line)
                node = open_blocks[-1]
                if node["else"] is not None:
                    raise TemplateSyntaxError("{% elif %} after {% else %}", line)
                condition = source[4:].strip()
                if not condition:
                    raise TemplateSyntaxError("{% elif %} needs a condition", line)
                _check_condition(condition, line)
                node["branches"].append((condition, []))
                body = node["branches"][-1][1]
            elif word == "else":
                if source != "else":
                    raise TemplateSyntaxError(f"malformed tag {{% {source} %}}", line)
                if not open_blocks or open_blocks[-1]["type"] != "if":
                    raise TemplateSyntaxError("{% else %} outside {% if %}", line)
                node = open_blocks[-1]
                if node["else"] is not None:
                    raise TemplateSyntaxError("a second {% else %}", line)
                node["else"] = []
                body = node["else"]
            elif word in ("endfor", "endif"):
                if source != word:
                    raise TemplateSyntaxError(f"malformed tag {{% {source} %}}", line)
                if not open_blocks or "end" + open_blocks[-1]["type"] != word:
                    raise TemplateSyntaxError(f"unexpected {{% {word} %}}", line)
                open_blocks.pop()
                body = _current_body(open_blocks, root)
            else:
                raise TemplateSyntaxError(f"unknown tag {{% {source} %}}", line)
    if open_blocks:
        node = open_blocks[-1]
        raise TemplateSyntaxError(f"{{% {node['type']} %}} is never closed", node["line"])
    return root


def _current_body(open_blocks, root):
    """Where the next node goes: the body of the innermost open block, or the root."""
    if not open_blocks:
        return root
    node = open_blocks[-1]
    if node["type"] == "for":
        return node["body"]
    if node["else"] is not None:
        return node["else"]
    return node["branches"][-1][1]


def _check_value(source, line):
    """Raise TemplateSyntaxError if ``source`` is not a valid value expression."""
    _Expression(source, {}, line).value()


def _check_condition(source, line):
    """Raise TemplateSyntaxError if ``source`` is not a valid condition."""
    _Expression(source, {}, line).condition()


# --- rendering ---------------------------------------------------------------------


def _render_nodes(nodes, scope):
    out = ""
    for node in nodes:
        if node["type"] == "text":
            out = out + node["text"]
        elif node["type"] == "var":
            value, safe = _Expression(node["source"], scope, node["line"]).value()
            text = _to_text(value)
            if not safe:
                text = _escape(text)
            out = out + text
        elif node["type"] == "for":
            items, _ = _Expression(node["source"], scope, node["line"]).value()
            if items is None:
                items = []
            items = list(items)
            for index in range(len(items)):
                inner = dict(scope)
                inner[node["name"]] = items[index]
                inner["loop"] = {
                    "index": index + 1,
                    "index0": index,
                    "first": index == 0,
                    "last": index == len(items) - 1,
                    "length": len(items),
                }
                out = out + _render_nodes(node["body"], inner)
        elif node["type"] == "if":
            done = False
            for condition, body in node["branches"]:
                if not done and _Expression(condition, scope, node["line"]).condition():
                    out = out + _render_nodes(body, scope)
                    done = True
            if not done and node["else"] is not None:
                out = out + _render_nodes(node["else"], scope)
    return out


def _to_text(value):
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return str(value)


def _escape(text):
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


class _Expression:
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
        return _to_text(value).upper(), safe
    if name == "lower":
        return _to_text(value).lower(), safe
    if name == "title":
        return _to_text(value).title(), safe
    if name == "length":
        try:
            return len(value), safe
        except TypeError:
            return 0, safe
    if name == "escape":
        if safe:
            return value, True
        return _escape(_to_text(value)), True
    if name == "safe":
        return value, True
    # default
    if value is None or value == "":
        return argument, safe
    return value, safe
