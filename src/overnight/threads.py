"""Threads kept for the next short task, so the loop does not start a new one for each.

The loop hands a few small tasks to threads every experiment (copying a command's output
to its log, writing the commit, resetting the worktree). Starting a thread waits until the new
thread runs; on a busy machine that is a scheduling delay of a millisecond or more on the
controller's path, several times an experiment. :func:`spawn` gives the task to an idle
thread that finished an earlier one, and starts a new thread only when none is idle: there
is no bound and no queue, so a task never waits behind another (a log's copy may block on its
pipe for as long as the command runs). The threads are daemons, as the ones they replace were:
one still blocked when the controller exits does not keep it alive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

IDLE_S = 60.0  # an idle thread ends after this long without a task


class Task:
    """A function handed to a thread; :meth:`wait` waits for it to return (or raise) and re-raises."""

    def __init__(self, target: Callable[[], None]) -> None:
        self._target = target
        self._done = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            self._target()
        except BaseException as exc:  # handed to the waiting thread
            self._error = exc
        finally:
            self._target = _nothing  # drop what it holds
            self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the task (at most ``timeout``); whether it ended. What it raised is raised here, once."""
        if not self._done.wait(timeout):
            return False
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return True


def _nothing() -> None:
    pass


class _Worker:
    def __init__(self) -> None:
        self.task: Task | None = None
        self.ready = threading.Event()


_lock = threading.Lock()
_idle: list[_Worker] = []


def spawn(target: Callable[[], None]) -> Task:
    """Run ``target`` on an idle kept thread, else on a new one; :meth:`Task.wait` waits for it."""
    task = Task(target)
    with _lock:
        worker = _idle.pop() if _idle else None
    if worker is None:
        worker = _Worker()
        worker.task = task
        threading.Thread(target=_serve, args=(worker,), daemon=True, name="overnight-task").start()
    else:
        worker.task = task
        worker.ready.set()
    return task


def _serve(worker: _Worker) -> None:
    while True:
        task, worker.task = worker.task, None
        if task is not None:
            task._run()
        worker.ready.clear()
        with _lock:
            _idle.append(worker)
        if not worker.ready.wait(IDLE_S):
            with _lock:
                if worker in _idle:  # no task was handed to it meanwhile: it ends
                    _idle.remove(worker)
                    return
            worker.ready.wait()  # handed one just as it timed out
