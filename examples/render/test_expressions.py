"""The gate, continued: expressions (values, lookups, escaping, filters, conditions).

Run with the rest by `python test_render.py`, which imports this file.
"""

import html
import types

from test_render import Obj, Shouty, check

# --- values and lookups ---------------------------------------------------------------


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
