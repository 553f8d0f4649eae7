"""Perform a job: setup (first time) → gate → run → evaluator → metric.

This is the procedure every executor performs, wherever it runs. It returns a
:class:`~overnight.executors._base.Measurement`: either a metric value, or the status
and reason that say why there is none. Judging is not its business.

The commands get the job's environment plus overnight's own variables, made here
from the job's typed fields at the moment a command starts: ``OVERNIGHT_BUDGET_S``,
``OVERNIGHT_EXPERIMENT_ID``, ``OVERNIGHT_TAG`` and ``OVERNIGHT_SEED``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading

from overnight import globs
from overnight.executors import integrity, metrics
from overnight.executors._base import Job, Measurement
from overnight.judge import seeds
from overnight.process import run_command
from overnight.records import RunResult, Status


def _failed(result: RunResult, what: str, timeout_s: float) -> tuple[Status, str] | None:
    """The status for a command that did not succeed, or None when it did."""
    if result.interrupted:
        return Status.INTERRUPTED, f"interrupted during the {what}"
    if result.timed_out:
        return Status.TIMEOUT, f"the {what} ran past timeout_s = {timeout_s:g}s and was killed"
    if result.over_memory:
        return Status.CRASH, f"the {what} held more than memory_mb and was killed (peak {result.peak_memory_mb:g} MB)"
    if result.exit_code != 0:
        last = next((ln.strip() for ln in reversed(result.output.splitlines()) if ln.strip()), "")
        hint = " (command not found)" if result.exit_code == 127 else ""
        return Status.CRASH, f"the {what} exited with code {result.exit_code}{hint}: {last[:200]}"
    return None


def environment(job: Job, seed: int) -> dict[str, str]:
    """The environment of the job's commands: its own, and overnight's variables."""
    return {
        **job.env,
        **job.settings,
        "OVERNIGHT_BUDGET_S": f"{job.config.task.budget_s:g}",
        "OVERNIGHT_EXPERIMENT_ID": str(job.experiment_id),
        "OVERNIGHT_TAG": job.tag,
        "OVERNIGHT_SEED": str(seed),
    }


def _run(job: Job, command: str, label: str, seed: int, stop: threading.Event | None) -> RunResult:
    """One of the task's commands for ``job``, under its limits, sandbox and log."""
    task = job.config.task
    return run_command(
        command,
        cwd=job.task_dir,
        log_path=job.log_path,
        timeout_s=task.timeout_s,
        env=environment(job, seed),
        stop=stop,
        label=f"{label} (experiment {job.experiment_id}, seed {seed})",
        token=f"{job.token}:{label}:{seed}" if job.token else "",
        memory_mb=task.memory_mb,
        max_log_mb=task.max_log_mb,
        sandbox=job.sandbox,
    )


def perform(job: Job, stop: threading.Event | None = None) -> Measurement:
    """Run the job's commands in order; stop at the first that fails.

    With ``[judge] seed``, the constant it names is set to the job's seed for the length of the
    measurement (see overnight.judge.seeds); a commit that no longer assigns it is rejected.
    """
    name = job.config.judge.seed
    if not name:
        return _perform(job, stop)
    try:
        with seeds.planted(job.task_dir, job.config.task.editable, name, job.seed):
            return _perform(job, stop)
    except seeds.SeedMissing as missing:
        return Measurement(Status.REJECTED, str(missing))


def _perform(job: Job, stop: threading.Event | None) -> Measurement:
    task = job.config.task
    timeout = task.timeout_s

    def run(command: str, label: str) -> RunResult:
        return _run(job, command, label, job.seed, stop)

    if job.setup and task.setup:
        failure = _failed(run(task.setup, "setup"), "setup", timeout)
        if failure:
            return Measurement(failure[0], failure[1])
    setup_done = True

    if task.gate and job.gate:
        failure = _failed(run(task.gate, "gate"), "gate", timeout)
        if failure:
            status = failure[0] if failure[0] is Status.INTERRUPTED else Status.GATE_FAILED
            return Measurement(status, failure[1], setup_done=setup_done)

    named = sorted(globs.files_under(job.task_dir, job.protected_globs) - set(job.protected))
    watched = (*job.protected, *named)
    before = integrity.fingerprint(job.task_dir, watched)
    untracked = {path: before[path] for path in named}
    drifted = integrity.changed(job.expected, before)
    if drifted:
        reason = (
            f"harness changed before the run: protected files ({_shown(drifted)}) are not as setup made them "
            "(changed by the agent or by an earlier run); setup runs again before the next measurement"
        )
        return Measurement(Status.REJECTED, reason, setup_done=setup_done, untracked=untracked, harness_changed=True)
    result = run(task.run, "run")
    failure = _failed(result, "run", timeout)
    evaluated = None
    if failure is None and job.config.metric.command:
        evaluated = run(job.config.metric.command, "evaluator")
        failure = _failed(evaluated, "evaluator", timeout)
        if failure and failure[0] is not Status.INTERRUPTED:
            failure = (Status.NO_METRIC, failure[1])

    # Checked after failed runs too: a run that changed the harness and then crashed is no mere crash.
    touched = integrity.changed(before, integrity.fingerprint(job.task_dir, watched))
    if touched and not (failure and failure[0] is Status.INTERRUPTED):
        reason = f"harness changed: the run changed protected files ({_shown(touched)}); its metric is discarded"
        return Measurement(
            Status.REJECTED, reason, result=result, setup_done=setup_done, untracked=untracked, harness_changed=True
        )
    if failure:
        return Measurement(failure[0], failure[1], result=result, setup_done=setup_done, untracked=untracked)
    evaluator_output = evaluated.output if evaluated else None
    reading = metrics.read(job.config.metric, result.output, job.task_dir, evaluator_output)
    if reading.value is None:
        return Measurement(
            Status.NO_METRIC, reading.reason, None, reading.metrics, result, setup_done, reading.flags, untracked
        )
    return Measurement(None, "", reading.value, reading.metrics, result, setup_done, reading.flags, untracked)


def _shown(paths: list[str]) -> str:
    return ", ".join(paths[:5]) + (" ..." if len(paths) > 5 else "")


def holdout(job: Job, stop: threading.Event | None = None) -> tuple[float | None, str]:
    """The held-out metric of the job's commit: ``[metric] holdout``'s output, read like the metric."""
    name = job.config.judge.seed
    try:
        with seeds.planted(job.task_dir, job.config.task.editable, name, 0) if name else contextlib.nullcontext():
            result = _run(job, job.config.metric.holdout, "holdout", 0, stop)
    except seeds.SeedMissing as missing:
        return None, str(missing)
    failure = _failed(result, "holdout", job.config.task.timeout_s)
    if failure:
        return None, failure[1]
    # The holdout prints the metric itself (summary line or pattern), whatever the run's source is.
    metric = dataclasses.replace(job.config.metric, file="", command="")
    reading = metrics.read(metric, result.output, job.task_dir)
    return reading.value, reading.reason
