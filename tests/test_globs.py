"""The editable/protected rule: glob patterns and which wins."""

from __future__ import annotations

import pytest

from overnight.globs import Rules, matches


@pytest.mark.parametrize(
    ("path", "patterns", "expected"),
    [
        ("train.py", ["train.py"], True),
        ("train.py", ["*.py"], True),
        ("src/train.py", ["*.py"], False),
        ("src/train.py", ["**/*.py"], True),
        ("train.py", ["**/*.py"], True),
        ("src/a/b.py", ["src"], True),
        ("src/a/b.py", ["src/"], True),
        ("srcx/b.py", ["src"], False),
        ("model_v2.py", ["model_v?.py"], True),
        ("model_v2.py", ["model_v[13].py"], False),
        ("model_v2.py", ["model_v[!13].py"], True),
        ("a.py", ["./a.py"], True),
    ],
)
def test_globs(path: str, patterns: list[str], expected: bool) -> None:
    assert matches(path, patterns) is expected


def test_protected_wins_over_editable_and_outside_is_never_editable() -> None:
    rules = Rules(editable=("*.py",), protected=("prepare.py",))
    assert rules.allows("train.py") and not rules.allows("prepare.py") and not rules.allows(None)
    assert rules.violations({"t/prepare.py": "prepare.py", "t/train.py": "train.py", "x.py": None}) == [
        "t/prepare.py",
        "x.py",
    ]
