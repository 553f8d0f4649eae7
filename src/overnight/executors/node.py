"""What runs on a Ray node for one measurement: its checkout, its environment, its watchdog.

**The checkout.** A node keeps, per run invocation, a bare repository and one checkout per worktree of
the controller (``~/.cache/overnight/ray/<run>/``, or ``$OVERNIGHT_RAY_CACHE``; removed when the run ends). Code travels
as git packs through Ray's object store: the run's first commit with its history, once per
node (:class:`Code` holds it by reference: a node fetches it only when it lacks that commit),
and per commit only the objects that are new since it. A checkout is put at the commit to
measure as a local worktree is (``git clean -fd`` then ``git checkout -f``: untracked files
go, ignored ones such as data made by setup stay), so ``[task] setup`` runs once per checkout
on a node, not before every measurement: again only when the controller asks (the harness
changed), or when setup never ran in that checkout on this node. A checkout busy with
another measurement is not shared: that measurement gets a fresh folder (and setup).

**The environment.** The node's own, credentials removed as on the controller
(overnight.secrets, ``[task] pass_env`` kept), plus the variables the controller set on
purpose for this measurement (a slot's ``CUDA_VISIBLE_DEVICES`` from ``--gpus``). When the
task asks Ray for GPUs, the GPUs Ray gave the task win: they are this node's.

**The watchdog.** The commands of a measurement run in their own sessions, so they would
outlive the Ray worker that started them (a dead raylet takes its workers along; Ray then
retries the measurement elsewhere, and the first copy would keep its GPU all night). A small
process, one per Ray worker process and kept from one measurement to the next, holds a pipe
from the worker and watches the raylet; the worker tells it each measurement's token as it
starts and ends. When the pipe closes (the worker ended, died or was cancelled by force) or
the raylet is gone, it kills every process carrying the token of a measurement not ended
(:func:`overnight.process.tree.kill_token_holders`), cgroups included.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psutil

from overnight import secrets
from overnight.executors._base import Job, Measurement
from overnight.executors.perform import perform
from overnight.process import sandbox

WORKER_PID_VAR = "OVERNIGHT_RAY_WORKER_PID"  # the Ray worker running the measurement (for the experiment's eyes)
_STATE = ".overnight-node.json"  # in a checkout's git directory: setup's outcome in that checkout


@dataclass(frozen=True)
class Code:
    """How a commit reaches a node: object refs, fetched only when the node lacks the objects."""

    key: str  # names the run's cache folder on every node
    base: str  # the first commit shipped: its history travels once per node
    base_pack: Any  # ObjectRef of a pack of ``base`` and its history
    commit: str
    pack: Any  # ObjectRef of a pack of the objects of ``commit`` not in ``base`` (None when commit == base)


def cache_root() -> Path:
    return Path(os.environ.get("OVERNIGHT_RAY_CACHE") or Path.home() / ".cache" / "overnight" / "ray")


def measure_here(code: Code, job: Job, sent_env: dict[str, str], gpus_from_ray: bool) -> tuple[Measurement, str]:
    """Run on a Ray worker: put a checkout at the commit, measure there, return the Measurement and the log."""
    import ray

    raylet = os.getppid()
    watchdog = _watch(job.token, raylet)
    try:
        run_dir = cache_root() / code.key
        repo = run_dir / "repo.git"
        with _locked(run_dir / "repo.lock"):
            _fetch(repo, code, ray.get)
        log_fd, log_name = tempfile.mkstemp(prefix="overnight-ray-", suffix=".log")
        os.close(log_fd)
        log_path = Path(log_name)
        try:
            with _checkout(run_dir, repo, job) as (folder, state):
                measured = _measure(folder, state, job, sent_env, gpus_from_ray, log_path)
        finally:
            log_path.unlink(missing_ok=True)
    finally:
        _release(watchdog, job.token)
    if _gone(raylet):
        # The node died under the measurement (its watchdog ended the commands): what they left is no
        # result. This worker goes too, as Ray's own would, so that the measurement is retried elsewhere.
        os._exit(1)
    return measured


def forget(key: str) -> None:
    """Run on every node when the run ends: remove its cache (repository and checkouts)."""
    shutil.rmtree(cache_root() / key, ignore_errors=True)


def _measure(
    folder: Path, state: Path, job: Job, sent_env: dict[str, str], gpus_from_ray: bool, log_path: Path
) -> tuple[Measurement, str]:
    env = secrets.environment(keep=job.config.task.pass_env)
    env.update(sent_env)
    env[WORKER_PID_VAR] = str(os.getpid())
    if gpus_from_ray and "CUDA_VISIBLE_DEVICES" in os.environ:
        env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
    known = _read_state(state)
    setup = job.setup or known is None
    # What setup made in this checkout is what later runs here must find (not what it made on another node).
    expected = known if known is not None else {}
    box = sandbox.for_task(folder, folder, job.sandbox.network) if job.sandbox else None
    here = replace(
        job,
        task_dir=folder / job.task_rel,
        log_path=log_path,
        env=env,
        setup=setup,
        expected=expected,
        sandbox=box,
    )
    measurement = perform(here)
    if measurement.harness_changed:
        state.unlink(missing_ok=True)  # setup runs again here next time
    elif setup and measurement.setup_done:
        state.write_text(json.dumps(measurement.untracked), encoding="utf-8")
    text = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
    return measurement, text


def _read_state(path: Path) -> dict[str, str] | None:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else None


def _git(*args: str, repo: Path | None = None, cwd: Path | None = None, data: bytes | None = None) -> None:
    """A git command in the node's bare repository ``repo``, or in the checkout ``cwd``."""
    where = [f"--git-dir={repo}"] if repo is not None else []
    proc = subprocess.run(["git", *where, *args], cwd=cwd, input=data, capture_output=True, start_new_session=True)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args[:3])} failed on this node: {proc.stderr.decode(errors='replace')}")


