"""The local executor: measurements run on this machine, in the worker's worktree."""

from __future__ import annotations

import threading

from overnight.executors._base import Executor
from overnight.measure import Job, Measurement, measure


class LocalExecutor(Executor):
    name = "local"

    def measure(self, job: Job, stop: threading.Event | None = None) -> Measurement:
        return measure(job, stop)
