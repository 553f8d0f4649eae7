"""examples/render: the gate catches broken renderers, the benchmark checks every output,
and a real run keeps a faster renderer and refuses a fast but wrong one."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Repo, ledger_rows
from overnight.config import load_config
from overnight.executors.metrics import summary_values

pytestmark = pytest.mark.slow  # a heavy group: `pytest -m 'not slow'` leaves it out

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "render"

# Appended to the shipped render.py: the same parser, but each template is compiled once
# (cached) into closures, so nothing is lexed again and the output is joined, not
# concatenated. The behaviour is the shipped one: it reuses its lookups and filters.
COMPILED = '''

# --- compile each template once into closures -----------------------------------
import functools

from expressions import _COMPARISONS, _LITERALS, _NO_ARGUMENT, _apply_filter, _compare, _lookup


class _Compiler:
    """The grammar of Expression, building functions of the scope instead of values."""

    def __init__(self, source, line):
        self.tokens = Expression(source, {}, line).tokens  # already checked by _parse
        self.pos = 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def take(self):
        self.pos += 1
        return self.tokens[self.pos - 1]

    def either(self):
        parts = [self.both()]
        while self.peek() == ("name", "or"):
            self.take()
            parts.append(self.both())
        if len(parts) == 1:
            return parts[0]
        return lambda scope: any([bool(part(scope)) for part in parts])

    def both(self):
        parts = [self.negation()]
        while self.peek() == ("name", "and"):
            self.take()
            parts.append(self.negation())
        if len(parts) == 1:
            return parts[0]
        return lambda scope: all([bool(part(scope)) for part in parts])

    def negation(self):
        if self.peek() == ("name", "not"):
            self.take()
            inner = self.negation()
            return lambda scope: not inner(scope)
        return self.comparison()

    def comparison(self):
        left = self.filtered()
        kind, text = self.peek()
        if kind == "op" and text in _COMPARISONS:
            self.take()
            right = self.filtered()
            return lambda scope: _compare(text, left(scope)[0], right(scope)[0])
        return lambda scope: left(scope)[0]

    def filtered(self):
        primary = self.primary()
        filters = []
        while self.peek() == ("op", "|"):
            self.take()
            name = self.take()[1]
            argument = None
            if self.peek() == ("op", ":"):
                self.take()
                argument = self.primary()
            filters.append((name, argument))
        if not filters:
            return lambda scope: (primary(scope), False)

        def run(scope):
            value, safe = primary(scope), False
            for name, argument in filters:
                value, safe = _apply_filter(name, value, safe, _NO_ARGUMENT if argument is None else argument(scope))
            return value, safe

        return run

    def primary(self):
        kind, text = self.take()
        if kind == "string":
            value = text[1:-1]
        elif kind == "number":
            value = float(text) if "." in text else int(text)
        elif kind == "op":
            inner = self.either()
            self.take()
            return inner
        elif text in _LITERALS:
            value = _LITERALS[text]
        elif "." in text:
            return lambda scope: _lookup(text, scope)
        else:
            return lambda scope: scope.get(text)
        return lambda scope: value


def _compile(nodes):
    parts = []
    for node in nodes:
        if node["type"] == "text":
            parts.append(lambda scope, text=node["text"]: text)
        elif node["type"] == "var":
            parts.append(_compile_var(_Compiler(node["source"], node["line"]).filtered()))
        elif node["type"] == "for":
            parts.append(_compile_for(node))
        else:
            parts.append(_compile_if(node))
    return lambda scope: "".join([part(scope) for part in parts])


def _compile_var(value_of):
    def run(scope):
        value, safe = value_of(scope)
        text = to_text(value)
        return text if safe else escape(text)

    return run


def _compile_for(node):
    items_of = _Compiler(node["source"], node["line"]).filtered()
    body = _compile(node["body"])
    name = node["name"]

    def run(scope):
        items = items_of(scope)[0]
        items = [] if items is None else list(items)
        last = len(items) - 1
        out = []
        for index, item in enumerate(items):
            inner = dict(scope)
            inner[name] = item
            inner["loop"] = {"index": index + 1, "index0": index, "first": index == 0, "last": index == last, "length": last + 1}
            out.append(body(inner))
        return "".join(out)

    return run


def _compile_if(node):
    branches = [(_Compiler(condition, node["line"]).either(), _compile(body)) for condition, body in node["branches"]]
    otherwise = _compile(node["else"]) if node["else"] is not None else None

    def run(scope):
        for condition, body in branches:
            if condition(scope):
                return body(scope)
        return otherwise(scope) if otherwise else ""

    return run


@functools.lru_cache(maxsize=256)
def _compiled(template):
    return _compile(_parse(template))


def render(template, context):
    return _compiled(template)(dict(context))
'''

# The same, but quotes and apostrophes are no longer escaped.
COMPILED_WRONG = (
    COMPILED
    + """

def escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
"""
)

# Broken renderers the gate must reject: (id, file, text in that file, its replacement).
BREAKAGES = [
    ("no autoescape", "render.py", "                text = escape(text)\n", "                pass\n"),
    ("apostrophe not escaped", "expressions.py", """text = text.replace("'", "&#x27;")""", "pass"),
    ("loops render once", "render.py", "for index in range(len(items)):", "for index in range(min(len(items), 1)):"),
    ("loop.last never true", "render.py", '"last": index == len(items) - 1,', '"last": False,'),
    ("loop.index from 0", "render.py", '"index": index + 1,', '"index": index,'),
    ("loop scope leaks", "render.py", "inner = dict(scope)", "inner = scope"),
    (
        "upper gives lower",
        "expressions.py",
        "return to_text(value).upper(), safe",
        "return to_text(value).lower(), safe",
    ),
    (
        "title is capitalize",
        "expressions.py",
        "return to_text(value).title(), safe",
        "return to_text(value).capitalize(), safe",
    ),
    ("length off by one", "expressions.py", "return len(value), safe", "return len(value) - 1, safe"),
    ("default on falsy", "expressions.py", 'if value is None or value == "":', "if not value:"),
    ("escape escapes twice", "expressions.py", "        if safe:\n            return value, True\n", ""),
    (
        "zero renders empty",
        "expressions.py",
        '    if value is None:\n        return ""\n',
        '    if not value:\n        return ""\n',
    ),
    (
        "elif ignored",
        "render.py",
        'for condition, body in node["branches"]:',
        'for condition, body in node["branches"][:1]:',
    ),
    ("not ignored", "expressions.py", "return not self.negation()", "return self.negation()"),
    ("!= is ==", "expressions.py", "return left != right", "return left == right"),
    ("no attribute lookup", "expressions.py", 'elif not part.startswith("_") and hasattr(value, part):', "elif False:"),
    (
        "private attributes exposed",
        "expressions.py",
        'elif not part.startswith("_") and hasattr(value, part):',
        "elif hasattr(value, part):",
    ),
    (
        "unknown tags ignored",
        "render.py",
        'raise TemplateSyntaxError(f"unknown tag {{% {source} %}}", line)',
        "continue",
    ),
    ("unknown filters ignored", "expressions.py", 'self.fail(f"unknown filter {name!r}")', "return value, safe"),
    (
        "outputs cached per template",
        "render.py",
        "def render(template, context):\n",
        "_CACHE = {}\n\n\ndef render(template, context):\n"
        "    if template not in _CACHE:\n        _CACHE[template] = _render(template, context)\n"
        "    return _CACHE[template]\n\n\ndef _render(template, context):\n",
    ),
]


def copy_task(dest: Path) -> Path:
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def run_script(folder: Path, script: str, budget_s: float | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if budget_s is not None:
        env["OVERNIGHT_BUDGET_S"] = str(budget_s)
    return subprocess.run([sys.executable, script], cwd=folder, env=env, capture_output=True, text=True, timeout=60)


def use_this_python(task: Path, budget_s: int | None = None) -> None:
    """Point the task's commands at the interpreter running the tests (and shorten its budget)."""
    config = re.sub(r'"python3? ', f'"{shlex.quote(sys.executable)} ', (task / "overnight.toml").read_text())
    if budget_s is not None:
        config = re.sub(r"^budget_s = \d+", f"budget_s = {budget_s}", config, flags=re.M)
    (task / "overnight.toml").write_text(config)


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not in {path.name} exactly once: update this test"
    path.write_text(text.replace(old, new))


