"""The data that flows through a run: statuses, goals, proposals, results, experiments.

These are plain values (frozen dataclasses and enums) so they can be pickled to
other processes, stored in the ledger and compared in tests.

Glossary (the keep policy itself is walked through in overnight.judge):

run
    One campaign on a task, named by its tag: the branch ``overnight/<tag>`` and the folder
    ``.overnight/<tag>/`` (ledger, logs, worktrees); it can be stopped and resumed. Beware: "a run"
    of an experiment (``Experiment.runs``, "measured in 2 runs") means one measurement.
measurement
    One execution of the task at one commit with one seed (setup, gate, run, metric), recorded as a
    :class:`Measured` whose ``kind`` says why it was taken: baseline, noise, candidate, best (measured
    again), follow-up, or disturbed (set aside).
experiment
    One proposed change, committed on the best, and what became of it: a ledger row
    (:class:`Experiment`) with a :class:`Status`. While it is judged it is the *candidate*; its
    estimate (``metric``) is the mean of its latest round's measurements, set-aside ones left out.
baseline
    The task's code as the run found it, measured first (at least once, ``[judge] noise_runs`` times); status
    ``baseline``, the first point of the run branch.
best
    The run branch's tip: the baseline or the last keep. Every candidate is judged against it; its
    estimate is re-made each time it is measured again.
round
    An experiment's measurements since it was last rebased onto a newer best (``Experiment.round``,
    ``Measured.round``); only the latest round counts, and its seeds count from 0 again.
arm
    In ``overnight verify``, one commit measured at scale, on the same seeds as the others: ``baseline``,
    ``best``, or the best with keeps taken out (``without:<id>``, ``without:<id>+<id>``).
screen
    The judge's first look, on a candidate's first run: unless it looks better than the best by the
    threshold plus one standard error (``rule.SCREEN``), it is discarded after that one run.
confirm
    ``[judge] confirm`` (the default): a candidate past the screen is measured again, and the best as
    often, before it can be kept; a single run never keeps a change.
follow-up
    The extra run(s) of a kept change (``rule.FOLLOW_UP_RUNS``) before it becomes the best: the runs
    that got it kept were the lucky ones.
set aside
    A disturbed measurement left out of every estimate and of the pooled noise; the ledger keeps it,
    with kind :data:`DISTURBED`, and ``info["set_aside"]`` says which and why.
disturbed
    Taken while other programs used ``[judge] disturbed_load`` more of the machine than usual
    (``Measured.contention``), or worse than its experiment's best run by more than the noise explains.
undone
    A keep that, measured again, is no longer better than the best it replaced by the threshold: the
    run branch moves back, and it is recorded as a discard ("kept, then undone").
stale
    Status of a change that beat its parent but could not be rebased onto a newer best another worker
    kept meanwhile (a conflict, or the change is already in it).
entangled
    In ``overnight verify --ablate``, a keep that cannot be reverted out of the best, even together with
    the later keeps that rewrote its lines: it gets no contribution.
holdout
    ``[metric] holdout``: a protected command printing the metric on held-out data, run for the baseline
    and keeps only; recorded, never shown to agents, never judged on.
seed
    ``OVERNIGHT_SEED``: the number of a measurement within its experiment's round (0, 1, ...), so
    candidate and best see the same seeds in the same order; ``[judge] seed`` plants it into a script
    that fixes its own seed.
noise
    How much runs of the same code differ; pooled over every experiment of the run measured more than
    once (overnight.judge.noise), it sets the standard errors every decision is made with.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from overnight.bookkeeping import Bookkeeping


class Status(enum.StrEnum):
    """Where an experiment ended up. Every status except RUNNING is final."""

    RUNNING = "running"  # recorded while in progress; becomes INTERRUPTED if the controller died
    BASELINE = "baseline"  # the unchanged code, measured
    KEEP = "keep"  # beat the best: the run branch advanced to it
    DISCARD = "discard"  # measured, not better
    CRASH = "crash"  # the run command (or setup) exited non-zero
    TIMEOUT = "timeout"  # killed past timeout_s
    NO_METRIC = "no_metric"  # ran, but the metric was missing, NaN or infinite
    GATE_FAILED = "gate_failed"  # the correctness gate exited non-zero
    REJECTED = "rejected"  # the proposal broke the rules, or the agent failed
    NO_CHANGE = "no_change"  # the proposal changed nothing
    DUPLICATE = "duplicate"  # the same change was already tried on the same parent
    STALE = "stale"  # beat its parent, but could not be rebased onto a newer best (conflict)
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C or by the controller dying


# Statuses whose metric is a measurement of the code (the others never produced one that counts).
MEASURED = (Status.BASELINE, Status.KEEP, Status.DISCARD)
# Statuses that mark a point of the run branch: the baseline and every keep.
ON_BRANCH = (Status.BASELINE, Status.KEEP)
# The kind of a measurement set aside: taken while the machine was disturbed (a burst of load), left out of estimates.
DISTURBED = "disturbed"


def now_iso() -> str:
    """The time now, as every record holds it: ISO 8601, UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Goal(enum.StrEnum):
    """Which direction of the metric is better."""

    MIN = "min"
    MAX = "max"

    def improvement(self, value: float, reference: float) -> float:
        """How much better ``value`` is than ``reference``; positive means better."""
        return reference - value if self is Goal.MIN else value - reference


