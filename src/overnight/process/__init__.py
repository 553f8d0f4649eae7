"""Run one command under limits, and leave nothing behind.

The command runs in a new session (its own process group); its output goes through
a pipe to the log file (overnight.process.logsink: the log keeps the head and the tail within
``max_log_mb``). Past ``timeout_s``, past ``memory_mb``, or when ``stop`` is set, the
whole tree gets SIGTERM, then SIGKILL after ``grace_s``; when the command ends, any
descendant still alive is killed too. Credentials in its output are redacted before
they reach a file (overnight.secrets).

The tree's members are found by process group, by walking the tree while it runs,
and by a token placed in their environment, which catches processes that called
setsid() or double-forked out of the group.

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

from overnight import secrets
from overnight.process import cgroup, userns
from overnight.process.cgroup import KIND as CGROUP
from overnight.process.cgroup import Cgroup
from overnight.process.logsink import Sink, open_log
from overnight.process.sandbox import Sandbox
from overnight.records import RunResult

log = logging.getLogger(__name__)

TOKEN_VAR = "OVERNIGHT_PROCESS_TOKEN"
POLL_S = 0.1  # how often a running command checks its limits and the stop event
OUTPUT_TAIL_BYTES = 1 << 20  # the part of a command's output kept for metric parsing
_SAMPLE_EVERY_S = 0.25
_MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc/stat's unit
MIN_CONTENTION_S = 0.5  # shorter runs record no contention (see _contention)


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
    argv: str | list[str] = (
        sandbox.wrap(command, cwd) if sandbox else command if isinstance(command, str) else list(command)
    )
    if sandbox is None and userns.needed():  # as root: the controller's /proc refuses it (overnight.process.userns)
        argv = userns.wrap(argv)
    group = Cgroup.create(token) if sys.platform.startswith("linux") else None
    if group is not None:  # every process of the command in a cgroup it cannot leave (see overnight.process.cgroup)
        argv = group.wrap_shell(argv) if isinstance(argv, str) else group.wrap(argv)
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
        machine_before, ours_before = _machine_busy(), os.times()
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
        tree = Tree(proc.pid, token, group)
        exit_code, timed_out, interrupted, over_memory, maxrss = _wait(
            proc, tree, started, timeout_s, stop, grace_s, memory_mb
        )
        duration = time.monotonic() - started
        contention = _contention(machine_before, _machine_busy(), _ours(ours_before, os.times()), duration)
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


def _machine_busy() -> float | None:
    """CPU seconds the whole machine has been busy since boot, steal included (None where /proc/stat is not)."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 8:
        return None
    # user nice system idle iowait irq softirq [steal ...]: busy is all but idle and iowait
    ticks = [int(v) for v in fields[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / _CLOCK_TICKS


def others_share(window_s: float = 1.0) -> float | None:
    """The share of the machine other programs use now, over ``window_s`` (None where /proc/stat is not).

    Called between runs: this process's own CPU time in the window is left out.
    """
    before, mine = _machine_busy(), os.times()
    time.sleep(window_s)
    after, now = _machine_busy(), os.times()
    return _contention(before, after, _ours(mine, now), window_s)


def _ours(before: os.times_result, after: os.times_result) -> float:
    """CPU seconds overnight used between two readings: this process, and the children it reaped meanwhile
    (the command itself, and the git processes writing commits beside it)."""
    return float(
        (after.user - before.user)
        + (after.system - before.system)
        + (after.children_user - before.children_user)
        + (after.children_system - before.children_system)
    )


def _contention(before: float | None, after: float | None, own_cpu: float, wall: float) -> float | None:
    """The share of the machine other programs used while the command ran (0 to 1; None when unknown).

    What the whole machine was busy minus what overnight used (the command included), over
    the machine's capacity in that time: another job on the other core of two reads about
    0.5. A run taken while it jumps is one a burst of load may have slowed (see
    overnight.judge.measure). Runs under MIN_CONTENTION_S say nothing: a burst lasts tens of seconds,
    and over a short window the machine's own bookkeeping is all there is to see.
    """
    if before is None or after is None or wall < MIN_CONTENTION_S:
        return None
    capacity = wall * (os.cpu_count() or 1)
    return round(min(1.0, max(0.0, (after - before - own_cpu) / capacity)), 3)


# -- the command's process tree ------------------------------------------------------------


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


class Tree:
    """Tracks the process tree of one command: its members, its memory, its end."""

    def __init__(self, pid: int, token: str, group: Cgroup | None = None) -> None:
        self.pid = pid
        self.token = token
        self.group = group  # the command's cgroup, when it has one: every member, however detached
        self.peak_rss = 0  # bytes: the largest sum of the members' peak resident sets seen
        self.held = 0  # bytes: the members' total proportional set size at the last sample(held=True)
        self.seen: dict[int, psutil.Process] = {}

    def _members(self, fresh: bool = True) -> list[psutil.Process]:
        """The command's processes now: its cgroup's (one file to read), else the root's descendants.

        Without a cgroup the descendants come from a look at every process of the machine; with
        ``fresh=False`` (the samples) that look is shared by the commands running at once, so a
        controller watching N commands reads /proc once per sample period, not N times.
        """
        if self.group is not None:
            pids = [self.pid, *(pid for pid in self.group.pids() if pid != self.pid)]
        else:
            pids = _descendants(self.pid, _SAMPLE_EVERY_S / 2 if not fresh else 0.0)
        members = []
        for pid in pids:
            p = self.seen.get(pid)
            if p is None:
                p = _process(pid)
                if p is None:
                    continue
                self.seen[pid] = p
            members.append(p)
        return members

    def sample(self, held: bool = False) -> None:
        """Update ``peak_rss``, and ``held`` if asked (reading every member's smaps costs a page-table walk)."""
        members = self._members(fresh=False)
        charged = self.group.memory() if self.group is not None else None  # tmpfs and /dev/shm included
        self.peak_rss = max(self.peak_rss, sum(_peak_rss(p) for p in members), charged or 0)
        if held:
            self.held = max(sum(_proportional_set(p) for p in members), charged or 0)

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def _alive(self) -> list[psutil.Process]:
        """Every live process of this command's tree we can find."""
        found: dict[int, psutil.Process] = {}
        grouped = [] if self.group is None else [_process(pid) for pid in self.group.pids()]
        for p in [*self._members(), *self.seen.values(), *_token_holders(self.token), *filter(None, grouped)]:
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
        if self.group is not None:
            self.group.kill()
        for p in self._alive():
            _send(p, signal.SIGKILL)

    def kill_leftovers(self) -> None:
        """After the command ended: kill any descendant it left running (and remove its cgroup)."""
        self._signal_group(signal.SIGKILL)
        if self.group is not None and self.group.close():
            log.info("killed what the command left running in its cgroup")
        left = [p for p in self._alive() if p.pid != self.pid]
        for p in left:
            _send(p, signal.SIGKILL)
        if left:
            log.info("killed %d process(es) left behind by the command", len(left))
            psutil.wait_procs(left, timeout=2)


_look_lock = threading.Lock()
_look: tuple[float, dict[int, list[int]]] = (float("-inf"), {})  # when, and every process's children then


def _descendants(root: int, max_age: float) -> list[int]:
    """``root`` and its descendants, from a look at every process at most ``max_age`` seconds old."""
    global _look
    with _look_lock:
        at, children = _look
        if time.monotonic() - at > max_age:
            children = {}
            for proc in psutil.process_iter(["ppid"]):
                children.setdefault(proc.info["ppid"], []).append(proc.pid)
            _look = (time.monotonic(), children)
    found, todo = [root], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def _peak_rss(p: psutil.Process) -> int:
    """A process's peak resident set in bytes since its exec (VmHWM), else its current one."""
    found = _proc_bytes(p.pid, "status", b"VmHWM:")
    return _resident_set(p) if found is None else found


def _proportional_set(p: psutil.Process) -> int:
    """A process's current proportional set size in bytes (Pss), else its resident set."""
    found = _proc_bytes(p.pid, "smaps_rollup", b"Pss:")
    return _resident_set(p) if found is None else found


def _proc_bytes(pid: int, file: str, key: bytes) -> int | None:
    """The ``<key> <n> kB`` line of ``/proc/<pid>/<file>``, in bytes; None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/{file}", "rb") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _resident_set(p: psutil.Process) -> int:
    try:
        return int(p.memory_info().rss)
    except psutil.Error:
        return 0


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


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
                if needle in _read_all(f"/proc/{name}/environ"):
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


def _read_all(path: str) -> bytes:
    """A small file's bytes, with two system calls fewer than open() (this runs for every process, twice a run)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        parts = [os.read(fd, 1 << 16)]
        while len(parts[-1]) == 1 << 16:
            parts.append(os.read(fd, 1 << 16))
        return b"".join(parts)
    finally:
        os.close(fd)


def kill_token_holders(prefix: str) -> int:
    """Kill every process whose token starts with ``prefix`` (on resume after the controller died)."""
    holders = _token_holders(prefix, exact=False)
    for p in holders:
        _send(p, signal.SIGKILL)
    return len(holders) + cgroup.close_left(prefix)
