"""Run one command under a time limit and leave nothing behind.

The command runs in a new session (its own process group), with stdout and stderr
appended to a log file. Past ``timeout_s`` (or when ``stop`` is set) the whole tree
gets SIGTERM, then SIGKILL after ``grace_s``. When the command ends, any descendant
still alive is killed too: we find them by process group, by walking the tree while
it runs, and by a token placed in their environment, which catches processes that
called setsid() or double-forked out of the group.

Peak memory is the largest sum, over the tree's processes, of each one's peak
resident set (Linux's VmHWM; the current RSS elsewhere), sampled while it runs; or
the kernel's peak for the reaped child when that is larger and can be trusted. It
cannot always: at exec() Linux folds the *parent's* peak into the child's counter
(with vfork the parent's memory is the child's until exec), so that figure counts
only when it exceeds the controller's own peak.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import select
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from overnight.records import RunResult

log = logging.getLogger(__name__)

TOKEN_VAR = "OVERNIGHT_PROCESS_TOKEN"
OUTPUT_TAIL_BYTES = 1 << 20  # the part of a command's output kept for metric parsing
_SAMPLE_EVERY_S = 0.25
_POLL_S = 0.1  # how often a running command checks its timeout and the stop event
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
) -> RunResult:
    """Run ``command`` (a shell line, or an argument list run without a shell); see the module docstring.

    ``token`` marks every process of the command (a fresh one by default); give
    tokens a common prefix to find them again with :func:`kill_token_holders`.
    ``stdin_path`` feeds the command a file. ``stdout_path`` keeps stdout apart (for
    machine-readable output): the result's ``output`` is then stdout and ``stderr`` the log's part.
    """
    token = token or uuid.uuid4().hex
    full_env = dict(os.environ if env is None else env)
    full_env[TOKEN_VAR] = token
    shown = command if isinstance(command, str) else shlex.join(command)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as files:
        fh = files.enter_context(open(log_path, "ab"))
        if label:
            fh.write(f"### overnight: {label}: {shown[:2000]}\n".encode())
            fh.flush()
        start_offset = fh.tell()
        out = files.enter_context(open(stdout_path, "wb")) if stdout_path else fh
        stdin = files.enter_context(open(stdin_path, "rb")) if stdin_path else subprocess.DEVNULL
        started = time.monotonic()
        proc = subprocess.Popen(
            command,
            shell=isinstance(command, str),
            cwd=cwd,
            env=full_env,
            stdin=stdin,
            stdout=out,
            stderr=fh,
            start_new_session=True,
        )
    watch = _Watch(proc.pid, token)
    exit_code, timed_out, interrupted, maxrss = _wait(proc, watch, started, timeout_s, stop, grace_s)
    duration = time.monotonic() - started
    watch.kill_leftovers()
    logged = _read_tail(log_path, start_offset)
    inherited = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _MAXRSS_UNIT  # see the module docstring
    peak = max(watch.peak_rss, maxrss if maxrss > inherited else 0) / (1 << 20)
    return RunResult(
        exit_code=exit_code,
        duration_s=duration,
        peak_memory_mb=round(peak, 1),
        timed_out=timed_out,
        interrupted=interrupted,
        output=_read_tail(stdout_path, 0) if stdout_path else logged,
        stderr=logged if stdout_path else "",
    )


def _wait(
    proc: subprocess.Popen[bytes],
    watch: _Watch,
    started: float,
    timeout_s: float,
    stop: threading.Event | None,
    grace_s: float,
) -> tuple[int | None, bool, bool, int]:
    """Poll until the command ends or must be ended. Returns (exit code, timed out, interrupted, maxrss bytes)."""
    timed_out, interrupted = False, False
    next_sample = started + 0.05
    exited = _ExitWaiter(proc.pid)
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                code = None if (timed_out or interrupted) else proc.returncode
                return code, timed_out, interrupted, usage.ru_maxrss * _MAXRSS_UNIT
            now = time.monotonic()
            if now >= next_sample:
                watch.sample()
                next_sample = now + _SAMPLE_EVERY_S
            if not (timed_out or interrupted):
                if now - started > timeout_s:
                    timed_out = True
                elif stop is not None and stop.is_set():
                    interrupted = True
                if timed_out or interrupted:
                    watch.terminate(grace_s)
            exited.wait(min(_POLL_S, max(0.0, next_sample - now), max(0.0, started + timeout_s - now) + 0.001))
    finally:
        exited.close()


class _ExitWaiter:
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
        self._delay = min(self._delay * 2, _POLL_S)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _Watch:
    """Tracks the process tree of one command: its members, its memory, its end."""

    def __init__(self, pid: int, token: str) -> None:
        self.pid = pid
        self.token = token
        self.peak_rss = 0
        self.seen: dict[int, psutil.Process] = {}

    def _members(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            members = [root, *root.children(recursive=True)]
        except psutil.Error:
            members = []
        for p in members:
            self.seen.setdefault(p.pid, p)
        return members

    def sample(self) -> None:
        total = 0
        for p in self._members():
            total += _peak_rss(p)
        self.peak_rss = max(self.peak_rss, total)

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def _alive(self) -> list[psutil.Process]:
        """Every live process of this command's tree we can find."""
        found: dict[int, psutil.Process] = {}
        for p in [*self._members(), *self.seen.values(), *_token_holders(self.token)]:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    found[p.pid] = p
            except psutil.Error:
                pass
        return list(found.values())

    def terminate(self, grace_s: float) -> None:
        """SIGTERM the tree, SIGKILL whatever is left after ``grace_s``."""
        self._signal_group(signal.SIGTERM)
        for p in self._alive():
            _send(p, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if not [p for p in self._alive() if p.pid != self.pid] and not _running(self.pid):
                return
            time.sleep(0.05)
        self._signal_group(signal.SIGKILL)
        for p in self._alive():
            _send(p, signal.SIGKILL)

    def kill_leftovers(self) -> None:
        """After the command ended: kill any descendant it left running."""
        self._signal_group(signal.SIGKILL)
        left = [p for p in self._alive() if p.pid != self.pid]
        for p in left:
            _send(p, signal.SIGKILL)
        if left:
            log.info("killed %d process(es) left behind by the command", len(left))
            psutil.wait_procs(left, timeout=2)


def _peak_rss(p: psutil.Process) -> int:
    """A process's peak resident set in bytes since its exec (VmHWM), else its current one."""
    try:
        with open(f"/proc/{p.pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(p.memory_info().rss)
    except psutil.Error:
        return 0


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _send(p: psutil.Process, sig: int) -> None:
    with contextlib.suppress(psutil.Error):
        p.send_signal(sig)


def _token_holders(token: str, exact: bool = True) -> list[psutil.Process]:
    """Processes whose environment carries ``token`` (or a token starting with it).

    These are a command's descendants, even those that left its process group.
    """
    needle = f"{TOKEN_VAR}={token}".encode() + (b"\0" if exact else b"")
    me = os.getpid()
    holders = []
    if sys.platform.startswith("linux"):
        # Reading /proc directly is several times faster than psutil.Process.environ() for a full scan.
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == me:
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as fh:
                    if needle in fh.read():
                        holders.append(psutil.Process(int(name)))
            except (OSError, psutil.Error):
                continue
        return holders
    for p in psutil.process_iter():
        try:
            value = p.environ().get(TOKEN_VAR, "")
            if p.pid != me and (value == token or (not exact and value.startswith(token))):
                holders.append(p)
        except psutil.Error:
            continue
    return holders


def kill_token_holders(prefix: str) -> int:
    """Kill every process whose token starts with ``prefix`` (on resume after the controller died)."""
    holders = _token_holders(prefix, exact=False)
    for p in holders:
        _send(p, signal.SIGKILL)
    return len(holders)


def _read_tail(path: Path, start: int) -> str:
    with open(path, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        fh.seek(max(start, end - OUTPUT_TAIL_BYTES))
        data = fh.read()
    return data.decode("utf-8", errors="replace")