def _has(repo: Path, commit: str) -> bool:
    proc = subprocess.run(["git", f"--git-dir={repo}", "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True)
    return proc.returncode == 0


def _fetch(repo: Path, code: Code, get: Any) -> None:
    """Make sure the node's repository holds ``code.commit`` (the caller holds the repository's lock)."""
    if not (repo / "HEAD").exists():
        repo.mkdir(parents=True, exist_ok=True)
        _git("init", "-q", "--bare", repo=repo)
    if _has(repo, code.commit):
        return
    if not _has(repo, code.base):
        _git("index-pack", "--stdin", repo=repo, data=get(code.base_pack))
    if code.pack is not None:
        _git("index-pack", "--stdin", repo=repo, data=get(code.pack))


@contextlib.contextmanager
def _locked(path: Path, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on ``path``; with ``wait=False``, yields False at once when another holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _checkout(run_dir: Path, repo: Path, job: Job) -> Iterator[tuple[Path, Path]]:
    """A checkout at ``job.commit`` for the job's worktree, and the file holding its setup's outcome."""
    name = hashlib.sha1(str(job.task_dir).encode()).hexdigest()[:16]
    folder = run_dir / "checkouts" / name
    with _locked(run_dir / "checkouts" / f"{name}.lock", wait=False) as mine:
        if not mine:  # another measurement of the same worktree runs here: a folder of its own
            folder = Path(tempfile.mkdtemp(prefix="overnight-ray-", dir=run_dir))
            shutil.rmtree(folder)
        try:
            if (folder / ".git").exists():
                _git("clean", "-q", "-f", "-d", cwd=folder)
                _git("checkout", "-q", "-f", "--detach", job.commit, cwd=folder)
            else:
                shutil.rmtree(folder, ignore_errors=True)
                with _locked(run_dir / "repo.lock"):
                    _git("worktree", "prune", repo=repo)
                    _git("worktree", "add", "-q", "-f", "--detach", str(folder), job.commit, repo=repo)
            yield folder, _state_file(folder)
        finally:
            if not mine:
                shutil.rmtree(folder, ignore_errors=True)


def _state_file(folder: Path) -> Path:
    """Beside the checkout's git files (its .git is a file naming them), out of reach of ``git clean``."""
    link = (folder / ".git").read_text(encoding="utf-8").strip()
    return Path(link.removeprefix("gitdir:").strip()) / _STATE


# -- the watchdog --------------------------------------------------------------------------

_WATCHDOG = """\
import os, select, sys
raylet = int(sys.argv[1])
import psutil
def gone(pid):  # as _gone below (a zombie is gone: nothing may reap it); overnight is imported only to kill
    try:
        return psutil.Process(pid).status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False
watched, pending = set(), b""
while True:
    ready, _, _ = select.select([0], [], [], 1.0)
    if ready:
        chunk = os.read(0, 4096)
        if not chunk:
            break  # the pipe closed: the Ray worker is gone (it ended, died or was cancelled by force)
        *lines, pending = (pending + chunk).split(b"\\n")
        for line in lines:
            word, _, prefix = line.decode().partition(" ")
            if word == "watch":
                watched.add(prefix)
            elif word == "done":
                watched.discard(prefix)
        continue
    if raylet > 1 and gone(raylet):
        break
if watched:
    from overnight.process.tree import kill_token_holders
    for prefix in watched:
        kill_token_holders(prefix)
"""
# The watchdog of this Ray worker process: started with its first measurement, kept for the next ones (a
# Python interpreter started per measurement cost the node ~40 ms of CPU each). A Ray worker runs one task at a
# time, but the watchdog keeps a set of the measurements it watches, as the protocol costs nothing more.
_dog: subprocess.Popen[bytes] | None = None


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie has: nothing may reap it)."""
    try:
        return bool(psutil.Process(pid).status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD))
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # not ours to look at: alive
        return False


def _watch(token: str, raylet: int) -> subprocess.Popen[bytes] | None:
    """Have this worker's watchdog watch a measurement whose commands carry tokens starting with ``token``."""
    global _dog
    if not token:
        return None
    if _dog is None or _dog.poll() is not None:
        if _dog is not None and _dog.stdin is not None:
            with contextlib.suppress(OSError):  # the pipe of a watchdog that ended (a raylet it saw go)
                _dog.stdin.close()
        env = {k: v for k, v in os.environ.items() if k != "OVERNIGHT_PROCESS_TOKEN"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # overnight, as this worker imports it
        _dog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(raylet)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # not in the worker's group: it must outlive the worker
        )
    assert _dog.stdin is not None
    _dog.stdin.write(f"watch {token}:\n".encode())
    _dog.stdin.flush()
    return _dog


def _release(watchdog: subprocess.Popen[bytes] | None, token: str) -> None:
    """The measurement ended here: the watchdog stops watching it, without killing anything."""
    if watchdog is None:
        return
    with contextlib.suppress(OSError, ValueError):  # it may have gone (and the pipe with it): the next one starts anew
        assert watchdog.stdin is not None
        watchdog.stdin.write(f"done {token}:\n".encode())
        watchdog.stdin.flush()