@dataclass(frozen=True)
class Usage:
    """What a proposal cost: tokens in and out, and USD when the price is known."""

    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None

    def __add__(self, other: Usage) -> Usage:
        cost = (
            None if self.cost_usd is None and other.cost_usd is None else (self.cost_usd or 0) + (other.cost_usd or 0)
        )
        return Usage(self.tokens_in + other.tokens_in, self.tokens_out + other.tokens_out, cost)


@dataclass(frozen=True)
class Proposal:
    """What an agent returns: its one-line hypothesis. The edits are in the worktree."""

    hypothesis: str
    agent: str = ""
    usage: Usage | None = None  # None when the agent does not know (a plain command)
    # Free-form facts the agent wants recorded (model, parameters tried); JSON-serialisable. They become the
    # experiment's ``info``, less any key named like one of the harness's facts (see Bookkeeping): such a key
    # is left out (the loop logs a warning naming it), so an agent cannot change the harness's bookkeeping.
    info: dict[str, Any] = field(default_factory=dict)
    # Lines the agent leaves in the run's lab notebook, for later experiments and the other workers.
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Note:
    """One line of the run's lab notebook: what an agent wrote, with the experiment that wrote it."""

    experiment: int
    text: str
    worker: int = 0
    agent: str = ""
    at: str = ""  # ISO time it was recorded
    id: int = 0  # its order in the notebook (given by the ledger)

    def data(self) -> dict[str, Any]:
        """The note as agents' JSON briefs give it."""
        return {"experiment": self.experiment, "worker": self.worker, "agent": self.agent, "text": self.text}


@dataclass(frozen=True)
class RunResult:
    """What the runner observed of one command."""

    exit_code: int | None  # None when killed for the timeout or an interrupt
    duration_s: float
    peak_memory_mb: float
    timed_out: bool = False
    interrupted: bool = False
    output: str = ""  # what the command printed (the part of the log it wrote), possibly cut
    stderr: str = ""  # only when stdout was kept apart: what went to the log
    over_memory: bool = False  # killed for holding more than memory_mb
    contention: float | None = None  # the share of the machine other programs used meanwhile (0 to 1)
    containment: str = "tree"  # how its processes were held: "cgroup" (see overnight.process.cgroup) or "tree"

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not (self.timed_out or self.interrupted or self.over_memory)


