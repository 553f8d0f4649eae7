"""The shape of the package: no import circle, light package inits, every package shipped, short modules.

These pin what the layout of issue 27 promised, so that the next change cannot quietly undo it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "overnight"

# Modules over 400 lines that hold one concept each, and why they stay whole. A module that passes
# 400 lines and is not here is asking to be split along a concept (not into x.py and xing.py).
LONG: dict[str, str] = {}
MOST_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every overnight module ``name`` imports anywhere in it: at the top, under TYPE_CHECKING, inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("overnight"):
            assert node.module is not None
            submodules = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
            found.update(submodules)
            if len(submodules) < len(node.names):  # names defined in the module itself
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("overnight"))
    return {m for m in found if m in modules and m != name}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return circles


def test_no_module_imports_itself_through_others_not_even_for_types() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert _circles(graph) == []


def test_the_circle_finder_finds_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def _loaded(code: str) -> set[str]:
    script = f"{code}\nimport sys\nprint(' '.join(m for m in sys.modules if m.startswith('overnight')))"
    return set(
        subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout.split()
    )


@pytest.mark.parametrize("package", ["overnight.run", "overnight.judge", "overnight.verify"])
def test_a_package_init_loads_nothing_but_itself(package: str) -> None:
    # the read side imports e.g. overnight.run.ledger: that must not load the controller or the loop
    assert _loaded(f"import {package}") == {"overnight", "overnight._version", package}


def test_the_read_side_loads_what_it_reads() -> None:
    # `overnight log` and the dashboard start from overnight.views: the ledger, the run's folder, the records
    # and what they need, no more. A new module here is a choice to make on purpose.
    assert _loaded("import overnight.views") == {
        "overnight",
        "overnight._version",
        "overnight.bookkeeping",
        "overnight.errors",
        "overnight.git",
        "overnight.globs",
        "overnight.judge",
        "overnight.judge.seeds",
        "overnight.pysource",
        "overnight.records",
        "overnight.run",
        "overnight.run.faults",
        "overnight.run.ledger",
        "overnight.run.paths",
        "overnight.views",
    }


def test_modules_stay_short_unless_they_hold_one_concept() -> None:
    long = {
        name: len(path.read_text(encoding="utf-8").splitlines())
        for name, path in _modules().items()
        if len(path.read_text(encoding="utf-8").splitlines()) > MOST_LINES
    }
    assert set(long) <= set(LONG), {name: lines for name, lines in long.items() if name not in LONG}


@pytest.mark.slow
def test_the_wheel_ships_every_package(tmp_path: Path) -> None:
    root = SRC.parent
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(root),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("overnight-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {str(p.parent.relative_to(SRC)) for p in PACKAGE.rglob("__init__.py")}
    assert {p for p in packages if f"{p}/__init__.py" not in names} == set()
    assert "overnight/examples/quickstart/overnight.toml" in names  # the demo's tasks ship too
    assert any(n.startswith("overnight/agents/prompts/") for n in names)
    assert any(n.startswith("overnight/views/dashboard/static/") for n in names)
