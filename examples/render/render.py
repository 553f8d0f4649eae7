"""A small HTML template renderer: the code the agent makes faster.

    render("Hello {{ user.name|title }}!", {"user": {"name": "ada"}})  ->  "Hello Ada!"

It is written plainly, not for speed: every call tokenizes and parses the template
again, every expression is lexed from its source text each time it is evaluated
(once per loop iteration), every loop iteration copies the scope, and the output is
built by string concatenation. Expressions live in expressions.py (editable too).
The behaviour below is what test_render.py checks.

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

from expressions import Expression, TemplateSyntaxError, escape, to_text


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
    Expression(source, {}, line).value()


def _check_condition(source, line):
    """Raise TemplateSyntaxError if ``source`` is not a valid condition."""
    Expression(source, {}, line).condition()


# --- rendering ---------------------------------------------------------------------


def _render_nodes(nodes, scope):
    out = ""
    for node in nodes:
        if node["type"] == "text":
            out = out + node["text"]
        elif node["type"] == "var":
            value, safe = Expression(node["source"], scope, node["line"]).value()
            text = to_text(value)
            if not safe:
                text = escape(text)
            out = out + text
        elif node["type"] == "for":
            items, _ = Expression(node["source"], scope, node["line"]).value()
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
                if not done and Expression(condition, scope, node["line"]).condition():
                    out = out + _render_nodes(body, scope)
                    done = True
            if not done and node["else"] is not None:
                out = out + _render_nodes(node["else"], scope)
    return out
