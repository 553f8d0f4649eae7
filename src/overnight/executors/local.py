"""The local executor: measurements run on this machine, in the worker's worktree."""

from __future__ import annotations

import threading

from overnight.executors._base import Executor, Job, Measurement
from overnight.executors.perform import perform


class LocalExecutor(Executor):
    name = "local"

    def measure(self, job: Job, stop: threading.Event | None = None) -> Measurement:
        return perform(job, stop)
