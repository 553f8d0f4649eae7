"""The gate (protected): what render.py must keep doing, however fast it gets.

Plain asserts, no pytest: `python test_render.py` runs every test_* function of this file
and of test_expressions.py, prints each failure with its name, and exits 1 if any failed
(0 when all pass).
"""

import html
import sys
import traceback

from render import TemplateSyntaxError, render


def check(template, context, expected):
    got = render(template, context)
    assert got == expected, f"render({template!r}) gave {got!r}, expected {expected!r}"


def syntax_error(template, context=None, lineno=None):
    """Assert that rendering ``template`` raises TemplateSyntaxError (on the given line)."""
    try:
        got = render(template, context or {})
    except TemplateSyntaxError as exc:
        if lineno is not None:
            assert exc.lineno == lineno, f"render({template!r}) raised at line {exc.lineno}, expected line {lineno}"
        return exc
    raise AssertionError(f"render({template!r}) gave {got!r}, expected TemplateSyntaxError")


class Obj:
    """Attributes for dotted lookups."""

    def __init__(self, **attrs):
        for name, value in attrs.items():
            setattr(self, name, value)


class Shouty:
    def __str__(self):
        return "<Shouty & Co>"


# --- text and variables ---------------------------------------------------------------


def test_plain_text_is_copied_exactly():
    check("", {}, "")
    check("plain text", {}, "plain text")
    text = "  lone { and } braces, }} and %} and #}, {x} and { {, tabs\tand\nnew\r\nlines  \n"
    check(text, {}, text)
    check("héllo — ✓ 日本", {}, "héllo — ✓ 日本")


def test_variables():
    check("Hello {{ name }}!", {"name": "World"}, "Hello World!")
    check("{{name}}|{{  name  }}|{{\nname\n}}", {"name": "x"}, "x|x|x")
    check("{{ a }}{{ b }}{{ a }}", {"a": "1", "b": "2"}, "121")
    check("{{ name }} ✓ {{ other }}", {"name": "héllo", "other": "日本"}, "héllo ✓ 日本")


def test_missing_and_none_render_as_nothing():
    check(
        "[{{ missing }}][{{ nothing }}][{{ user.missing }}][{{ missing.deeper.still }}]",
        {"nothing": None, "user": {}},
        "[][][][]",
    )
    check("[{{ user.name.first }}]", {"user": {"name": None}}, "[]")


def test_values_that_are_not_text():
    context = {"zero": 0, "n": 42, "f": 2.5, "yes": True, "no": False, "items": [1, 2], "empty": ""}
    check(
        "{{ zero }} {{ n }} {{ f }} {{ yes }} {{ no }} {{ items }} [{{ empty }}]",
        context,
        "0 42 2.5 True False [1, 2] []",
    )


# --- loops ----------------------------------------------------------------------------


def test_for_loop():
    check("{% for x in xs %}[{{ x }}]{% endfor %}", {"xs": ["a", "b", "c"]}, "[a][b][c]")
    check("{% for x in xs %}[{{ x }}]{% endfor %}", {"xs": []}, "")
    check("a{% for x in missing %}[{{ x }}]{% endfor %}b", {}, "ab")
    check("a{% for x in none %}[{{ x }}]{% endfor %}b", {"none": None}, "ab")
    check("{% for x in t %}{{ x }}{% endfor %}", {"t": (1, 2)}, "12")
    check("{% for c in s %}{{ c }}.{% endfor %}", {"s": "abc"}, "a.b.c.")
    check("{% for k in d %}{{ k }}{% endfor %}", {"d": {"p": 1, "q": 2}}, "pq")
    check("{% for n in r %}{{ n }}{% endfor %}", {"r": range(4)}, "0123")
    check("{% for u in users %}{{ u.name }} {% endfor %}", {"users": [{"name": "a"}, Obj(name="b")]}, "a b ")
    check("{% for p in pairs %}{{ p.0 }}={{ p.1 }};{% endfor %}", {"pairs": [("x", 1), ("y", 2)]}, "x=1;y=2;")


def test_loop_variables():
    context = {"xs": ["a", "b", "c"]}
    check(
        "{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }} {% endfor %}",
        context,
        "10TrueFalse3 21FalseFalse3 32FalseTrue3 ",
    )
    check("{% for x in xs %}{{ x }}{% if not loop.last %}, {% endif %}{% endfor %}", context, "a, b, c")
    check(
        "{% for x in xs %}{% if loop.first %}<{% endif %}{{ x }}{% if loop.last %}>{% endif %}{% endfor %}",
        context,
        "<abc>",
    )
    check("{% for x in xs %}{{ loop.first }}{{ loop.last }}{% endfor %}", {"xs": [1]}, "TrueTrue")


