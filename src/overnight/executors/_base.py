"""The executor contract: where a measurement runs, and the two values it trades in.

An executor takes a :class:`Job` (a worktree at the commit to measure, the config,
the environment) and returns a :class:`Measurement`. It decides *where* the commands
run (this machine, a cluster node); *what* runs is always
:func:`overnight.executors.perform.perform`: setup → gate → run → evaluator → metric.

Contract: ``measure`` blocks until the job is done, never raises for a failing
experiment (that is a status in the Measurement), returns promptly with status
``interrupted`` once ``stop`` is set, and leaves no process of the job running.

How the code travels is the executor's business. A job's commit may still be being
written when ``measure`` is called (the worktree at ``task_dir`` already holds exactly
the files it will contain, so a local measurement need not wait for it); an executor
that runs the job elsewhere takes :meth:`Job.resolved`, which waits for the commit, and
ships that.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from overnight.config import Config
from overnight.process.sandbox import Sandbox
from overnight.records import RunResult, Status


@dataclass(frozen=True)
class Job:
    """One measurement to make. Once :meth:`resolved`, picklable: it can travel to another process or node."""

    experiment_id: int
    task_dir: Path  # the task folder inside a worktree at the commit to measure
    config: Config
    log_path: Path
    env: dict[str, str]  # the environment for the commands, without overnight's own variables (see perform)
    setup: bool  # run [task] setup first (the worktree's first measurement)
    tag: str = ""  # the run's tag (OVERNIGHT_TAG)
    token: str = ""  # marks the commands' processes (see process.tree.kill_token_holders)
    gate: bool = True  # run [task] gate first (not again when the same commit is measured again)
    seed: int = 0  # OVERNIGHT_SEED: the n-th measurement of a commit uses seed n
    commit: str = ""  # the commit in task_dir's worktree ("" while it is written: see ``written``)
    root: Path | None = None  # the repository holding ``commit``
    task_rel: str = "."  # the task folder within the repository
    protected: tuple[str, ...] = ()  # files (relative to task_dir) the run must leave as they were
    protected_globs: tuple[str, ...] = ()  # [task] protected: untracked files too, found after setup
    sandbox: Sandbox | None = None  # run the commands in it
    # Digests of protected files no commit holds (data made by setup), as setup left them: a
    # difference before the run means the agent or an earlier run changed them.
    expected: dict[str, str] = field(default_factory=dict)
    # Variables set on purpose (`overnight verify --set NAME=VALUE`): unlike ``env``, they travel with
    # the job to whatever node runs it.
    settings: dict[str, str] = field(default_factory=dict)
    # Waits for the commit while it is being written, and gives its id; never sent anywhere.
    written: Callable[[], str] | None = field(default=None, repr=False, compare=False)

    def resolved(self) -> Job:
        """This job with its commit known (waiting for it if need be), and nothing that cannot be pickled."""
        if self.commit or self.written is None:
            return replace(self, written=None)
        return replace(self, commit=self.written(), written=None)


@dataclass(frozen=True)
class Measurement:
    """The outcome of a Job. ``status`` is None when the metric was read."""

    status: Status | None
    reason: str = ""
    value: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    result: RunResult | None = None  # the run command's own result, when it ran
    setup_done: bool = False
    flags: tuple[str, ...] = ()  # things a person reviewing the experiment should know
    untracked: dict[str, str] = field(default_factory=dict)  # digests of the untracked protected files, before the run
    harness_changed: bool = False  # rejected because protected files changed (see ``reason``)


class Executor(ABC):
    """Runs measurements somewhere; see the module docstring for the contract."""

    name: str = ""
    #: time.monotonic() at which the run starts no new experiment (--max-time), when it has one. A measurement
    #: that has not started and cannot (no node could take it) ends then as ``interrupted``, not at the wait's end.
    deadline: float | None = None

    @abstractmethod
    def measure(self, job: Job, stop: threading.Event | None = None) -> Measurement:
        """Measure ``job``; see the module docstring."""

    def close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Release the executor's resources when the run ends."""
