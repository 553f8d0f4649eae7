"""The experiment worktree: what changed, committing on the right parent, resetting."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import Repo, git
from overnight.git.worktree import Worktree


@pytest.fixture
def wt(repo: Repo, tmp_path: Path) -> tuple[Repo, Worktree, str]:
    repo.write("a.txt", "one\n")
    repo.write("sub/b.txt", "two\n")
    base = repo.commit("base")
    worktree = Worktree(repo.path, tmp_path / "wt")
    worktree.create(base)
    yield repo, worktree, base
    worktree.remove()


def test_fast_path_names_changes_and_commits_on_the_parent(wt) -> None:
    repo, worktree, base = wt
    (worktree.path / "a.txt").write_text("one\nmore\n")
    (worktree.path / "new file.txt").write_text("x\n")
    (worktree.path / "sub" / "b.txt").unlink()
    change = worktree.stage(base)
    assert sorted(change.paths) == ["a.txt", "new file.txt", "sub/b.txt"]
    done = worktree.commit(change, "exp 1: try\n", "refs/overnight/t/1").wait()
    assert git(repo.path, "rev-parse", "refs/overnight/t/1").strip() == done.commit
    assert git(repo.path, "rev-parse", f"{done.commit}^").strip() == base
    assert (
        git(repo.path, "log", "-1", "--format=%an <%ae>|%s", done.commit).strip()
        == "overnight <overnight@localhost>|exp 1: try"
    )
    assert (done.insertions, done.deletions) == (2, 1)


def test_a_newline_in_a_file_name_falls_back_to_git_diff(wt) -> None:
    _, worktree, base = wt
    (worktree.path / "odd\nname.txt").write_text("x\n")
    assert worktree.stage(base).paths == ("odd\nname.txt",)


def test_changes_the_agent_staged_or_committed_are_seen(wt) -> None:
    repo, worktree, base = wt
    (worktree.path / "a.txt").write_text("changed\n")
    git(worktree.path, "add", "a.txt")
    git(worktree.path, "-c", "user.name=a", "-c", "user.email=a@a", "commit", "-qm", "agent")
    (worktree.path / "c.txt").write_text("three\n")
    change = worktree.stage(base)
    assert sorted(change.paths) == ["a.txt", "c.txt"]
    done = worktree.commit(change, "exp 2\n", "refs/overnight/t/2").wait()
    assert git(repo.path, "rev-parse", f"{done.commit}^").strip() == base


def test_nothing_changed(wt) -> None:
    _, worktree, base = wt
    assert worktree.stage(base).empty


@pytest.mark.parametrize("leave_new_files", [True, False])
def test_reset_removes_changes_and_new_files(wt, leave_new_files: bool) -> None:
    _, worktree, base = wt
    (worktree.path / "a.txt").write_text("changed\n")
    (worktree.path / "staged.txt").write_text("s\n")
    change = worktree.stage(base)
    worktree.commit(change, "exp\n", "refs/overnight/t/3").wait()
    if leave_new_files:  # what an experiment's run leaves behind
        (worktree.path / "out").mkdir()
        (worktree.path / "out" / "result.txt").write_text("r\n")
    (worktree.path / "a.txt").write_text("the run rewrote a tracked file\n")
    worktree.release(base)
    worktree.checkout(base)
    assert (worktree.path / "a.txt").read_text() == "one\n"
    assert not (worktree.path / "staged.txt").exists()
    assert not (worktree.path / "out").exists()
    assert worktree.stage(base).empty


def test_ignored_files_survive_a_reset(wt) -> None:
    repo, worktree, _ = wt
    (repo.path / ".gitignore").write_text("cache/\n")
    ignored_base = repo.commit("ignore cache")
    worktree.checkout(ignored_base)
    (worktree.path / "cache").mkdir()
    (worktree.path / "cache" / "data.bin").write_text("expensive\n")
    worktree.release(ignored_base)
    worktree.checkout(ignored_base)
    assert (worktree.path / "cache" / "data.bin").exists()


def test_edits_of_tracked_files_are_committed_by_hand_as_git_would(wt, tmp_path: Path) -> None:
    repo, worktree, base = wt
    (worktree.path / "a.txt").write_text("one\nmore\n")
    (worktree.path / "sub" / "b.txt").write_text("two, changed\n")
    (worktree.path / "sub" / "b.txt").chmod(0o755)
    change = worktree.stage(base)
    assert change.blobs is not None, "edits of tracked files are named without git"
    assert change.paths == ("a.txt", "sub/b.txt")
    done = worktree.commit(change, "exp 4: by hand\n", "refs/overnight/t/4").wait()
    # The tree git itself makes of the same files, in an index of its own.
    env = {"GIT_INDEX_FILE": str(tmp_path / "index")}
    subprocess.run(["git", "read-tree", base], cwd=worktree.path, env={**os.environ, **env}, check=True)
    subprocess.run(["git", "add", "-A"], cwd=worktree.path, env={**os.environ, **env}, check=True)
    made = subprocess.run(["git", "write-tree"], cwd=worktree.path, env={**os.environ, **env}, check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    assert git(repo.path, "rev-parse", f"{done.commit}^{{tree}}").strip() == made
    assert git(repo.path, "rev-parse", f"{done.commit}^").strip() == base
    assert git(repo.path, "ls-tree", done.commit, "sub/b.txt").startswith("100755 blob")
    assert (done.insertions, done.deletions) == (2, 1)
    git(repo.path, "fsck", "--strict", "--no-dangling")


def test_a_discard_is_put_back_without_git_and_leaves_git_clean(wt) -> None:
    _, worktree, base = wt
    (worktree.path / "a.txt").write_text("changed\n")
    change = worktree.stage(base)
    assert change.blobs is not None
    worktree.commit(change, "exp 5\n", "refs/overnight/t/5").wait()
    (worktree.path / "sub" / "b.txt").write_text("the run rewrote a tracked file\n")
    worktree.ran()
    worktree.release(base)
    worktree.checkout(base)
    assert (worktree.path / "a.txt").read_text() == "one\n"
    assert (worktree.path / "sub" / "b.txt").read_text() == "two\n"
    assert git(worktree.path, "status", "--porcelain") == ""
    assert git(worktree.path, "rev-parse", "HEAD").strip() == base
    assert worktree.stage(base).empty


def test_a_keep_moves_the_worktree_to_the_new_commit(wt) -> None:
    _, worktree, base = wt
    (worktree.path / "a.txt").write_text("kept\n")
    done = worktree.commit(worktree.stage(base), "exp 6\n", "refs/overnight/t/6").wait()
    worktree.release(done.commit)
    worktree.checkout(done.commit)
    assert git(worktree.path, "rev-parse", "HEAD").strip() == done.commit
    assert git(worktree.path, "status", "--porcelain") == ""
    (worktree.path / "a.txt").write_text("kept, then changed again\n")
    assert worktree.stage(done.commit).paths == ("a.txt",)
