"""Looking at a run: loading it for reading, and the facts every view of it shares.

The contract: :func:`load_view` (or :func:`view_of`) reads a run into a frozen
:class:`RunView`; :func:`tally`, :func:`run_state`, :func:`tail` and
:func:`experiment_diff` answer what the status, the log, the report and the dashboard
all ask of it. Everything here reads the ledger and git only, never the task's current
overnight.toml, so a finished run can be inspected after the task has moved on. The
read side never imports the write side (run.loop, agents, executors, process), and
`import overnight.views` stays light (tests/test_api.py): the wording lives in
overnight.views.text, the commands' texts in overnight.views.commands.
"""

from __future__ import annotations

import functools
import json
import os
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from overnight import git
from overnight.errors import ConfigError, GitError, RunStateError
from overnight.judge import seeds
from overnight.records import DISTURBED, ON_BRANCH, Experiment, Goal, Measured, Note, Status, Usage
from overnight.run.ledger import Ledger
from overnight.run.paths import RunLock, RunPaths, check_tag, latest_tag, paths_for

TAIL_LINES = 200  # lines of a log that tail() keeps by default
TAIL_BYTES = 1 << 20  # tail() reads at most this much of the end of a log to find them
META_KEYS = ("tag", "task", "run_id", "created_at", "start_commit", "config", "agents", "ended", "budget_read")


