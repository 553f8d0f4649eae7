"""The gate (protected): what render.py must keep doing, however fast it gets.

Plain asserts, no pytest: `python test_render.py` runs every test_* function, prints
each failure with its name, and exits 1 if any failed (0 when all pass).
"""

import html
import sys
import traceback
import types

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


def test_literals():
    check("{{ 'single' }} {{ \"double\" }} {{ 42 }} {{ -3 }} {{ 1.5 }}", {}, "single double 42 -3 1.5")
    check("{{ true }} {{ false }} [{{ none }}] {{ True }} [{{ None }}]", {}, "True False [] True []")
    check('{{ "<b>" }}', {}, "&lt;b&gt;")


def test_dotted_lookups():
    context = {
        "user": {"name": "Ada", "address": {"city": "London"}},
        "obj": Obj(title="Dr", inner=Obj(value=7), data={"k": "v"}, _secret="hidden"),
        "items": ["a", "b", "c"],
        "pairs": [("x", 1), ("y", 2)],
    }
    check("{{ user.name }} {{ user.address.city }}", context, "Ada London")
    check("{{ obj.title }} {{ obj.inner.value }} {{ obj.data.k }}", context, "Dr 7 v")
    check("{{ items.0 }}{{ items.2 }}[{{ items.3 }}]", context, "ac[]")
    check("{{ pairs.1.0 }}={{ pairs.1.1 }}", context, "y=2")
    check("[{{ obj._secret }}][{{ obj.missing }}][{{ user.name.missing }}]", context, "[][][]")


def test_mapping_lookups_use_keys_only():
    check("{{ d.items|length }} [{{ e.items }}] [{{ e.keys }}]", {"d": {"items": [1, 2, 3]}, "e": {}}, "3 [] []")
    check("{{ m.a }}", {"m": types.MappingProxyType({"a": "proxy"})}, "proxy")
    check("{{ d.1 }}", {"d": {"1": "one"}}, "one")


# --- escaping -------------------------------------------------------------------------


def test_autoescape():
    s = "<script>alert(\"x\") & 'y'</script>"
    check("{{ s }}", {"s": s}, "&lt;script&gt;alert(&quot;x&quot;) &amp; &#x27;y&#x27;&lt;/script&gt;")
    check("<p>{{ s }}</p>", {"s": "a&b"}, "<p>a&amp;b</p>")
    check("{{ s }}", {"s": "&amp;"}, "&amp;amp;")
    check("{{ obj }}", {"obj": Shouty()}, "&lt;Shouty &amp; Co&gt;")
    check("{{ d.k }}", {"d": {"k": "<i>"}}, "&lt;i&gt;")
    check("{% for x in xs %}{{ x }}{% endfor %}", {"xs": ["<", ">"]}, "&lt;&gt;")


def test_safe_and_escape_filters():
    context = {"s": "<b>Tom & 'Jerry'</b>"}
    check("{{ s|safe }}", context, "<b>Tom & 'Jerry'</b>")
    check("{{ s|escape }}", context, "&lt;b&gt;Tom &amp; &#x27;Jerry&#x27;&lt;/b&gt;")
    check("{{ s|escape|escape }}", context, "&lt;b&gt;Tom &amp; &#x27;Jerry&#x27;&lt;/b&gt;")
    check("{{ s|safe|escape }}", context, "<b>Tom & 'Jerry'</b>")
    check("{{ s|safe|upper }}", context, "<B>TOM & 'JERRY'</B>")
    check("{{ s|escape|upper }}", context, "&LT;B&GT;TOM &AMP; &#X27;JERRY&#X27;&LT;/B&GT;")
    check("{{ s|upper }}", context, "&lt;B&gt;TOM &amp; &#x27;JERRY&#x27;&lt;/B&gt;")
    check("[{{ missing|escape }}][{{ missing|safe }}]", {}, "[][]")
    check("{{ n|escape }}", {"n": 5}, "5")


def test_escaping_matches_html_escape():
    text = "".join(chr(c) for c in range(32, 127)) + " é ✓"
    check("{{ t }}", {"t": text}, html.escape(text, quote=True))


# --- filters --------------------------------------------------------------------------


def test_case_filters():
    context = {"s": "hello wORLD", "q": "they're bill's o'neil", "n": 12, "none": None}
    check("{{ s|upper }}|{{ s|lower }}|{{ s|title }}", context, "HELLO WORLD|hello world|Hello World")
    check("{{ q|title }}", context, "They&#x27;Re Bill&#x27;S O&#x27;Neil")
    check("[{{ n|upper }}][{{ none|upper }}][{{ missing|lower }}][{{ none|title }}]", context, "[12][][][]")
    check("{{ 'MiXeD cAsE'|lower }} {{ 'straße'|upper }}", {}, "mixed case STRASSE")


def test_length_filter():
    context = {"xs": [1, 2, 3], "s": "hello", "d": {"a": 1, "b": 2}, "t": (1,), "none": None, "n": 7, "empty": []}
    check("{{ xs|length }} {{ s|length }} {{ d|length }} {{ t|length }} {{ empty|length }}", context, "3 5 2 1 0")
    check("{{ none|length }} {{ missing|length }} {{ n|length }}", context, "0 0 0")


