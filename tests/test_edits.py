"""SEARCH/REPLACE edits: parsing, strict and lenient matching, messages written for the model; the hypothesis line."""

from __future__ import annotations

from pathlib import Path

import pytest

from overnight.agents.edits import Block, EditError, apply, apply_block, parse
from overnight.agents.hypothesis import MAX_HYPOTHESIS, hypothesis_in, last_line, stated

CODE = "def f(x):\n    if x:\n        return 1\n    return 2\n"


def block(search: str, replace: str, path: str = "a.py") -> Block:
    return Block(1, path, search, replace)


def test_parse_fenced_and_bare_blocks() -> None:
    reply = (
        "Hypothesis: **swap the returns**\n\n"
        "a.py\n```python\n<<<<<<< SEARCH\n        return 1\n=======\n        return 3\n>>>>>>> REPLACE\n```\n"
        "`b.py`:\n<<<<<<< SEARCH\n=======\nNEW = 1\n>>>>>>> REPLACE\n"
    )
    blocks = list(parse(reply))
    assert [(b.index, b.path) for b in blocks] == [(1, "a.py"), (2, "b.py")]
    assert blocks[0].search == "        return 1\n" and blocks[1].search == "" and blocks[1].replace == "NEW = 1\n"
    assert stated(reply) == "swap the returns"


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n", "put the file's path alone"),
        ("a.py\n<<<<<<< SEARCH\nx\ny\n>>>>>>> REPLACE\n", "expected a `=======` line"),
        ("a.py\n<<<<<<< SEARCH\nx\n=======\ny\n", "the block is not closed"),
    ],
)
def test_malformed_blocks_say_what_to_fix(reply: str, message: str) -> None:
    with pytest.raises(EditError, match=message):
        list(parse(reply))


def test_exact_match() -> None:
    assert apply_block(CODE, block("        return 1\n", "        return 3\n")) == CODE.replace("return 1", "return 3")


def test_trailing_whitespace_is_tolerated() -> None:
    assert "return 3" in apply_block(CODE, block("        return 1   \n", "        return 3\n"))


def test_indentation_is_tolerated_and_the_replacement_reindented() -> None:
    new = apply_block(CODE, block("if x:\n    return 1\n", "if not x:\n    return 0\n"))
    assert new == "def f(x):\n    if not x:\n        return 0\n    return 2\n"


def test_ambiguous_search_asks_for_more_context() -> None:
    with pytest.raises(EditError, match="occur 2 times"):
        apply_block("a = 1\nb = 2\na = 1\n", block("a = 1\n", "a = 3\n"))


def test_a_miss_shows_the_closest_lines() -> None:
    with pytest.raises(EditError) as err:
        apply_block(CODE, block("    if y:\n        return 1\n", "x\n"))
    assert "the SEARCH lines do not match any lines of a.py" in str(err.value)
    assert "    if x:\n        return 1" in str(err.value)


def test_empty_search_replaces_a_small_file_only() -> None:
    assert apply_block(CODE, block("", "X = 1\n")) == "X = 1\n"
    with pytest.raises(EditError, match="more than 400 lines"):
        apply_block("x\n" * 500, block("", "y\n"))


def test_apply_checks_every_block_and_writes_nothing_on_failure(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(CODE)
    (tmp_path / "p.py").write_text("P = 1\n")
    reply = (
        "a.py\n<<<<<<< SEARCH\n        return 1\n=======\n        return 3\n>>>>>>> REPLACE\n"
        "p.py\n<<<<<<< SEARCH\nP = 1\n=======\nP = 2\n>>>>>>> REPLACE\n"
        "../x.py\n<<<<<<< SEARCH\n=======\nx\n>>>>>>> REPLACE\n"
        "c.py\n<<<<<<< SEARCH\nmissing\n=======\nx\n>>>>>>> REPLACE\n"
    )
    with pytest.raises(EditError) as err:
        apply(reply, tmp_path, lambda p: p in ("a.py", "c.py", "new.py"), ["a.py"])
    text = str(err.value)
    assert "Block 2: p.py is not editable. You may change only: a.py." in text
    assert "Block 3: ../x.py is outside the task folder" in text
    assert "Block 4: c.py does not exist; to create it, leave its SEARCH part empty." in text
    assert (tmp_path / "a.py").read_text() == CODE


def test_apply_creates_new_editable_files_and_chains_blocks(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(CODE)
    reply = (
        "a.py\n<<<<<<< SEARCH\n        return 1\n=======\n        return 3\n>>>>>>> REPLACE\n"
        "a.py\n<<<<<<< SEARCH\n        return 3\n=======\n        return 4\n>>>>>>> REPLACE\n"
        "new.py\n<<<<<<< SEARCH\n=======\nN = 1\n>>>>>>> REPLACE\n"
    )
    changed = apply(reply, tmp_path, lambda p: p in ("a.py", "new.py"), ["a.py"])
    assert "return 4" in changed["a.py"] and changed["new.py"] == "N = 1\n"


def test_a_reply_without_blocks() -> None:
    with pytest.raises(EditError, match="no SEARCH/REPLACE block"):
        apply("I think we should raise the learning rate.", Path("."), lambda p: True, [])


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("I changed it.\n**Hypothesis:** raise lr\n", "raise lr"),
        ("**Hypothesis**: raise lr", "raise lr"),
        ("- Hypothesis: `raise lr`", "raise lr"),
        ("## hypothesis: raise lr\n\nDone.", "raise lr"),
        ("Hypothesis: use `lr` twice", "use `lr` twice"),  # inner code marks stay
        ("Hypothesis: first\nHypothesis: second\nbye", "second"),  # the last one wins
        ("Hypothesis: kept\n**Hypothesis:**\n", "kept"),  # an empty label says nothing
        ("no label here\n\n  the last line  \n\n", "the last line"),
        ("The hypothesis: is not a label\nlast", "last"),
        ("", ""),
    ],
)
def test_the_hypothesis_is_the_last_labelled_line_else_the_last_line(output: str, expected: str) -> None:
    assert hypothesis_in(output) == expected


def test_a_hypothesis_is_cut_to_its_limit_and_only_a_stated_one_counts_for_replies() -> None:
    assert hypothesis_in("Hypothesis: " + "x" * 1000) == "x" * MAX_HYPOTHESIS
    assert last_line("a\n" + "y" * 500, limit=200) == "y" * 200
    assert stated("train.py\n<<<<<<< SEARCH\nX = 1\n=======\nX = 2\n>>>>>>> REPLACE\n") == ""
