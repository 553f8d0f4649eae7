"""`verify --set NAME=VALUE`: what is rewritten, and what is refused (a docstring, several lines, a link, the
harness's own variables)."""

from __future__ import annotations

from pathlib import Path

import pytest

from overnight.errors import ConfigError
from overnight.verify import overrides

SOURCE = '''"""A model.

LR = 0.1 is what the paper used.
"""
LR = 0.01  # tuned
MULTI = dict(
    a=1,
    b=2,
)
'''


def test_a_constant_over_several_lines_is_replaced_whole_and_a_docstring_is_left_alone() -> None:
    (lr, multi) = overrides.resolve([("LR", "0.5"), ("MULTI", "2")], {"m.py": SOURCE})
    after = overrides.rewrite(overrides.rewrite(SOURCE, lr), multi)
    assert after == SOURCE.replace("LR = 0.01", "LR = 0.5").replace("dict(\n    a=1,\n    b=2,\n)", "2")
    assert "LR = 0.1 is what the paper used." in after  # the docstring, as it was
    compile(after, "m.py", "exec")


def test_a_name_only_a_docstring_mentions_is_an_environment_variable() -> None:
    (found,) = overrides.resolve([("PAPER", "1")], {"m.py": '"""\nPAPER = 3\n"""\n'})
    assert found.kind == overrides.ENVIRONMENT


def test_the_harness_variables_are_refused() -> None:
    with pytest.raises(ConfigError, match="the harness sets the OVERNIGHT_ variables itself"):
        overrides.resolve([("OVERNIGHT_SEED", "7")], {})


def test_a_file_that_is_a_link_is_never_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "checkout.py"
    outside.write_text("LR = 0.01\n")
    arm = tmp_path / "arm"
    arm.mkdir()
    (arm / "m.py").symlink_to(outside)
    (lr,) = overrides.resolve([("LR", "0.5")], {"m.py": "LR = 0.01\n"})
    with pytest.raises(ConfigError, match="symbolic link"):
        overrides.apply(arm, [lr])
    assert outside.read_text() == "LR = 0.01\n"


def test_apply_replaces_the_file_and_keeps_its_mode(tmp_path: Path) -> None:
    script = tmp_path / "m.py"
    script.write_text(SOURCE)
    script.chmod(0o755)
    (lr,) = overrides.resolve([("LR", "0.5")], {"m.py": SOURCE})
    assert overrides.apply(tmp_path, [lr]) == ["m.py"]
    assert "LR = 0.5  # tuned" in script.read_text() and script.stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.py"]
