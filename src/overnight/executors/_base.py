"""The executor contract: where a measurement runs.

An executor takes a :class:`~overnight.measure.Job` (a worktree at the commit to
measure, the config, the environment) and returns a
:class:`~overnight.measure.Measurement`. It decides *where* the commands run
(this machine, a cluster node); *what* runs is always :func:`overnight.measure.measure`.

Contract: ``measure`` blocks until the job is done, never raises for a failing
experiment (that is a status in the Measurement), returns promptly with status
``interrupted`` once ``stop`` is set, and leaves no process of the job running.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod

from overnight.measure import Job, Measurement


class Executor(ABC):
    name: str = ""
    ships_commits: bool = False  # True when measurements run elsewhere and need the commit before they start

    @abstractmethod
    def measure(self, job: Job, stop: threading.Event | None = None) -> Measurement:
        """Measure ``job``; see the module docstring."""

    def close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Release the executor's resources when the run ends."""
