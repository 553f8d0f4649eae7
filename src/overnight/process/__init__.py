"""Run one command under limits, and leave nothing behind.

The command runs in a new session (its own process group); its output goes through
a pipe to the log file (overnight.process.logsink: the log keeps the head and the tail within
``max_log_mb``). Past ``timeout_s``, past ``memory_mb``, or when ``stop`` is set, the
whole tree gets SIGTERM, then SIGKILL after ``grace_s``; when the command ends, any
descendant still alive is killed too (overnight.process.tree finds them). Credentials in
its output are redacted before they reach a file (overnight.secrets). The share of the
machine other programs used meanwhile comes with the result (overnight.process.load).

Two memory figures are sampled. ``memory_mb`` limits the memory the tree holds now:
the sum of its processes' proportional set sizes (Linux's Pss: a page shared by n
processes counts 1/n in each, so forked workers are not counted again for their
parent's pages; the resident set elsewhere), sampled every 0.25 s. The peak reported
is the largest sum of the members' peak resident sets (Linux's VmHWM) seen while it
runs, or the kernel's peak for the reaped child when that is larger and can be
trusted. It cannot always: at exec() Linux folds the *parent's* peak into the child's
counter (with vfork the parent's memory is the child's until exec), so that figure
counts only when it exceeds the controller's own peak.
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import shlex
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from overnight import secrets
from overnight.process import load, userns
from overnight.process.births import Births
from overnight.process.cgroup import KIND as CGROUP
from overnight.process.cgroup import Cgroup
from overnight.process.logsink import Sink, open_log
from overnight.process.sandbox import Sandbox
from overnight.process.tree import SAMPLE_EVERY_S, TOKEN_VAR, Tree
from overnight.records import RunResult

POLL_S = 0.1  # how often a running command checks its limits and the stop event
OUTPUT_TAIL_BYTES = 1 << 20  # the part of a command's output kept for metric parsing
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
    As root, an unsandboxed command starts in a user namespace of its own, where it cannot read the
    controller's /proc files (see overnight.process.userns).
    """
    token = token or uuid.uuid4().hex
    full_env = dict(os.environ if env is None else env)
    full_env[TOKEN_VAR] = token
    # Programs that take their folder from $PWD (opencode, shells) would otherwise see the
    # folder overnight was started in, which may be the user's own checkout.
    full_env["PWD"] = str(cwd)
    shown = command if isinstance(command, str) else shlex.join(command)
    group = Cgroup.create(token) if sys.platform.startswith("linux") else None
    argv = _argv(command, cwd, sandbox, group)
    cap = int(max_log_mb * (1 << 20))
    redact = secrets.current()  # the controller's credentials: never written from the command's output
    with contextlib.ExitStack() as files:
        if group is not None:
            files.callback(group.close)  # whatever happens below, nothing of the command outlives this call
        log = files.enter_context(open_log(log_path))
        if label:
            try:
                log.write(f"### overnight: {label}: {shown[:2000]}\n".encode())
                log.flush()
            except OSError as exc:  # a full disk, a file size limit
                raise OSError(exc.errno, f"could not write the log {log_path}: {exc.strerror}") from None
        out = files.enter_context(open_log(stdout_path, append=False)) if stdout_path else None
        stdin = files.enter_context(open(stdin_path, "rb")) if stdin_path else subprocess.DEVNULL
        started = time.monotonic()
        machine_before, ours_before = load.machine_busy(), os.times()
        births = Births.since()  # before the command's first process: its token holders are born after
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
        sinks = [Sink(proc.stdout, out or log, cap, redact, OUTPUT_TAIL_BYTES)]
        if out is not None:
            assert proc.stderr is not None
            sinks.append(Sink(proc.stderr, log, cap, redact, OUTPUT_TAIL_BYTES))
        tree = Tree(proc.pid, token, group, births)
        exit_code, timed_out, interrupted, over_memory, maxrss = _wait(
            proc, tree, started, timeout_s, stop, grace_s, memory_mb
        )
        duration = time.monotonic() - started
        contention = load.contention(
            machine_before, load.machine_busy(), load.own_cpu(ours_before, os.times()), duration
        )
        tree.kill_leftovers()
        for sink in sinks:
            sink.finish()
    written = next((s.error for s in sinks if s.error is not None), None)
    if written is not None:  # a full disk, a file size limit: the run's record cannot be trusted
        raise OSError(written.errno, f"could not write the log {log_path}: {written.strerror}")
    inherited = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _MAXRSS_UNIT  # see the module docstring
    peak = max(tree.peak_rss, maxrss if maxrss > inherited else 0) / (1 << 20)
    return RunResult(
        exit_code=exit_code,
        duration_s=duration,
        peak_memory_mb=round(peak, 1),
        timed_out=timed_out,
        interrupted=interrupted,
        # from the pipes, never from the log files, which the command's processes could write
        output=sinks[0].received,
        stderr=sinks[1].received if stdout_path else "",
        over_memory=over_memory,
        contention=contention,
        containment=CGROUP if group is not None else "tree",
    )


def _argv(command: str | Sequence[str], cwd: Path, sandbox: Sandbox | None, group: Cgroup | None) -> str | list[str]:
    """What is started: ``command`` in its sandbox, or as root in a user namespace of its own (the
    controller's /proc refuses it: overnight.process.userns), in its cgroup from its first instruction
    (overnight.process.cgroup).

    Each exec costs a millisecond or more, so a shell line joins its cgroup in the shell that runs it,
    and in a user namespace that is the shell ``unshare`` execs (it does not fork: nothing runs outside
    the cgroup), where the kernel lets a namespace's root join it (checked once: overnight.process.userns).
    """
    argv: str | list[str] = (
        sandbox.wrap(command, cwd) if sandbox else command if isinstance(command, str) else list(command)
    )
    if sandbox is None and userns.needed():
        if group is not None and userns.joins_cgroups(group):
            return userns.wrap(group.wrap_shell(argv) if isinstance(argv, str) else group.wrap(argv))
        argv = userns.wrap(argv)
    if group is not None:
        argv = group.wrap_shell(argv) if isinstance(argv, str) else group.wrap(argv)
    return argv


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
                next_sample = now + SAMPLE_EVERY_S
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


class ExitWaiter:
    """Sleeps until a process exits or a timeout passes.

    On Linux a pidfd wakes us the moment the process ends, so an instant command
    costs no polling delay; elsewhere we fall back to short sleeps that grow.
    """

    def __init__(self, pid: int) -> None:
        self._fd: int | None = None
        self._delay = 0.001
        if hasattr(os, "pidfd_open"):
            try:
                self._fd = os.pidfd_open(pid)
            except OSError:  # old kernel, or a sandbox that forbids it
                self._fd = None

    def wait(self, timeout: float) -> None:
        if self._fd is not None:
            select.select([self._fd], [], [], timeout)
            return
        time.sleep(min(self._delay, timeout))
        self._delay = min(self._delay * 2, POLL_S)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
