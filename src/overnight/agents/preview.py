"""`overnight brief`: the brief the next agent of a run would get, printed.

It is built the way a worker builds it (``brief.gather`` and ``agents/prompt.py``), from
what a resumed run would use: the run's ledger (history, measurements, notebook), the
files of its best commit, and the task's current overnight.toml and program.md. Nothing
is written: the best's files are read from git into a temporary folder.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from dataclasses import replace
from pathlib import Path

from overnight import git
from overnight.agents import brief, jsonbrief
from overnight.agents._base import Context
from overnight.agents.prompt import brief as brief_text
from overnight.agents.prompt import template
from overnight.choices import AGENT_KINDS
from overnight.errors import ConfigError, RunStateError
from overnight.records import DISTURBED, Status
from overnight.task import Task
from overnight.views import RunView, load_view

CODING_CLIS = ("claude", "codex", "gemini", "opencode", "aider")
CHAT_MODELS = ("openai", "anthropic")


def next_brief(directory: Path, tag: str | None, kind: str | None) -> str:
    """The brief the next experiment's agent would read, as that agent kind reads it.

    ``kind`` defaults to the agent the run last used (else the task's ``[agent] kind``).
    Command agents get JSON; coding CLIs and chat models text, with the rules they are sent.
    """
    view = load_view(directory, tag)
    task = Task.load(directory)
    best, baseline = view.best, view.baseline
    if best is None or baseline is None:
        raise RunStateError(
            f"run {view.tag} has no baseline yet: the first agent is asked once the baseline is measured"
        )
    next_id = max(e.id for e in view.experiments) + 1
    used = view.agent_settings(next_id) or {}
    kind = kind or str(used.get("kind") or task.config.agent.kind)
    if kind not in AGENT_KINDS:
        raise ConfigError(f"--agent: unknown agent kind {kind!r}; valid kinds are: {', '.join(AGENT_KINDS)}")
    if kind == "tune":
        return (
            "The tune agent reads no brief: it proposes values for the constants of its search space from the "
            "measured history (Optuna's TPE). Pass --agent KIND to see what another agent would read."
        )
    with tempfile.TemporaryDirectory(prefix="overnight-brief-") as scratch:
        worktree = Path(scratch)
        _extract(task.root, best.commit, worktree)
        context = _context(view, task, worktree, next_id)
        if kind == "command":
            return json.dumps(jsonbrief.bounded(context.brief()), indent=1)
        tokens = int(used.get("context_tokens") or task.config.agent.context_tokens)
        text = brief_text(context, tokens)
        if kind in CODING_CLIS:
            return template("cli_rules").substitute() + "\n\n" + text
        return f"=== system ===\n{template('llm_rules').substitute()}\n\n=== user ===\n{text}"


def _context(view: RunView, task: Task, worktree: Path, next_id: int) -> Context:
    finished = [e for e in view.experiments if e.status is not Status.RUNNING]
    finished.sort(key=lambda e: (e.ended_at or "", e.id))  # the order they finished, as a worker sees it
    history = tuple(e if e.holdout is None else replace(e, holdout=None) for e in finished)  # kept hidden
    running = tuple(e for e in view.experiments if e.status is Status.RUNNING and e.hypothesis)
    samples: dict[tuple[int, int], list[float]] = {}
    for measured in view.measurements.values():
        for m in measured:
            if m.value is not None and m.kind != DISTURBED:
                samples.setdefault((m.experiment, m.round), []).append(m.value)
    best = view.best
    assert best is not None
    notes_path = view.paths.notes(next_id)
    facts = brief.gather(
        config=task.config,
        history=history,
        running=running,
        samples=samples,
        notes=view.notes,
        logs=view.paths.logs,
        root=view.root,
        best=best,
        progress=brief.Progress(experiment=next_id, kept=sum(1 for e in finished if e.status is Status.KEEP)),
        notes_path=notes_path,
    )
    baseline = view.baseline
    return Context(
        experiment_id=next_id,
        program=task.program,
        config=task.config,
        worktree=worktree,
        task_dir=task.in_worktree(worktree),
        editable=task.files_at(best.commit)[0],
        baseline=baseline.metric if baseline else None,
        best=best.metric,
        best_commit=best.commit,
        history=history,
        running=running,
        log_path=view.paths.log(next_id, "agent"),
        brief_path=view.paths.brief(next_id),
        facts=facts,
        notes_path=notes_path,
    )


def _extract(root: Path, commit: str, into: Path) -> None:
    """The files of ``commit`` written under ``into`` (read from git's objects: no checkout is touched)."""
    data = git.git_bytes("archive", "--format=tar", commit, cwd=root)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        archive.extractall(into, filter=_inside)


def _inside(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
    """tarfile's "data" filter, but a member it refuses (a link out of the tree, an absolute link) is left
    out rather than failing the whole extraction: the brief shows the editable files, not links."""
    try:
        return tarfile.data_filter(member, path)
    except tarfile.FilterError:
        return None