@dataclass(frozen=True)
class RunView:
    """A read-only snapshot of one run."""

    tag: str
    root: Path
    paths: RunPaths
    meta: dict[str, str]
    experiments: list[Experiment]
    running: bool
    measurements: dict[int, list[Measured]]
    notes: tuple[Note, ...] = ()  # the lab notebook, oldest first

    def _config(self) -> dict[str, Any]:
        """The run's settings as recorded; empty while a run that is just starting has not written them yet."""
        try:
            config = json.loads(self.meta.get("config") or "{}")
        except json.JSONDecodeError:
            return {}
        return config if isinstance(config, dict) else {}

    @property
    def metric(self) -> str:
        return str(self._config().get("metric", {}).get("name", "metric"))

    @property
    def goal(self) -> Goal:
        return Goal(self._config().get("metric", {}).get("goal", "min"))

    @functools.cached_property
    def unvaried(self) -> int:
        """The repeated measurements of the run (each experiment's after its first) when every one gave the
        same value as its experiment's first and the metric is not declared exact (``[judge] exact``), else 0:
        the seed does not reach the script (overnight.judge.seeds)."""
        if self._config().get("judge", {}).get("exact"):
            return 0
        groups: dict[tuple[int, int], set[float]] = {}
        counts: Counter[tuple[int, int]] = Counter()
        for measured in self.measurements.values():
            for m in measured:
                if m.value is not None and m.kind != DISTURBED:
                    groups.setdefault((m.experiment, m.round), set()).add(m.value)
                    counts[(m.experiment, m.round)] += 1
        repeated = [key for key, n in counts.items() if n > 1]
        if not repeated or any(len(groups[key]) > 1 for key in repeated):
            return 0
        return sum(counts[key] - 1 for key in repeated)

    def unvaried_text(self) -> str:
        """The warning every view shows while :attr:`unvaried` holds, or ""."""
        return seeds.unvaried_note(self.unvaried) if self.unvaried else ""

    @property
    def baseline(self) -> Experiment | None:
        return next((e for e in self.experiments if e.status is Status.BASELINE), None)

    @property
    def best(self) -> Experiment | None:
        return next((e for e in reversed(self.experiments) if e.status in ON_BRANCH), None)

    def get(self, experiment_id: int) -> Experiment:
        for exp in self.experiments:
            if exp.id == experiment_id:
                return exp
        raise ConfigError(f"run {self.tag} has no experiment {experiment_id}; see `overnight log --tag {self.tag}`")

    @property
    def usage(self) -> Usage:
        """What the agents spent over the whole run; ``cost_usd`` is None unless some experiment's cost is known."""
        return sum((Usage(e.tokens_in or 0, e.tokens_out or 0, e.cost_usd) for e in self.experiments), Usage())

    @property
    def counts(self) -> Counter[str]:
        """Experiments by status value, in the order each status first occurred."""
        return Counter(e.status.value for e in self.experiments)

    # cached_property writes the instance's __dict__ directly, so it works on this frozen
    # dataclass (it has no __slots__); the snapshot never changes, so neither does the map.
    @functools.cached_property
    def _branch_metrics(self) -> dict[str, float | None]:
        """commit → metric of every point of the run branch (baseline and keeps), the first one per commit."""
        found: dict[str, float | None] = {}
        for e in self.experiments:
            if e.status in ON_BRANCH and e.commit and e.commit not in found:
                found[e.commit] = e.metric
        return found

    def parent_metric(self, exp: Experiment) -> float | None:
        """The metric of the best that ``exp`` was proposed on (None when that is not a point of the branch)."""
        return self._branch_metrics.get(exp.parent) if exp.parent else None

    def reference(self, exp: Experiment) -> tuple[float | None, str]:
        """What ``exp`` is compared with, and which that is, in words.

        A discard: the best's estimate it was judged against, as it was then (the best may have
        been measured again since). Anything else: the current estimate of the best it was
        proposed on, the one its recorded gain is over.
        """
        # Imported here, not above: `import overnight.views` stays at the modules it loads (tests/test_api.py),
        # and only this wording of a view needs the shared words; the text module imports nothing back.
        from overnight.views.text import figure_runs

        judged = exp.bookkeeping.judged_against
        if exp.status is Status.DISCARD and judged is not None and judged.estimate is not None:
            return float(judged.estimate), f"experiment {judged.id} as judged against ({figure_runs(judged.runs)})"
        value = self.parent_metric(exp)
        found = next((e for e in self.experiments if e.commit == exp.parent and e.status in ON_BRANCH), None)
        return value, "" if found is None else f"experiment {found.id}, the best it was proposed on"

    @functools.cached_property
    def _agents(self) -> list[tuple[int, dict[str, Any]]]:
        """The meta key "agents" as (first experiment id, effective [agent] settings), one per start or resume."""
        try:
            entries = json.loads(self.meta.get("agents") or "[]")
        except ValueError:
            return []
        if not isinstance(entries, list):
            return []
        return [
            (e["from"], e["settings"])
            for e in entries
            if isinstance(e, dict) and isinstance(e.get("from"), int) and isinstance(e.get("settings"), dict)
        ]

    def agent_settings(self, experiment_id: int) -> dict[str, Any] | None:
        """The [agent] settings (command-line overrides applied) that ``experiment_id`` was proposed with.

        The last start or resume that began at or before the experiment; None for a run that
        predates the record (no "agents" meta key) or an experiment before its first entry.
        """
        found = None
        for first, settings in self._agents:
            if first <= experiment_id:
                found = settings
        return found


def locate(directory: Path) -> tuple[Path, str]:
    """(repo root, task folder relative to it) for a task folder, without reading its config."""
    directory = directory.resolve()
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such folder")
    root = git.repo_root(directory)
    return root, directory.relative_to(root).as_posix()


def load_view(directory: Path, tag: str | None) -> RunView:
    """The run ``tag`` (the most recent run when None) of the task in ``directory``."""
    root, rel = locate(directory)
    return view_of(root, rel, tag)


def view_of(root: Path, rel: str, tag: str | None) -> RunView:
    """:func:`load_view` for a task already located (no git call): a long-lived reader locates once."""
    tag = check_tag(tag) if tag else latest_tag(root, rel)
    paths = paths_for(root, tag)
    if not paths.ledger.exists():
        raise RunStateError(f"no run with tag {tag!r} in {root}; see the tags under {root / git.STATE_DIR}")
    with Ledger(paths.ledger) as ledger:
        meta = {k: ledger.get_meta(k) or "" for k in META_KEYS}
        experiments = ledger.experiments()
        measurements: dict[int, list[Measured]] = {}
        for m in ledger.measurements():
            measurements.setdefault(m.experiment, []).append(m)
        notes = tuple(ledger.notes())
    return RunView(tag, root, paths, meta, experiments, RunLock(paths.lock).held_by_other(), measurements, notes)


