"""overnight.git.revert: keeps taken out of the best line by line, and grouped where they change the same lines.

Each test builds a real chain of commits (a baseline, then one commit per keep) in a
temporary repository, and checks the trees the reverts give against what they must be.
"""

from __future__ import annotations

import pytest

from conftest import Repo
from overnight import git
from overnight.git import revert
from overnight.records import Goal, Verification, VerifyMeasured
from overnight.verify.findings import summarize


def chained(repo: Repo, name: str, texts: list[str]) -> list[revert.Change]:
    """A baseline commit of ``name`` with ``texts[0]``, then one keep per later text; the keeps' changes."""
    repo.write(name, texts[0])
    commits = [repo.commit("baseline")]
    for text in texts[1:]:
        repo.write(name, text)
        commits.append(repo.commit(f"keep {len(commits)}"))
    return [revert.Change(i, commits[i - 1], commits[i]) for i in range(1, len(commits))]


def shown(repo: Repo, commit: str, name: str = "train.py") -> str:
    return repo.git("show", f"{commit}:{name}")


def tree(repo: Repo, rev: str) -> str:
    return repo.git("rev-parse", f"{rev}^{{tree}}").strip()


def test_adjacent_lines_are_each_taken_out_alone(repo: Repo) -> None:
    keeps = chained(repo, "train.py", ["A = 0\nB = 0\nC = 0\n", "A = 1\nB = 0\nC = 0\n", "A = 1\nB = 2\nC = 0\n"])
    best = keeps[-1].commit
    before = repo.git("for-each-ref")
    assert git.replay(repo.path, best, keeps[0].commit, keeps[0].parent) is None  # git's 3-way merge conflicts
    found = revert.ablations(repo.path, keeps, best)
    assert [(a.ids, a.entangled) for a in found] == [((1,), ""), ((2,), "")]
    assert shown(repo, found[0].commit) == "A = 0\nB = 2\nC = 0\n"  # the best with only A's line restored
    assert shown(repo, found[1].commit) == "A = 1\nB = 0\nC = 0\n"
    assert repo.git("rev-parse", f"{found[0].commit}^").strip() == best  # a real commit on the best
    assert repo.git("for-each-ref") == before and repo.git("status", "--porcelain") == ""  # no ref, no worktree


def test_a_keep_whose_lines_a_later_keep_rewrote_is_grouped_with_it(repo: Repo) -> None:
    keeps = chained(
        repo,
        "train.py",
        [
            "A = 0\nB = 0\nC = 0\n",
            "A = 0\nB = 0\nC = 1\n",  # 1: C, alone
            "A = 1\nB = 0\nC = 1\n",  # 2: A
            "A = 1\nB = 5\nC = 1\n",  # 3: B, the line below A
            "A = 2\nB = 5\nC = 1\n",  # 4: A again: it rewrote 2's line
        ],
    )
    best = keeps[-1].commit
    found = revert.ablations(repo.path, keeps, best)
    assert [(a.ids, a.entangled) for a in found] == [((1,), ""), ((2, 4), ""), ((3,), ""), ((4,), "")]
    assert isinstance(revert.take_out(repo.path, best, [keeps[1]]), revert.Conflict)  # 2 cannot go alone
    assert shown(repo, found[1].commit) == "A = 0\nB = 5\nC = 1\n"  # 2 and 4 out, 3 stays
    assert shown(repo, found[3].commit) == "A = 1\nB = 5\nC = 1\n"  # 4 alone: A back to 2's value
    assert shown(repo, found[0].commit) == "A = 2\nB = 5\nC = 0\n"


def test_a_group_of_the_last_keeps_gives_the_tree_before_both(repo: Repo) -> None:
    keeps = chained(repo, "train.py", ["X = 0\nA = 0\n", "X = 0\nA = 1\n", "X = 0\nA = 3\n"])
    (first, second) = revert.ablations(repo.path, keeps, keeps[-1].commit)
    assert first.ids == (1, 2) and tree(repo, first.commit) == tree(repo, keeps[0].parent)
    assert second.ids == (2,) and tree(repo, second.commit) == tree(repo, keeps[0].commit)


def test_lines_inserted_above_by_a_later_keep_shift_nothing(repo: Repo) -> None:
    top = "import os\n# one\n# two\nLR = 0.1\nEPOCHS = 30\n"
    grown = "import os\nimport sys\nimport time\n# one\n# two\n# three\nLR = 0.1\nEPOCHS = 30\n"
    keeps = chained(
        repo,
        "train.py",
        [
            top,
            top.replace("EPOCHS = 30", "EPOCHS = 36"),  # 1: EPOCHS
            grown.replace("EPOCHS = 30", "EPOCHS = 36").replace("LR = 0.1", "LR = 0.2"),  # 2: lines above, and LR
        ],
    )
    best = keeps[-1].commit
    assert git.replay(repo.path, best, keeps[0].commit, keeps[0].parent) is None  # LR is EPOCHS's neighbour
    one, two = revert.ablations(repo.path, keeps, best)
    assert one.ids == (1,) and shown(repo, one.commit) == grown.replace("LR = 0.1", "LR = 0.2")
    assert two.ids == (2,) and shown(repo, two.commit) == top.replace("EPOCHS = 30", "EPOCHS = 36")