def test_the_config_is_valid() -> None:
    config = load_config(EXAMPLE / "overnight.toml")
    assert config.task.run.endswith(" bench.py") and config.task.gate.endswith(" test_render.py")
    assert config.task.editable == ("render.py", "expressions.py") and config.task.budget_s == 10
    assert (config.metric.name, config.metric.goal) == ("cpu_us", "min")
    assert config.judge.min_delta > 0
    assert config.agent.kind == "command" and not config.agent.command


def test_the_gate_passes_on_the_shipped_renderer(tmp_path: Path) -> None:
    result = run_script(copy_task(tmp_path / "render"), "test_render.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tests passed" in result.stdout


@pytest.mark.parametrize(("file", "old", "new"), [b[1:] for b in BREAKAGES], ids=[b[0] for b in BREAKAGES])
def test_the_gate_fails_on_a_broken_renderer(tmp_path: Path, file: str, old: str, new: str) -> None:
    task = copy_task(tmp_path / "render")
    replace_once(task / file, old, new)
    result = run_script(task, "test_render.py")
    assert result.returncode != 0, result.stdout
    assert "FAIL test_" in result.stdout


def test_the_bench_prints_the_metric(tmp_path: Path) -> None:
    result = run_script(copy_task(tmp_path / "render"), "bench.py", budget_s=2)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "---" in lines
    summary = summary_values("\n".join(lines[lines.index("---") :]))
    assert summary["render_us"] > 0 and summary["cpu_us"] > 0
    assert summary["renders"] >= 1
    # It stops timing at half its budget; the bound only catches a bench that ignores its budget
    # altogether, with room for start-up and warm-up on a busy machine.
    assert 0 < summary["total_seconds"] < 30


@pytest.mark.parametrize(
    ("file", "old", "new"),
    [b[1:] for b in BREAKAGES if b[0] in ("upper gives lower", "apostrophe not escaped", "loop.last never true")],
    ids=["upper gives lower", "apostrophe not escaped", "loop.last never true"],
)
def test_the_bench_fails_on_wrong_output(tmp_path: Path, file: str, old: str, new: str) -> None:
    task = copy_task(tmp_path / "render")
    replace_once(task / file, old, new)
    result = run_script(task, "bench.py", budget_s=1)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "rendered differently" in result.stdout and "render_us" not in result.stdout


def test_the_compiled_renderer_passes_the_gate_and_the_bench(tmp_path: Path) -> None:
    task = copy_task(tmp_path / "render")
    (task / "render.py").write_text((EXAMPLE / "render.py").read_text() + COMPILED)
    assert run_script(task, "test_render.py").returncode == 0
    assert run_script(task, "bench.py", budget_s=1).returncode == 0
    (task / "render.py").write_text((EXAMPLE / "render.py").read_text() + COMPILED_WRONG)
    assert run_script(task, "test_render.py").returncode == 1
    assert run_script(task, "bench.py", budget_s=1).returncode == 1


def test_a_run_keeps_a_faster_renderer_and_refuses_a_wrong_one(repo: Repo, tmp_path: Path, cli) -> None:
    task = copy_task(repo.path / "render")
    use_this_python(task, budget_s=2)
    repo.commit("the render task")

    shipped = (EXAMPLE / "render.py").read_text()
    proposals = tmp_path / "proposals"
    proposals.mkdir()
    (proposals / "render_1.py").write_text(shipped + COMPILED_WRONG)  # experiment 1: fast, wrong
    (proposals / "render_2.py").write_text(shipped + COMPILED)  # experiment 2: fast, right
    agent = (
        f'cp {shlex.quote(str(proposals))}/render_$OVERNIGHT_EXPERIMENT_ID.py render.py && echo "Hypothesis: compile"'
    )

    result = cli("run", task, "--agent-command", agent, "--max-experiments", "2", "--tag", "t")
    assert result.code == 0, result.out + result.err
    assert load_config(task / "overnight.toml").task.budget_s == 2
    rows = ledger_rows(task, "t")
    assert [r["status"] for r in rows] == ["baseline", "gate_failed", "keep"], rows
    assert rows[2]["metric"] < rows[0]["metric"]


def test_a_run_without_an_agent_says_to_name_one(repo: Repo, cli) -> None:
    task = copy_task(repo.path / "render")
    use_this_python(task)
    repo.commit("the render task")
    result = cli("run", task, "--max-experiments", "1")
    assert result.code != 0
    assert "needs a command" in result.err