def test_default_filter():
    context = {"none": None, "empty": "", "zero": 0, "no": False, "nil": [], "name": "x", "fallback": "fb"}
    check('{{ missing|default:"d" }}|{{ none|default:"d" }}|{{ empty|default:"d" }}', context, "d|d|d")
    check(
        '{{ zero|default:"d" }}|{{ no|default:"d" }}|{{ nil|default:"d" }}|{{ name|default:"d" }}',
        context,
        "0|False|[]|x",
    )
    check(
        "{{ missing|default:'single' }} {{ missing|default:fallback }} {{ missing|default:3 }}", context, "single fb 3"
    )
    check('{{ missing|default:"a|b:c d" }}', context, "a|b:c d")
    check('{{ missing|default:"<none>" }}', context, "&lt;none&gt;")
    check('{{ missing|default:"" }}]', context, "]")


def test_chained_filters():
    context = {"name": "aDA lovelace", "xs": ["a", "b"], "s": "<x>"}
    check("{{ name|lower|title }}", context, "Ada Lovelace")
    check('{{ missing|default:"anon"|upper }}', context, "ANON")
    check('{{ name|upper|default:"anon"|lower }}', context, "ada lovelace")
    check("{{ xs|length|upper }}", context, "2")
    check('{{ missing|length|default:"x" }}', context, "0")
    check("{{ s|lower|escape|upper }}", context, "&LT;X&GT;")
    check("{{ name | title | upper }}", context, "ADA LOVELACE")


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


# --- conditions -----------------------------------------------------------------------


def test_if_truthiness():
    template = "{% if v %}T{% else %}F{% endif %}"
    for value in (0, 0.0, "", [], {}, (), None, False):
        check(template, {"v": value}, "F")
    for value in (1, -1, 0.5, "0", "a", [0], {"a": 1}, True, Obj()):
        check(template, {"v": value}, "T")
    check(template, {}, "F")
    check("{% if u.name %}T{% else %}F{% endif %}", {"u": {"name": ""}}, "F")


def test_if_elif_else():
    template = "{% if n > 10 %}big{% elif n > 5 %}medium{% elif n > 0 %}small{% else %}none{% endif %}"
    for n, expected in (
        (20, "big"),
        (11, "big"),
        (10, "medium"),
        (6, "medium"),
        (5, "small"),
        (1, "small"),
        (0, "none"),
        (-4, "none"),
    ):
        check(template, {"n": n}, expected)
    check("a{% if no %}b{% endif %}c", {"no": False}, "ac")
    check("a{% if no %}b{% elif no %}c{% endif %}d", {"no": False}, "ad")
    check("{% if yes %}1{% elif yes %}2{% else %}3{% endif %}", {"yes": True}, "1")


def test_not_and_or():
    template = "{% if {} %}T{% else %}F{% endif %}"
    table = {
        "not a": {(0, 0, 0): "T", (1, 0, 0): "F"},
        "not not a": {(0, 0, 0): "F", (1, 0, 0): "T"},
        "a and b": {(1, 1, 0): "T", (1, 0, 0): "F", (0, 1, 0): "F"},
        "a or b": {(0, 0, 0): "F", (1, 0, 0): "T", (0, 1, 0): "T"},
        "a or b and c": {(1, 0, 0): "T", (0, 1, 0): "F", (0, 1, 1): "T"},
        "(a or b) and c": {(1, 0, 0): "F", (1, 0, 1): "T", (0, 1, 1): "T"},
        "not a and b": {(0, 1, 0): "T", (1, 1, 0): "F", (0, 0, 0): "F"},
        "not (a and b)": {(1, 1, 0): "F", (1, 0, 0): "T"},
        "a and not b or c": {(1, 0, 0): "T", (1, 1, 0): "F", (1, 1, 1): "T"},
    }
    for condition, cases in table.items():
        for (a, b, c), expected in cases.items():
            check(template.replace("{}", condition), {"a": a, "b": b, "c": c}, expected)


def test_comparisons():
    context = {"n": 3, "f": 3.0, "s": "abc", "none": None, "name": "Ada", "xs": [1, 2, 3]}
    cases = {
        "n == 3": "T",
        "n == 4": "F",
        "n != 4": "T",
        "n != 3": "F",
        "n == f": "T",
        "n < 4": "T",
        "n < 3": "F",
        "n > 2": "T",
        "n > 3": "F",
        "n <= 3": "T",
        "n <= 2": "F",
        "n >= 3": "T",
        "n >= 4": "F",
        "s == 'abc'": "T",
        's == "abd"': "F",
        's < "abd"': "T",
        's > "abd"': "F",
        's != "ABC"': "T",
        "n == '3'": "F",
        "n != '3'": "T",
        "none == none": "T",
        "missing == none": "T",
        "none != 0": "T",
        "none < 3": "F",
        "none > 3": "F",
        "s < 3": "F",
        "not none < 3": "T",
        "xs|length == 3": "T",
        "xs|length > 3": "F",
        "name|lower == 'ada'": "T",
        "name|upper != 'ADA'": "F",
        "n == 3 and s == 'abc'": "T",
        "n == 4 or s == 'x'": "F",
        "s == 'a and b'": "F",
        "-3 < n": "T",
        "1.5 < n": "T",
        "n > 2.5": "T",
    }
    for condition, expected in cases.items():
        check("{% if " + condition + " %}T{% else %}F{% endif %}", context, expected)


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
    tests = [(name, test) for name, test in globals().items() if name.startswith("test_") and callable(test)]
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