def test_nested_loops_shadow_and_restore_loop():
    context = {"rows": [["a", "b"], ["c"], []]}
    template = "{% for row in rows %}{{ loop.index }}:{% for c in row %}{{ loop.index }}{{ c }}{% if loop.last %}!{% endif %}{% endfor %}/{{ loop.index }}{{ loop.last }};{% endfor %}"
    check(template, context, "1:1a2b!/1False;2:1c!/2False;3:/3True;")
    grid = (
        "{% for i in xs %}{% for j in xs %}{% for k in xs %}{{ i }}{{ j }}{{ k }} {% endfor %}{% endfor %}{% endfor %}"
    )
    check(grid, {"xs": [0, 1]}, "000 001 010 011 100 101 110 111 ")
    outer = "{% for o in os %}{% for i in o.items %}{{ o.name }}.{{ i }}({{ loop.length }}) {% endfor %}{% endfor %}"
    check(outer, {"os": [{"name": "A", "items": [1, 2]}, {"name": "B", "items": [3]}]}, "A.1(2) A.2(2) B.3(1) ")


def test_loop_names_are_restored_after_the_loop():
    context = {"x": "outer", "xs": [1, 2, 3]}
    check("{{ x }}{% for x in xs %}{{ x }}{% endfor %}{{ x }}", context, "outer123outer")
    check("{% for y in xs %}{% endfor %}[{{ y }}][{{ loop.index }}]", context, "[][]")
    check("{% for x in xs %}{{ x }}{% endfor %}{% for x in xs %}{{ loop.index }}{% endfor %}", context, "123123")
    original = {"x": "outer", "xs": [1, 2, 3]}
    render("{% for x in xs %}{{ x }}{% endfor %}", original)
    assert original == {"x": "outer", "xs": [1, 2, 3]}, f"render changed the context: {original}"


def test_long_loop_renders_every_item():
    xs = list(range(1000))
    check("{% for x in xs %}{{ x }},{% endfor %}", {"xs": xs}, "".join(f"{x}," for x in xs))
    check("{% for x in xs %}{% if loop.last %}{{ loop.index }}{% endif %}{% endfor %}", {"xs": xs}, "1000")


# --- blocks and comments ------------------------------------------------------------


def test_blocks_nest_and_keep_whitespace():
    template = "  {% if show %}\n  <ul>\n  {% for x in xs %}  <li>{{ x }}{% if loop.last %} (last){% endif %}</li>\n  {% endfor %}</ul>\n  {% endif %}\n"
    check(
        template, {"show": True, "xs": ["a", "b"]}, "  \n  <ul>\n    <li>a</li>\n    <li>b (last)</li>\n  </ul>\n  \n"
    )
    check(template, {"show": False, "xs": ["a", "b"]}, "  \n")
    template = "{% for u in users %}{% if u.admin %}{{ u.name|upper }}{% elif u.active %}{{ u.name }}{% else %}-{% endif %}{% if not loop.last %},{% endif %}{% endfor %}"
    users = [
        {"name": "a", "admin": True},
        {"name": "b", "active": True},
        {"name": "c"},
        Obj(name="d", admin=False, active=1),
    ]
    check(template, {"users": users}, "A,b,-,d")


def test_comments():
    check("a{# a comment #}b", {}, "ab")
    check("a{# {{ x|nosuch }} {% bogus %} #}b", {}, "ab")
    check("a{#\nmulti\nline\n#}b{{ x }}", {"x": 1}, "ab1")


# --- errors ---------------------------------------------------------------------------


def test_syntax_errors():
    assert issubclass(TemplateSyntaxError, Exception)
    for template in (
        "{{ name",
        "{% if x %}",
        "{% if x %}{% else %}",
        "{% for x in xs %}",
        "{% for x in xs %}{% if x %}{% endfor %}",
        "{% endif %}",
        "{% endfor %}",
        "{% for x in xs %}{% endif %}",
        "{% if x %}{% endfor %}",
        "{% if x %}{% else %}{% else %}{% endif %}",
        "{% if x %}{% else %}{% elif y %}{% endif %}",
        "{% else %}",
        "{% elif x %}",
        "{% for x in xs %}{% else %}{% endfor %}",
        "{% if %}{% endif %}",
        "{% if x %}{% elif %}{% endif %}",
        "{% for x xs %}{% endfor %}",
        "{% for in xs %}{% endfor %}",
        "{% for x in %}{% endfor %}",
        "{% bogus %}",
        "{% %}",
        "{{ }}",
        "{{ name|nosuch }}",
        "{{ name|default }}",
        "{{ name|upper:'x' }}",
        "{{ name| }}",
        "{{ a b }}",
        "{{ a == b }}",
        "{{ 'unterminated }}",
        "{{ a.b. }}",
        "{{ @ }}",
        "{% if (a %}{% endif %}",
        "{% if a) %}{% endif %}",
        "{% if a == %}{% endif %}",
        "{% if a and %}{% endif %}",
        "{% if not %}{% endif %}",
        "{% if a = b %}{% endif %}",
        "{% if a < b < c %}{% endif %}",
        "a {# unclosed comment",
    ):
        syntax_error(template, {"x": 1, "xs": [1], "name": "n", "a": 1, "b": 2})


