"""`overnight verify`: measure the run's baseline and final best again at a larger scale.

The search ran on a cheap proxy (a short budget, a small model); verify asks whether its
keeps hold at full scale, and with ``ablate``, which of them matter. Each **arm** is a
tree to measure: the baseline, the best, and (ablating) the best without each keep, that
keep's commit reverted (overnight.git.revert: git's three-way apply, else line by line, in a
temporary index). A keep whose lines a later keep rewrote is taken out together with the
later keeps that changed its lines, as one arm ``without:<id>+<id>``; a keep that cannot
be taken out even so is *entangled*, reported and not measured. Every arm gets its own detached
worktree under ``.overnight/<tag>/verify/<id>/``, where the ``--set`` constants are
rewritten and the result committed without a ref (so an executor that ships commits, Ray,
can ship it); the worktrees are removed at the end and no ref is left.

Rounds: the n-th run of every arm uses ``OVERNIGHT_SEED = n`` (paired seeds), and the arms
alternate within a round, in reverse order every other round, so drift of the machine falls
on all arms alike. With several slots (``--gpus``, ``--slots``, Ray) one round's arms run at
once. Every measurement is recorded in the ledger as it ends (overnight.run.ledger, version 7);
overnight.verify.findings turns them into estimates.

The run must not be running: verify takes the run's lock (so it is the ledger's one writer,
and its measurements do not compete with the run's), and refuses when the run holds it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from overnight import git, secrets
from overnight.config import Config, default_timeout
from overnight.errors import ConfigError, GitError, RunStateError
from overnight.executors import Executor, Job
from overnight.git import revert
from overnight.process import sandbox
from overnight.process.tree import kill_token_holders
from overnight.records import Experiment, Status, VerifyMeasured, chain, now_iso
from overnight.run.ledger import Ledger
from overnight.run.paths import RunLock, paths_for
from overnight.run.slots import Slots
from overnight.script import read_script
from overnight.task import Task
from overnight.verify import overrides
from overnight.verify.findings import BASELINE, BEST, Findings, latest, together_text, without
from overnight.views import view_of
from overnight.views.text import plural

log = logging.getLogger(__name__)

_IDENTITY = {
    "GIT_AUTHOR_NAME": "overnight",
    "GIT_AUTHOR_EMAIL": "overnight@localhost",
    "GIT_COMMITTER_NAME": "overnight",
    "GIT_COMMITTER_EMAIL": "overnight@localhost",
}


@dataclass(frozen=True)
class Scale:
    """What `overnight verify` was asked: the larger scale, and how many runs."""

    budget_s: float | None = None  # OVERNIGHT_BUDGET_S at scale (None: the task's)
    sets: tuple[tuple[str, str], ...] = ()  # --set NAME=VALUE, parsed
    runs: int = 3
    ablate: bool = False

    def check(self) -> Scale:
        if self.runs < 1:
            raise ConfigError("--runs must be 1 or more (2 or more for a confidence interval)")
        if self.budget_s is not None and self.budget_s <= 0:
            raise ConfigError("--budget must be a positive number of seconds")
        return self


@dataclass
class Arm:
    """One tree to measure, in its own worktree."""

    name: str  # "baseline", "best", "without:<id>", or "without:<id>+<id>..." for keeps taken out together
    experiment: Experiment  # the point of the chain it stands for (the keep taken out, the first of a group)
    source: str  # the commit it is made from
    entangled: str = ""  # why the keep could not be taken out; such an arm is not measured
    together: tuple[Experiment, ...] = ()  # an ablation's keeps taken out (the first is ``experiment``)
    path: Path | None = None  # its worktree
    commit: str = ""  # what is measured: ``source`` with the overrides applied
    setup_done: bool = False
    gated: bool = False

    @property
    def folder(self) -> str:
        return self.name.replace(":", "-")


@dataclass(frozen=True)
class Where:
    """Where the measurements run: the executor, and how many at once (one per GPU with ``gpus``)."""

    executor: Executor
    slots: int = 1
    gpus: list[str] = field(default_factory=list)


def _arms(task: Task, points: list[Experiment], ablate: bool) -> list[Arm]:
    base, best = points[0], points[-1]
    arms = [Arm(BASELINE, base, base.commit), Arm(BEST, best, best.commit)]
    if ablate:
        keeps = points[1:]
        by_id = {k.id: k for k in keeps}
        changes = [
            revert.Change(k.id, k.parent or git.git("rev-parse", f"{k.commit}^", cwd=task.root).strip(), k.commit)
            for k in keeps
        ]
        for found in revert.ablations(task.root, changes, best.commit):
            together = tuple(by_id[i] for i in found.ids)
            name = without(*found.ids) if found.commit else without(found.ids[0])
            arms.append(Arm(name, together[0], found.commit, found.entangled, together=together))
    return arms


def _editable_texts(task: Task, commits: list[str]) -> dict[str, str]:
    """Editable files (task-relative) → text, at each of ``commits`` (a later commit's text wins)."""
    texts: dict[str, str] = {}
    for commit in commits:
        for rel in task.files_at(commit)[0]:
            repo_path = rel if task.rel == "." else f"{task.rel}/{rel}"
            try:
                texts[rel] = git.git("show", f"{commit}:{repo_path}", cwd=task.root)
            except (GitError, UnicodeDecodeError):  # binary or vanished: it holds no constant to set
                continue
    return texts


def _config(task: Task, scale: Scale) -> Config:
    """The task's config at scale: the budget (and a timeout that fits it), the [verify] command."""
    section = task.config.task
    changes: dict[str, object] = {}
    if scale.budget_s is not None:
        changes["budget_s"] = scale.budget_s
        changes["timeout_s"] = max(
            section.timeout_s * scale.budget_s / section.budget_s, default_timeout(scale.budget_s)
        )
    if task.config.verify.run.strip():
        changes["run"] = task.config.verify.run
    return dataclasses.replace(task.config, task=dataclasses.replace(section, **changes))  # type: ignore[arg-type]


def _prepare(task: Task, arm: Arm, folder: Path, sets: list[overrides.Override]) -> None:
    """The arm's worktree at its commit, the constants rewritten and committed (no ref)."""
    arm.path = folder / arm.folder
    if arm.path.exists():
        git.git("worktree", "remove", "--force", str(arm.path), cwd=task.root, check=False)
    arm.path.parent.mkdir(parents=True, exist_ok=True)
    git.git("worktree", "add", "--detach", "-q", str(arm.path), arm.source, cwd=task.root)
    changed = overrides.apply(task.in_worktree(arm.path), sets)
    arm.commit = arm.source
    if changed:
        # Plumbing, not `git commit`: the user's hooks and signing have no business with this commit.
        git.git("add", "--", *changed, cwd=task.in_worktree(arm.path))
        tree = git.git("write-tree", cwd=arm.path).strip()
        names = ", ".join(f"{o.name}={o.value}" for o in sets if o.kind == overrides.CONSTANT)
        message = f"overnight verify: {names}\n"
        arm.commit = git.git(
            "commit-tree", tree, "-p", arm.source, "-F", "-", cwd=arm.path, input=message, env=_IDENTITY
        ).strip()
        git.git("update-ref", "--no-deref", "HEAD", arm.commit, cwd=arm.path)  # the worktree's own HEAD


def _job(
    task: Task,
    config: Config,
    arm: Arm,
    seed: int,
    log_path: Path,
    env: dict[str, str],
    settings: dict[str, str],
    tag: str,
) -> Job:
    assert arm.path is not None
    box = sandbox.for_task(arm.path, task.root, config.task.network) if config.task.sandbox == "bwrap" else None
    return Job(
        experiment_id=arm.experiment.id,
        task_dir=task.in_worktree(arm.path),
        config=config,
        log_path=log_path,
        env=env,
        setup=not arm.setup_done,
        tag=tag,
        token=f"verify:{tag}:{arm.folder}:{seed}",
        gate=not arm.gated,
        seed=seed,
        commit=arm.commit,
        root=task.root,
        task_rel=task.rel,
        protected=task.files_at(arm.commit)[1],
        protected_globs=config.task.protected,
        sandbox=box,
        settings=settings,
    )


def rounds(arms: list[str], runs: int) -> list[list[str]]:
    """The order of measurement: every arm once per round, reversed every other round."""
    return [list(arms) if n % 2 == 0 else list(reversed(arms)) for n in range(runs)]


def verify(
    task: Task,
    tag: str | None,
    scale: Scale,
    where: Where,
    stop: threading.Event,
    say: Callable[[str], None] = print,
) -> Findings:
    """Verify run ``tag`` (the latest run of the task when None) at ``scale``; the findings."""
    scale = scale.check()
    view = view_of(task.root, task.rel, tag)
    paths = paths_for(task.root, view.tag)
    lock = RunLock(paths.lock)
    if lock.held_by_other():
        raise RunStateError(
            f"run {view.tag} is running: verify it once it has stopped (its measurements at scale would compete "
            "with the run's, and the run's ledger has one writer)"
        )
    lock.acquire()
    try:
        _clean_up_after_a_dead_verify(task, view.tag, say)
        return _verify(task, view.tag, scale, where, stop, say)
    finally:
        lock.release()


def _clean_up_after_a_dead_verify(task: Task, tag: str, say: Callable[[str], None]) -> None:
    """What a verify that was killed (kill -9, a power cut) left behind: the processes it was measuring, still
    running, and its arms' worktrees. Under the run's lock, so no verify of this run is running now."""
    killed = kill_token_holders(f"verify:{tag}:")
    folder = paths_for(task.root, tag).dir / "verify"
    left = sorted(p for p in folder.glob("*/*") if p.is_dir()) if folder.is_dir() else []
    for path in left:
        git.git("worktree", "remove", "--force", str(path), cwd=task.root, check=False)
    if left or killed:
        git.git("worktree", "prune", cwd=task.root, check=False)
        shutil.rmtree(folder, ignore_errors=True)
        say(
            f"cleaned up after a verification of run {tag} that did not end: "
            f"{killed} {'process' if killed == 1 else 'processes'} stopped, {plural(len(left), 'worktree')} removed"
        )


def _verify(
    task: Task, tag: str, scale: Scale, where: Where, stop: threading.Event, say: Callable[[str], None]
) -> Findings:
    view = view_of(task.root, task.rel, tag)  # again, under the lock: the run may have ended just now
    points = chain(view.experiments)
    if len(points) < 2:
        raise RunStateError(f"run {tag} kept nothing yet: there is no best to verify against its baseline")
    arms = _arms(task, points, scale.ablate)
    sets = overrides.resolve(list(scale.sets), _editable_texts(task, [a.source for a in arms if a.source]))
    config = _config(task, scale)
    for o in sets:
        where_set = f"in {', '.join(o.files)}" if o.kind == overrides.CONSTANT else "for the experiment's commands"
        say(f"--set {o.name}={o.value}: {o.kind} {where_set}")
    script = read_script(task.dir, config.task.run, config.task.editable)
    if view.meta.get("budget_read") == "false" and not task.config.verify.run.strip():
        # the run's start said its command reads no budget (overnight demo's fixed amount of work, --bytes)
        script = dataclasses.replace(script, reads_budget=False)
    settings = {
        "budget_s": config.task.budget_s,
        # false when the scale's command does not read OVERNIGHT_BUDGET_S: the budget then says nothing of the runs
        "budget_read": script.reads_budget or not script.files,
        "set": [o.to_json() for o in sets],
        "command": config.task.run,
        "verify_run": bool(task.config.verify.run.strip()),  # the command is [verify] run's
        "runs": scale.runs,
        "ablate": scale.ablate,
        "executor": where.executor.name,
        "arms": [
            {
                "arm": a.name,
                "experiment": a.experiment.id,
                "hypothesis": a.experiment.hypothesis,
                "commit": a.experiment.commit,
                "entangled": a.entangled,
                **(
                    {"together": [e.id for e in a.together], "hypotheses": [e.hypothesis for e in a.together]}
                    if len(a.together) > 1
                    else {}
                ),
            }
            for a in arms
        ],
    }
    paths = paths_for(task.root, tag)
    measured = [a for a in arms if not a.entangled]
    env = secrets.environment(keep=config.task.pass_env)
    with Ledger(paths.ledger) as ledger:
        vid = ledger.begin_verification(settings, now_iso())
        folder = paths.dir / "verify" / str(vid)
        say(
            f"verification {vid} of run {tag}: {len(measured)} arms x {scale.runs} runs, "
            f"{script.budget_text(config.task.budget_s)} ({', '.join(a.name for a in measured)})"
        )
        for arm in arms:
            if arm.entangled:
                say(f"{arm.name}: entangled, not measured: {arm.entangled}")
            elif len(arm.together) > 1:
                say(f"{arm.name}: {together_text([e.id for e in arm.together])}")
        try:
            for arm in measured:
                _prepare(task, arm, folder, sets)
            variables = overrides.environment(sets)
            _measure(task, tag, config, measured, scale.runs, where, (env, variables), ledger, vid, stop, say)
            if not stop.is_set():
                ledger.end_verification(vid, now_iso())
        finally:
            for arm in measured:
                if arm.path is not None:
                    git.git("worktree", "remove", "--force", str(arm.path), cwd=task.root, check=False)
            git.git("worktree", "prune", cwd=task.root, check=False)
            shutil.rmtree(folder, ignore_errors=True)
    found = latest(view_of(task.root, task.rel, tag))  # this one: the run's lock is held
    assert found is not None and found.verification.id == vid
    return found


def _measure(
    task: Task,
    tag: str,
    config: Config,
    arms: list[Arm],
    runs: int,
    where: Where,
    environment: tuple[dict[str, str], dict[str, str]],
    ledger: Ledger,
    vid: int,
    stop: threading.Event,
    say: Callable[[str], None],
) -> None:
    """Every round of every arm; each measurement recorded as it ends (here: the one writer)."""
    by_name = {a.name: a for a in arms}
    env, variables = environment  # this machine's (credentials removed), and the --set variables
    slots = Slots(where.slots, where.gpus)
    logs = paths_for(task.root, tag).logs

    def one(arm: Arm, seed: int) -> VerifyMeasured:
        with slots.hold() as gpu:
            log_path = logs / f"verify-{vid}-{arm.folder}-{seed}.log"
            job = _job(task, config, arm, seed, log_path, {**env, **gpu}, variables, tag)
            started = now_iso()
            m = where.executor.measure(job, stop)
        arm.setup_done = arm.setup_done or m.setup_done
        arm.gated = True
        duration = m.result.duration_s if m.result is not None else None
        status = "measured" if m.status is None else m.status.value
        return VerifyMeasured(vid, arm.name, seed, arm.commit, m.value, status, m.reason, m.metrics, duration, started)

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, slots.count)) as pool:
        for seed, order in enumerate(rounds([a.name for a in arms], runs)):
            if stop.is_set():
                return
            # Within a round, each arm once: an arm's worktree is never used by two measurements at once.
            futures = [pool.submit(one, by_name[name], seed) for name in order]
            for future in futures:
                result = future.result()
                if result.status == Status.INTERRUPTED.value:
                    continue  # stopped: not a measurement
                ledger.add_verify_measurement(result)
                shown = f"{result.value:.6g}" if result.value is not None else f"{result.status}: {result.reason}"
                say(f"  seed {seed} {result.arm}: {shown}")
