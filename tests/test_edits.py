"""SEARCH/REPLACE edits: parsing, strict and lenient matching, messages written for the model, partial
application, files in other encodings, notes; the hypothesis line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from overnight.agents.edits import MAX_NOTE, NO_BLOCKS, Block, EditError, apply, apply_block, parse, write
from overnight.agents.hypothesis import MAX_HYPOTHESIS, MAX_NOTES, hypothesis_in, last_line, stated
from overnight.agents.textfiles import NotText, read_text

CODE = "def f(x):\n    if x:\n        return 1\n    return 2\n"


def block(search: str, replace: str, path: str = "a.py") -> Block:
    return Block(1, path, search, replace)


def test_parse_fenced_and_bare_blocks() -> None:
    reply = (
        "Hypothesis: **swap the returns**\n\n"
        "a.py\n```python\n<<<<<<< SEARCH\n        return 1\n=======\n        return 3\n>>>>>>> REPLACE\n```\n"
        "`b.py`:\n<<<<<<< SEARCH\n=======\nNEW = 1\n>>>>>>> REPLACE\n"
    )
    parsed = parse(reply)
    blocks = parsed.blocks
    assert [(b.index, b.path) for b in blocks] == [(1, "a.py"), (2, "b.py")]
    assert blocks[0].search == "        return 1\n" and blocks[1].search == "" and blocks[1].replace == "NEW = 1\n"
    assert stated(reply) == "swap the returns"
    assert parsed.problems == () and parsed.unclosed == ""
    assert "return 1" not in parsed.outside and "Hypothesis" in parsed.outside


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n", "Block 1: put the file's path alone"),
        ("a.py\n<<<<<<< SEARCH\nx\ny\n>>>>>>> REPLACE\n", "Block 1 (a.py): expected a `=======` line"),
        ("a.py\n<<<<<<< SEARCH\nx\n=======\ny\n", "Block 1 (a.py): the block is not closed"),
    ],
)
def test_malformed_blocks_say_what_to_fix(tmp_path: Path, reply: str, message: str) -> None:
    outcome = apply(reply, tmp_path, lambda p: True, ["a.py"])
    assert outcome.applied == [] and message in outcome.problems[0]


def test_a_malformed_block_does_not_hide_the_next_one() -> None:
    reply = (
        "a.py\n<<<<<<< SEARCH\nx\n<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE\n"
        "a.py\n<<<<<<< SEARCH\nmore\n=======\n"
    )
    parsed = parse(reply)
    assert [(b.index, b.search, b.replace) for b in parsed.blocks] == [(2, "old\n", "new\n")]
    assert parsed.problems == ("Block 1 (a.py): expected a `=======` line between SEARCH and REPLACE.",)
    assert parsed.unclosed == "Block 3 (a.py)"  # a reply cut off inside its last block


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
    assert "The closest lines in the file (lines 2-3) are:\n```\n    if x:\n        return 1\n```" in str(err.value)
    assert "The first difference: your SEARCH has `    if y:` where the file has `    if x:`." in str(err.value)


def test_a_long_search_that_misses_in_a_long_file_is_answered_quickly_with_the_first_difference() -> None:
    # It took 80 s: every window of the file was compared with the whole SEARCH, character by character.
    lines = [f"    value_{i} = compute(x_{i % 97}, scale={i * 0.37:.2f})  # step {i}\n" for i in range(5000)]
    search = lines[2000:2300]
    search[150] = search[150].replace("compute", "compute2")
    started = time.monotonic()
    with pytest.raises(EditError) as err:
        apply_block("".join(lines), block("".join(search), "x\n", path="big.py"))
    assert time.monotonic() - started < 10  # generous: a busy machine; it takes well under a second
    text = str(err.value)
    assert "The closest lines in the file (lines 2146-2185) are:" in text  # 40 lines, from just before the difference
    assert "your SEARCH has `    value_2150 = compute2(x_16, scale=795.50)  # step 2150`" in text
    assert "Your SEARCH has 300 lines: quote only the few lines you change" in text
    assert len(text) < 4000


def test_empty_search_replaces_a_small_file_only() -> None:
    assert apply_block(CODE, block("", "X = 1\n")) == "X = 1\n"
    with pytest.raises(EditError, match="more than 400 lines"):
        apply_block("x\n" * 500, block("", "y\n"))


def test_each_block_stands_alone_and_nothing_is_written_until_asked(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(CODE)
    (tmp_path / "p.py").write_text("P = 1\n")
    reply = (
        "a.py\n<<<<<<< SEARCH\n        return 1\n=======\n        return 3\n>>>>>>> REPLACE\n"
        "p.py\n<<<<<<< SEARCH\nP = 1\n=======\nP = 2\n>>>>>>> REPLACE\n"
        "../x.py\n<<<<<<< SEARCH\n=======\nx\n>>>>>>> REPLACE\n"
        "c.py\n<<<<<<< SEARCH\nmissing\n=======\nx\n>>>>>>> REPLACE\n"
        "a.py\n<<<<<<< SEARCH\n    return 2\n=======\n    return 5\n>>>>>>> REPLACE\n"
    )
    outcome = apply(reply, tmp_path, lambda p: p in ("a.py", "c.py", "new.py"), ["a.py"])
    assert outcome.applied == [1, 5]
    assert outcome.problems == [
        "Block 2: p.py is not editable. You may change only: a.py.",
        "Block 3: ../x.py is outside the task folder; use paths relative to it.",
        "Block 4: c.py does not exist; to create it, leave its SEARCH part empty.",
    ]
    assert (tmp_path / "a.py").read_text() == CODE  # in memory until written
    write(outcome, tmp_path)
    assert (tmp_path / "a.py").read_text() == CODE.replace("return 1", "return 3").replace("return 2", "return 5")
    assert list(outcome.changed) == ["a.py"]


def test_blocks_applied_by_an_earlier_reply_are_skipped_not_failed(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(CODE.replace("return 1", "return 3"))  # block 1 applied last time
    first = Block(1, "a.py", "        return 1\n", "        return 3\n")
    reply = (
        "a.py\n<<<<<<< SEARCH\n        return 1\n=======\n        return 3\n>>>>>>> REPLACE\n"
        "a.py\n<<<<<<< SEARCH\n    return 2\n=======\n    return 5\n>>>>>>> REPLACE\n"
    )
    outcome = apply(reply, tmp_path, lambda p: True, ["a.py"], done={first.key})
    assert (outcome.repeated, outcome.applied, outcome.problems) == ([1], [2], [])


def test_apply_creates_new_editable_files_and_chains_blocks(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(CODE)
    reply = (
        "a.py\n<<<<<<< SEARCH\n        return 1\n=======\n        return 3\n>>>>>>> REPLACE\n"
        "a.py\n<<<<<<< SEARCH\n        return 3\n=======\n        return 4\n>>>>>>> REPLACE\n"
        "new.py\n<<<<<<< SEARCH\n=======\nN = 1\n>>>>>>> REPLACE\n"
    )
    outcome = apply(reply, tmp_path, lambda p: p in ("a.py", "new.py"), ["a.py"])
    assert outcome.problems == [] and "return 4" in outcome.changed["a.py"] and outcome.changed["new.py"] == "N = 1\n"
    write(outcome, tmp_path)
    assert (tmp_path / "new.py").read_text() == "N = 1\n"


def test_a_reply_without_blocks_applies_nothing(tmp_path: Path) -> None:
    outcome = apply("I think we should raise the learning rate.", tmp_path, lambda p: True, [])
    assert (outcome.applied, outcome.problems, outcome.parsed.blocks) == ([], [], ())
    assert "no SEARCH/REPLACE block" in NO_BLOCKS


def test_a_block_left_open_by_a_cut_off_reply_is_not_a_problem_of_its_own(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(CODE)
    reply = "a.py\n<<<<<<< SEARCH\n    return 2\n=======\n    return 5\n>>>>>>> REPLACE\na.py\n<<<<<<< SEARCH\n    if"
    outcome = apply(reply, tmp_path, lambda p: True, ["a.py"], cut_off=True)
    assert (outcome.applied, outcome.problems, outcome.parsed.unclosed) == ([1], [], "Block 2 (a.py)")


SOURCE = "# caf\u00e9 cr\u00e8me\nX = 10\nY = 'na\u00efve'\n"


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (SOURCE.encode("latin-1"), "latin-1"),
        (SOURCE.replace("caf", "\u201ccaf").encode("cp1252"), "cp1252"),  # a curly quote: 0x93
        (b"\xff\xfe" + SOURCE.encode("utf-16-le"), "utf-16-le with a byte order mark"),
        (b"\xfe\xff" + SOURCE.encode("utf-16-be"), "utf-16-be with a byte order mark"),
        (b"\xef\xbb\xbf" + SOURCE.encode(), "utf-8 with a byte order mark"),
        (SOURCE.replace("\n", "\r\n").encode("latin-1"), "latin-1"),  # and Windows line ends
        (b"# -*- coding: koi8-r -*-\n# \xf0\xd2\xc9\xd7\xc5\xd4\nX = 10\n", "koi8-r"),  # declared, PEP 263
    ],
)
def test_a_file_is_edited_in_its_own_encoding_and_line_ends(tmp_path: Path, data: bytes, encoding: str) -> None:
    (tmp_path / "a.py").write_bytes(data)
    text, found = read_text(tmp_path / "a.py")
    assert found == encoding and "X = 10\n" in text and "\r" not in text
    reply = "a.py\n<<<<<<< SEARCH\nX = 10\n=======\nX = 4  # d\u00e9j\u00e0 vu\n>>>>>>> REPLACE\n"
    if encoding == "koi8-r":
        reply = reply.replace("d\u00e9j\u00e0", "\u0443\u0436\u0435")  # letters koi8-r has
    outcome = apply(reply, tmp_path, lambda p: True, ["a.py"])
    assert outcome.problems == []
    write(outcome, tmp_path)
    new = reply.split("=======\n")[1].split("\n>>>")[0]
    newline = b"\r\n" if b"\r\n" in data else b"\n"
    old_line = "X = 10".encode(encoding.split()[0]) + newline.decode().encode(encoding.split()[0])
    new_line = new.encode(encoding.split()[0]) + newline.decode().encode(encoding.split()[0])
    assert (tmp_path / "a.py").read_bytes() == data.replace(old_line, new_line)  # every other byte as it was


def test_a_character_the_files_encoding_cannot_hold_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_bytes(SOURCE.encode("latin-1"))
    reply = "a.py\n<<<<<<< SEARCH\nX = 10\n=======\nX = 4  # \u2192 lower\n>>>>>>> REPLACE\n"
    outcome = apply(reply, tmp_path, lambda p: True, ["a.py"])
    assert outcome.applied == [] and outcome.problems == [
        "Block 1 (a.py): a.py is stored as latin-1, which cannot hold '\u2192' from your REPLACE; "
        "use only characters latin-1 has."
    ]


def test_a_binary_file_is_refused_with_its_reason(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(b"\x00\x01\x02X = 10\n\x00")
    with pytest.raises(NotText, match=r"w\.bin is not a text file: it holds NUL bytes"):
        read_text(tmp_path / "w.bin")
    outcome = apply("w.bin\n<<<<<<< SEARCH\nX = 10\n=======\nX = 4\n>>>>>>> REPLACE\n", tmp_path, lambda p: True, [])
    assert outcome.problems == [
        "Block 1: w.bin is not a text file: it holds NUL bytes and has no UTF-16 or UTF-32 byte order mark; "
        "it cannot be edited with SEARCH/REPLACE."
    ]


def test_notes_are_read_outside_blocks_and_kept_short() -> None:
    reply = (
        "Hypothesis: lower X\n**Note:** X above 8 always diverged\n- note: `warmup matters`\nNote:\n"
        "Notes: not a note line\n"
        "a.py\n<<<<<<< SEARCH\n# Note: inside a block\n=======\n# Note: inside a block too\n>>>>>>> REPLACE\n"
        + "".join(f"Note: finding {i} " + "x" * 400 + "\n" for i in range(6))
    )
    notes = parse(reply).notes
    assert notes[:2] == ("X above 8 always diverged", "warmup matters")
    assert len(notes) == MAX_NOTES and all(len(n) <= MAX_NOTE for n in notes)
    assert not any("inside a block" in n for n in notes)


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
