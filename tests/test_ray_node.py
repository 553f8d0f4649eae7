"""What a Ray node does for a measurement, without Ray: the cached checkout fed by git packs, and
the watchdog that kills a measurement's commands when the worker running them dies.

(tests/test_ray.py runs the same on a real Ray cluster.)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from conftest import Repo
from overnight.executors import node
from overnight.process.tree import TOKEN_VAR


def _pack(repo: Repo, revs: str) -> bytes:
    done = subprocess.run(["git", "pack-objects", "--stdout", "--revs", "-q"], cwd=repo.path, input=revs.encode(),
                          capture_output=True, check=True)  # fmt: skip
    return done.stdout


@dataclass
class _Job:  # what _checkout reads of a Job
    task_dir: Path
    commit: str


def test_a_node_gets_the_history_once_then_new_objects_and_keeps_its_checkout(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.write("train.py", "X = 1\n")
    repo.write(".gitignore", "data/\n")
    base = repo.commit("base")
    repo.write("train.py", "X = 2\n")
    second = repo.commit("second")
    run_dir = tmp_path / "cache" / "run"
    fetched: list[str] = []

    def get(name: str) -> bytes:
        fetched.append(name)
        return {"base": _pack(repo, f"{base}\n"), "second": _pack(repo, f"{second}\n^{base}\n")}[name]

    node._fetch(run_dir / "repo.git", node.Code("run", base, "base", base, None), get)
    node._fetch(run_dir / "repo.git", node.Code("run", base, "base", second, "second"), get)
    node._fetch(run_dir / "repo.git", node.Code("run", base, "base", second, "second"), get)
    assert fetched == ["base", "second"]  # each pack once, and only when the objects are missing

    job = _Job(repo.path, base)
    with node._checkout(run_dir, run_dir / "repo.git", job) as (folder, state):  # type: ignore[arg-type]
        assert (folder / "train.py").read_text() == "X = 1\n"
        (folder / "data").mkdir()
        (folder / "data" / "made-by-setup").write_text("kept")  # ignored by git: setup's data
        (folder / "stray.py").write_text("left by a run")  # untracked: goes
        (folder / "train.py").write_text("X = 99\n")  # changed by a run: reset
        state.write_text("{}")
        first = folder
        # The same worktree measured twice at once: the second gets a folder of its own.
        with node._checkout(run_dir, run_dir / "repo.git", job) as (other, _):  # type: ignore[arg-type]
            assert other != folder and (other / "train.py").read_text() == "X = 1\n"
        assert not other.exists()
    with node._checkout(run_dir, run_dir / "repo.git", _Job(repo.path, second)) as (folder, state):  # type: ignore[arg-type]
        assert folder == first and (folder / "train.py").read_text() == "X = 2\n"
        assert (folder / "data" / "made-by-setup").read_text() == "kept" and not (folder / "stray.py").exists()
        assert state.read_text() == "{}"  # setup's outcome in this checkout is remembered
    monkeypatch.setenv("OVERNIGHT_RAY_CACHE", str(tmp_path / "cache"))
    node.forget("run")  # when the run ends
    assert not run_dir.exists()


def _sleeper(token: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, TOKEN_VAR: token}
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env=env, start_new_session=True)


def _ends(proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 120
    while proc.poll() is None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture(autouse=True)
def _fresh_watchdog() -> Iterator[None]:
    """Each test starts as a new Ray worker would: with no watchdog of its own yet."""
    node._dog = None
    yield
    if node._dog is not None:
        if node._dog.poll() is None:
            node._dog.kill()
            node._dog.wait()
        if node._dog.stdin is not None:
            with contextlib.suppress(OSError):
                node._dog.stdin.close()
    node._dog = None


def test_the_watchdog_kills_the_commands_when_the_raylet_dies_and_only_then() -> None:
    raylet = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    command, bystander = _sleeper("run1:7:run:0"), _sleeper("run1:70:run:0")
    try:
        watchdog = node._watch("run1:7", raylet.pid)
        assert watchdog is not None
        raylet.kill()  # left a zombie (nothing here reaps it yet): that is gone too
        assert _ends(command)  # the measurement's command is killed
        assert _ends(watchdog)
        node._release(watchdog, "run1:7")  # as the worker does after the measurement: the pipe is gone, no error
        assert bystander.poll() is None  # experiment 70's is not (tokens are matched up to the colon)
    finally:
        for proc in (raylet, command, bystander):
            proc.kill()
            proc.wait()


def test_the_watchdog_kills_the_commands_when_the_worker_dies_and_leaves_them_when_it_is_done() -> None:
    raylet = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    command = _sleeper("run2:1:run:0")
    try:
        watchdog = node._watch("run2:1", raylet.pid)
        assert watchdog is not None
        node._release(watchdog, "run2:1")  # the measurement ended normally
        # A watchdog that left on "done" (as the one per measurement did) fails below, whatever the timing: it
        # is not the one given back, or the next measurement's "watch" goes to a process already leaving.
        assert watchdog.poll() is None and command.poll() is None  # it stays for the worker's next measurement
        assert node._watch("run2:1", raylet.pid) is watchdog  # measured again: no interpreter started anew
        assert watchdog.stdin is not None
        watchdog.stdin.close()  # the pipe closes mid-measurement: the worker died
        assert _ends(command) and _ends(watchdog)
        assert psutil.pid_exists(raylet.pid)
        node._release(watchdog, "run2:1")
    finally:
        for proc in (raylet, command):
            proc.kill()
            proc.wait()


def test_one_watchdog_serves_a_workers_measurements_and_kills_only_those_not_ended() -> None:
    ended, running = _sleeper("run3:1:run:0"), _sleeper("run3:2:run:0")
    try:
        dog = node._watch("run3:1", 0)
        node._release(dog, "run3:1")
        assert node._watch("run3:2", 0) is dog
        assert dog is not None and dog.stdin is not None
        # The lines and the pipe's end reach the watchdog in order, so what it kills below does not depend on time.
        assert ended.poll() is None and running.poll() is None
        dog.stdin.close()  # the Ray worker died during measurement 2
        assert _ends(dog) and _ends(running)  # killed: its measurement never ended
        assert ended.poll() is None  # an ended measurement's process is not the watchdog's to kill
    finally:
        for proc in (ended, running):
            proc.kill()
            proc.wait()
