"""Run one command under limits, and leave nothing behind.

The command runs in a new session (its own process group); its output goes through
a pipe to the log file (overnight.logsink: the log keeps the head and the tail within
``max_log_mb``). Past ``timeout_s``, past ``memory_mb``, or when ``stop`` is set, the
whole tree gets SIGTERM, then SIGKILL after ``grace_s``; when the command ends, any
descendant still alive is killed too (overnight.processes finds them, even those that
called setsid()). Credentials in its output are redacted before they reach a file
(overnight.secrets).

``memory_mb`` limits the memory the tree holds now: the sum of its processes'
proportional set sizes (shared pages split between the processes sharing them, so
forked workers are not counted again for their parent's pages), sampled every 0.25 s.

The peak memory reported is the largest sum of the tree's peak resident sets seen
while it runs, or the kernel's peak for the reaped child when that is larger and can
be trusted. It cannot always: at exec() Linux folds the *parent's* peak into the
child's counter (with vfork the parent's memory is the child's until exec), so that
figure counts only when it exceeds the controller's own peak.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shlex
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from overnight import secrets
from overnight.logsink import Sink, open_log
from overnight.processes import POLL_S, TOKEN_VAR, ExitWaiter, Tree, kill_token_holders
from overnight.records import RunResult
from overnight.sandbox import Sandbox

__all__ = ["TOKEN_VAR", "kill_token_holders", "run_command"]

OUTPUT_TAIL_BYTES = 1 << 20  # the part of a command's output kept for metric parsing
_SAMPLE_EVERY_S = 0.25
_MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux


def run_command(
    command: str | Sequence[str],
    *,
    cwd: Path,
    log_path: Path,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    stop: threading.Event | None = None,
    grace_s: float = 5.0,
    label: str = "",
    token: str = "",
    stdin_path: Path | None = None,
    stdout_path: Path | None = None,
    memory_mb: float = 0.0,
    max_log_mb: float = 50.0,
    sandbox: Sandbox | None = None,
) -> RunResult:
    """Run ``command`` (a shell line, or an argument list run without a shell); see the module docstring.

    ``token`` marks every process of the command (a fresh one by default); give
    tokens a common prefix to find them again with ``kill_token_holders``.
    ``stdin_path`` feeds the command a file. ``stdout_path`` keeps stdout apart (for
    machine-readable output): the result's ``output`` is then stdout and ``stderr`` the log's part.
    """
    token = token or uuid.uuid4().hex
    full_env = dict(os.environ if env is None else env)
    full_env[TOKEN_VAR] = token
    shown = command if isinstance(command, str) else shlex.join(command)
    argv: str | list[str] = (
        sandbox.wrap(command, cwd) if sandbox else command if isinstance(command, str) else list(command)
    )
    cap = int(max_log_mb * (1 << 20))
    redact = secrets.current()  # the controller's credentials: never written from the command's output
    with contextlib.ExitStack() as files:
        log = files.enter_context(open_log(log_path))
        if label:
            try:
                log.write(f"### overnight: {label}: {shown[:2000]}\n".encode())
                log.flush()
            except OSError as exc:  # a full disk, a file size limit
                raise OSError(exc.errno, f"could not write the log {log_path}: {exc.strerror}") from None
        start_offset = log.tell()
        out = files.enter_context(open(stdout_path, "wb", buffering=0)) if stdout_path else None
        stdin = files.enter_context(open(stdin_path, "rb")) if stdin_path else subprocess.DEVNULL
        started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            shell=isinstance(argv, str),
            cwd=cwd,
            env=full_env,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if out else subprocess.STDOUT,
            start_new_session=True,
        )
        assert proc.stdout is not None
        sinks = [Sink(proc.stdout, out or log, cap, redact)]
        if out is not None:
            assert proc.stderr is not None
            sinks.append(Sink(proc.stderr, log, cap, redact))
        tree = Tree(proc.pid, token)
        exit_code, timed_out, interrupted, over_memory, maxrss = _wait(
            proc, tree, started, timeout_s, stop, grace_s, memory_mb
        )
        duration = time.monotonic() - started
        tree.kill_leftovers()
        for sink in sinks:
            sink.finish()
    written = next((s.error for s in sinks if s.error is not None), None)
    if written is not None:  # a full disk, a file size limit: the run's record cannot be trusted
        raise OSError(written.errno, f"could not write the log {log_path}: {written.strerror}")
    logged = _read_tail(log_path, start_offset)
    inherited = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _MAXRSS_UNIT  # see the module docstring
    peak = max(tree.peak_rss, maxrss if maxrss > inherited else 0) / (1 << 20)
    return RunResult(
        exit_code=exit_code,
        duration_s=duration,
        peak_memory_mb=round(peak, 1),
        timed_out=timed_out,
        interrupted=interrupted,
        output=_read_tail(stdout_path, 0) if stdout_path else logged,
        stderr=logged if stdout_path else "",
        over_memory=over_memory,
    )


def _wait(
    proc: subprocess.Popen[bytes],
    tree: Tree,
    started: float,
    timeout_s: float,
    stop: threading.Event | None,
    grace_s: float,
    memory_mb: float,
) -> tuple[int | None, bool, bool, bool, int]:
    """Until the command ends or must be ended: (exit code, timed out, interrupted, over memory, maxrss bytes)."""
    timed_out = interrupted = over_memory = False
    next_sample = started + 0.05
    exited = ExitWaiter(proc.pid)
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                code = None if (timed_out or interrupted or over_memory) else proc.returncode
                return code, timed_out, interrupted, over_memory, usage.ru_maxrss * _MAXRSS_UNIT
            now = time.monotonic()
            if now >= next_sample:
                tree.sample(held=memory_mb > 0)
                next_sample = now + _SAMPLE_EVERY_S
            if not (timed_out or interrupted or over_memory):
                if now - started > timeout_s:
                    timed_out = True
                elif stop is not None and stop.is_set():
                    interrupted = True
                elif memory_mb and tree.held > memory_mb * (1 << 20):
                    over_memory = True
                if timed_out or interrupted or over_memory:
                    tree.terminate(grace_s)
            exited.wait(min(POLL_S, max(0.0, next_sample - now), max(0.0, started + timeout_s - now) + 0.001))
    finally:
        exited.close()


def _read_tail(path: Path, start: int) -> str:
    with open(path, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        fh.seek(max(start, end - OUTPUT_TAIL_BYTES))
        data = fh.read()
    return data.decode("utf-8", errors="replace")