# -- what every way of looking at a run asks of it ------------------------------------------------


def tally(view: RunView) -> tuple[int, int]:
    """(experiments after the baseline, kept): the two numbers every view of a run counts, in these words.

    "Experiments" are the ids after the baseline, whatever became of them (rejected ones and
    the ones running included); "kept" the keeps, an undone keep no longer among them.
    """
    after = sum(1 for e in view.experiments if e.status is not Status.BASELINE and e.id > 0)
    return after, sum(1 for e in view.experiments if e.status is Status.KEEP)


def ended(view: RunView) -> dict[str, str]:
    """How the run's last invocation ended, as recorded: {"at", "why"}; empty when it did not say (killed, older runs)."""
    try:
        found = json.loads(view.meta.get("ended") or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def run_state(view: RunView) -> str:
    """running (a process holds it), finished (it reached a limit it was given) or stopped (anything else)."""
    if view.running:
        return "running"
    return "finished" if ended(view).get("why", "").startswith("reached ") else "stopped"


class LogTail(TypedDict):
    """The end of a log, as tail() reads it (and the dashboard's API sends it)."""

    path: str
    exists: bool
    size: int  # of the whole file, in bytes
    lines: int  # in ``text``
    truncated: bool  # the file holds more than ``text``
    text: str


def tail(path: Path, lines: int = TAIL_LINES, max_bytes: int = TAIL_BYTES) -> LogTail:
    """The last ``lines`` lines of a log, read from its end: a log of gigabytes costs ``max_bytes``."""
    if path.is_symlink() or not path.is_file():  # a link an experiment made is not followed
        return LogTail(path=str(path), exists=False, size=0, lines=0, truncated=False, text="")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        fd = -1
    if fd >= 0 and not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        fd = -1
    if fd < 0:
        return LogTail(path=str(path), exists=False, size=0, lines=0, truncated=False, text="")
    with open(fd, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        start = max(0, size - max_bytes)
        fh.seek(start)
        data = fh.read(max_bytes)
    text = data.decode("utf-8", errors="replace").splitlines()
    if start > 0 and text:
        text = text[1:]  # the first line was cut
    kept = text[-lines:] if lines > 0 else []
    truncated = start > 0 or len(text) > len(kept)
    return LogTail(path=str(path), exists=True, size=size, lines=len(kept), truncated=truncated, text="\n".join(kept))


@dataclass(frozen=True)
class ExperimentDiff:
    """An experiment's change, and where it came from."""

    text: str
    source: str  # "commit": git diff of parent..commit; "saved": the run's logs/<id>.diff; "": none
    error: str = ""  # why the commit's diff could not be had (a commit that is gone), when it could not


@functools.lru_cache(maxsize=128)
def commit_diff(root: Path, parent: str, commit: str) -> str:
    """``git diff parent commit``, kept: two commit ids always have the same diff (a dashboard asks again and again)."""
    return git.diff_text(root, parent, commit)


def experiment_diff(view: RunView, exp: Experiment) -> ExperimentDiff:
    """The change of ``exp`` against its parent; the saved diff when it was never committed or its commit is gone."""
    error = ""
    if exp.commit and exp.parent and exp.commit != exp.parent:
        try:
            return ExperimentDiff(commit_diff(view.root, exp.parent, exp.commit), "commit")
        except GitError as err:  # the commit is gone (its refs deleted, the repository pruned)
            error = str(err)
    saved = view.paths.diff(exp.id)
    if saved.is_file():
        return ExperimentDiff(saved.read_text(encoding="utf-8", errors="replace"), "saved", error)
    return ExperimentDiff("", "", error)