@dataclass(frozen=True)
class Experiment:
    """One row of the ledger: a proposed change and what became of it.

    This field list is the one description of an experiment: the ledger's columns, the
    `log --format json` keys (every field whose metadata does not say ``json: False``,
    in this order) and the MLflow export are derived from it. A field whose column has
    another name says so in its metadata (``column``); one kept within another's column
    and key says which (``within``): ``bookkeeping``, within ``info``.
    """

    id: int
    status: Status
    metric: float | None = None  # the estimate: the mean of its measurements (``runs`` of them)
    metrics: dict[str, float] = field(default_factory=dict)  # every number the last run printed
    hypothesis: str = ""
    commit: str = field(default="", metadata={"column": "commit_hash"})  # empty when nothing was committed
    parent: str = ""  # commit the change was proposed on (the best at that time)
    agent: str = ""
    reason: str = ""  # why it ended this way, for anything but a plain keep/discard
    files_changed: int = 0
    insertions: int = 0
    deletions: int = 0
    duration_s: float | None = None
    peak_memory_mb: float | None = None
    exit_code: int | None = None
    started_at: str = ""  # ISO 8601, UTC
    ended_at: str = ""
    worker: int = 0
    host: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # what its agent reported (``Proposal.info``)
    # what the harness recorded of it: stored and printed within the ``info`` object (see Bookkeeping)
    bookkeeping: Bookkeeping = field(default_factory=Bookkeeping, metadata={"within": "info"})
    tokens_in: int | None = None  # what the agent spent on this proposal, when it says
    tokens_out: int | None = None
    cost_usd: float | None = None
    runs: int = 0  # measurements behind ``metric`` (their mean)
    improvement: float | None = None  # for keeps: the estimated gain over the parent, in the goal's direction
    ci_low: float | None = None  # its confidence interval, when the noise was known
    ci_high: float | None = None
    holdout: float | None = None  # the held-out metric (baseline and keeps only); never shown to agents
    # a digest of the change: equal keys on one parent are the same diff (the harness's, not the user's)
    change_key: str = field(default="", metadata={"json": False})

    @property
    def round(self) -> int:
        """How many times the change was rebased onto a newer best: its measurements of that round count."""
        return len(self.bookkeeping.rebased)

    def stored_info(self) -> dict[str, Any]:
        """The ``info`` object the ledger stores and `log --format json` prints: the agent's keys, then the
        harness's facts that are set (:meth:`Bookkeeping.to_json`); :meth:`Bookkeeping.split` takes it apart.
        Only an older ledger's agent can have a key named like a fact (see split): a fact set since wins."""
        return {**self.info, **self.bookkeeping.to_json()}

    def to_json(self) -> dict[str, Any]:
        """The experiment as a JSON-ready dict (the `log --format json` row)."""
        found: dict[str, Any] = {}
        for f in fields(self):
            if f.metadata.get("json", True) and "within" not in f.metadata:
                found[f.name] = getattr(self, f.name)
        return {**found, "status": self.status.value, "info": self.stored_info()}


class Ended(Exception):
    """An experiment ended early, before it was judged or kept: with ``status``, for ``reason``.

    Raised by the loop's steps and the measurer, caught by the worker, which records it.
    """

    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def chain(experiments: Iterable[Experiment]) -> list[Experiment]:
    """The points of the run branch in its order: the baseline, then each keep made on the one before.

    Keeps are linked by their parents, not ordered by id: with several workers, a change
    proposed early can be kept (rebased) after one proposed later.
    """
    points = [e for e in experiments if e.status in ON_BRANCH]
    found = next((e for e in points if e.status is Status.BASELINE), None)
    if found is None:
        return []
    on = {e.parent: e for e in points if e.status is Status.KEEP}
    ordered = [found]
    while ordered[-1].commit in on:
        ordered.append(on.pop(ordered[-1].commit))
    return ordered


@dataclass(frozen=True)
class Measured:
    """One measurement of an experiment (an experiment may be measured several times)."""

    experiment: int
    seed: int
    value: float | None  # None when this measurement failed
    kind: str  # "baseline", "noise", "candidate", "best" (measured again), "follow-up" (of a keep), DISTURBED
    metrics: dict[str, float] = field(default_factory=dict)
    duration_s: float | None = None
    peak_memory_mb: float | None = None
    at: str = ""
    round: int = 0  # 0; one more each time the experiment was rebased onto a newer best and measured anew
    load: tuple[float, float] | None = None  # the machine's 1-minute load average when it started and ended
    contention: float | None = None  # the share of the machine other programs used while it ran (0 to 1)


@dataclass(frozen=True)
class Verification:
    """One `overnight verify`: the run's points measured again at a larger scale.

    ``settings`` holds what was asked (budget, --set overrides, runs, the command) and the
    arms measured: ``[{"arm", "experiment", "hypothesis", "commit", "entangled"}]``, and for keeps
    taken out together (arm ``without:<id>+<id>``) also ``"together"`` (their ids, ``experiment``'s
    first) and ``"hypotheses"``; verifications recorded before groups have neither.
    """

    id: int
    started_at: str = ""
    ended_at: str = ""  # "" while it runs, or when it was stopped before the end
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VerifyMeasured:
    """One measurement of a verification: an arm ("baseline", "best", "without:<id>", "without:<id>+<id>") at one seed."""

    verification: int
    arm: str
    seed: int
    commit: str = ""  # what was measured (the arm's commit with the --set overrides applied)
    value: float | None = None  # None when the measurement failed (see ``status``)
    status: str = "measured"  # "measured", or the Status value of a failed measurement
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    duration_s: float | None = None
    at: str = ""