def test_syntax_errors_are_raised_even_where_nothing_renders():
    syntax_error("{% if false %}{{ x|nosuch }}{% endif %}")
    syntax_error("{% for x in empty %}{% bogus %}{% endfor %}", {"empty": []})
    syntax_error("{% if true %}ok{% else %}{{ a b }}{% endif %}")
    syntax_error("{% if true %}ok{% elif a == %}x{% endif %}")


def test_syntax_error_line_numbers():
    syntax_error("line 1\nline 2\n{{ x|nosuch }}", lineno=3)
    syntax_error("{{ a }}\n\n{% if x %}\n{% endfor %}", lineno=4)
    syntax_error("{# one\ntwo #}\n{% for x in xs %}\n\n", lineno=3)
    syntax_error("a\n{{ b\n", lineno=2)
    syntax_error("{{\nfine\n}}{% bogus %}", lineno=3)
    exc = syntax_error("x\n{% bogus %}")
    assert "2" in str(exc), f"the message should name the line: {exc}"


# --- behaviour across calls -----------------------------------------------------------


def test_same_template_with_other_contexts():
    template = "{% for x in xs %}{{ x|upper }}{% endfor %}-{{ n }}"
    context = {"xs": ["a"], "n": 1}
    check(template, context, "A-1")
    context["xs"].append("b")
    context["n"] = 2
    check(template, context, "AB-2")
    check(template, {"xs": ["z"], "n": 3}, "Z-3")
    check(template, {}, "-")
    product = Obj(name="old")
    check("{{ p.name }}", {"p": product}, "old")
    product.name = "new"
    check("{{ p.name }}", {"p": product}, "new")


def test_many_different_templates():
    for i in range(300):
        check(f"{{{{ a }}}}-{i}-{{% if a == {i} %}}eq{{% endif %}}", {"a": i}, f"{i}-{i}-eq")
        check(f"{{% for x in xs %}}{{{{ x }}}}{i % 7}{{% endfor %}}", {"xs": [i, i + 1]}, f"{i}{i % 7}{i + 1}{i % 7}")


def test_a_listing_against_plain_python():
    items = [
        Obj(name=f"Item <{i}> & \"co\" 'x'", price=i * 3, stock=i % 4, tags=["Red", "BLUE", "green"][: i % 4])
        for i in range(60)
    ]
    template = (
        '<ul>{% for it in items %}\n<li class="{% if loop.first %}first{% elif loop.last %}last{% endif %}">'
        "{{ loop.index }}. {{ it.name }} {{ it.price }}"
        "{% if it.stock == 0 %} sold out{% elif it.stock < 2 %} low{% else %} ok{% endif %}"
        "{% for t in it.tags %} {{ t|lower }}{% endfor %}</li>{% endfor %}\n</ul>"
    )
    expected = "<ul>"
    for i, it in enumerate(items):
        cls = "first" if i == 0 else "last" if i == len(items) - 1 else ""
        stock = " sold out" if it.stock == 0 else " low" if it.stock < 2 else " ok"
        tags = "".join(" " + t.lower() for t in it.tags)
        expected += f'\n<li class="{cls}">{i + 1}. {html.escape(it.name)} {it.price}{stock}{tags}</li>'
    expected += "\n</ul>"
    check(template, {"items": items}, expected)


# --- the runner -----------------------------------------------------------------------


def main():
    # test_expressions.py takes its helpers from this file: let its import find this module
    # rather than load a second copy of it
    sys.modules.setdefault("test_render", sys.modules[__name__])
    import test_expressions

    modules = (sys.modules[__name__], test_expressions)
    tests = [
        (name, test) for m in modules for name, test in vars(m).items() if name.startswith("test_") and callable(test)
    ]
    failed = []
    for name, test in tests:
        try:
            test()
        except Exception as exc:
            failed.append(name)
            where = traceback.extract_tb(exc.__traceback__)[-1]
            print(f"FAIL {name}: {type(exc).__name__}: {exc} (line {where.lineno} of {where.filename})")
    if failed:
        print(f"{len(failed)} of {len(tests)} tests failed: {', '.join(failed)}")
        sys.exit(1)
    print(f"all {len(tests)} tests passed")


if __name__ == "__main__":
    main()