def test_other_files_and_new_files_go_through_git(repo: Repo) -> None:
    repo.write("data.bin", "\0\1\2")
    repo.write("train.py", "A = 0\nB = 0\n")
    base = repo.commit("baseline")
    repo.write("train.py", "A = 1\nB = 0\n")
    repo.write("notes.md", "new file\n")
    repo.write("data.bin", "\0\1\3")
    one = repo.commit("keep 1")
    repo.write("train.py", "A = 1\nB = 2\n")
    two = repo.commit("keep 2")
    keeps = [revert.Change(1, base, one), revert.Change(2, one, two)]
    found = revert.ablations(repo.path, keeps, two)
    assert [a.ids for a in found] == [(1,), (2,)] and not any(a.entangled for a in found)
    assert shown(repo, found[0].commit) == "A = 0\nB = 2\n"
    assert repo.git("ls-tree", "--name-only", found[0].commit).split() == ["data.bin", "train.py"]
    assert repo.git("rev-parse", f"{found[0].commit}:data.bin") == repo.git("rev-parse", f"{base}:data.bin")


def test_revert_lines_needs_the_lines_unchanged_and_the_place_unambiguous() -> None:
    # The keep deleted "b": it goes back between "a" and "c" even when the lines around moved.
    assert revert.revert_lines(b"a\nb\nc\n", b"a\nc\n", b"0\na\nc\nd\n") == b"0\na\nb\nc\nd\n"
    # ... but not when a later keep put a line between them: where would it go?
    assert isinstance(revert.revert_lines(b"a\nb\nc\n", b"a\nc\n", b"a\nx\nc\n"), str)
    # The keep wrote "B = 1"; a later keep made it "B = 2": a true conflict.
    assert isinstance(revert.revert_lines(b"A = 0\nB = 0\n", b"A = 0\nB = 1\n", b"A = 0\nB = 2\n"), str)
    # A last line without a newline, and several hunks in one file.
    assert revert.revert_lines(b"a\nb\nc\nd", b"A\nb\nc\nD", b"A\nb\nX\nc\nD") == b"a\nb\nX\nc\nd"


def test_old_verifications_read_as_before() -> None:
    """A verification recorded before groups: only ``without:<id>`` arms, one of them entangled."""
    settings = {
        "runs": 2,
        "arms": [
            {"arm": "baseline", "experiment": 0, "hypothesis": "baseline", "commit": "a", "entangled": ""},
            {"arm": "best", "experiment": 3, "hypothesis": "B on", "commit": "c", "entangled": ""},
            {"arm": "without:1", "experiment": 1, "hypothesis": "A on", "commit": "b", "entangled": "it conflicts"},
            {"arm": "without:3", "experiment": 3, "hypothesis": "B on", "commit": "c", "entangled": ""},
        ],
    }
    values = {"baseline": 10.0, "best": 5.0, "without:3": 7.0}
    measured = [VerifyMeasured(1, arm, seed, value=v + seed) for arm, v in values.items() for seed in (0, 1)]
    found = summarize(Verification(1, "s", "e", settings), measured, "score", Goal.MIN, 0.95)
    old, new = found.ablation
    assert (old.ids, old.estimate, old.entangled) == ((1,), None, "it conflicts") and not old.grouped
    assert new.ids == (3,) and new.estimate is not None and new.estimate.value == pytest.approx(2)
    assert found.significant() == [3] and found.to_json()["ablation"][0]["entangled"] == "it conflicts"


def test_a_significant_group_makes_all_its_keeps_significant() -> None:
    settings = {
        "arms": [
            {"arm": "best", "experiment": 4, "hypothesis": "A twice", "commit": "d", "entangled": ""},
            {
                "arm": "without:2+4",
                "experiment": 2,
                "hypothesis": "A on",
                "commit": "b",
                "entangled": "",
                "together": [2, 4],
                "hypotheses": ["A on", "A twice"],
            },
            {"arm": "without:4", "experiment": 4, "hypothesis": "A twice", "commit": "d", "entangled": ""},
        ],
    }
    values = {"best": 5.0, "without:2+4": 9.0, "without:4": 5.0}
    measured = [VerifyMeasured(1, arm, seed, value=v + seed) for arm, v in values.items() for seed in (0, 1)]
    found = summarize(Verification(1, "s", "e", settings), measured, "score", Goal.MIN, 0.95)
    group, alone = found.ablation
    assert group.ids == (2, 4) and group.name() == "#2+4" and "#2 and #4 together" in group.describe()
    assert alone.ids == (4,) and not alone.estimate.significant  # type: ignore[union-attr]
    assert found.significant() == [2, 4]
    assert found.to_json()["ablation"][0]["together"] == [2, 4]


def test_paths_are_repository_relative(repo: Repo) -> None:
    """A task in a subfolder: the file is reverted where it is."""
    keeps = chained(repo, "task/train.py", ["A = 0\nB = 0\n", "A = 1\nB = 0\n", "A = 1\nB = 2\n"])
    found = revert.ablations(repo.path, keeps, keeps[-1].commit)
    assert shown(repo, found[0].commit, "task/train.py") == "A = 0\nB = 2\n"


def test_a_keep_that_cannot_be_taken_out_even_in_a_group_is_entangled(repo: Repo) -> None:
    """A keep whose lines are nowhere in the best, nor before the later keeps (here: not on the best's chain)."""
    repo.write("train.py", "A = 0\n")
    base = repo.commit("baseline")
    repo.write("train.py", "A = 3\n")
    other = repo.commit("another line of work")
    repo.write("train.py", "A = 5\n")
    side = repo.commit("a change the best does not hold: A 3 -> 5")
    repo.git("checkout", "-q", base)
    repo.write("train.py", "A = 7\n")
    best = repo.commit("the best")
    (found, last) = revert.ablations(repo.path, [revert.Change(1, other, side), revert.Change(2, base, best)], best)
    assert found.ids == (1, 2) and found.commit == ""
    assert "even with the keeps after it" in found.entangled and "keep #1 in train.py" in found.entangled
    assert last.ids == (2,) and shown(repo, last.commit) == "A = 0\n"
