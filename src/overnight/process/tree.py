"""A command's process tree: finding its members, sampling their memory, ending them.

The contract: a :class:`Tree` follows one command that overnight.process.run_command
started. Its members are found by the command's cgroup when it has one
(overnight.process.cgroup), else by process group and by walking the tree while it runs,
and always by a token placed in their environment (``TOKEN_VAR``), which catches processes
that called setsid() or double-forked out of the group (only the processes born since the
command started are read for it, where overnight.process.births can tell which). :func:`kill_token_holders` ends
what the commands of a controller that died left behind, by their tokens' common prefix.
The memory figures are bytes; overnight.process says what they mean.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time

import psutil

from overnight.process.births import Births, read_all
from overnight.process.cgroup import Cgroup, close_left

log = logging.getLogger(__name__)

TOKEN_VAR = "OVERNIGHT_PROCESS_TOKEN"
SAMPLE_EVERY_S = 0.25  # how often run_command samples a running tree (Tree shares a look at /proc for half that)


class Tree:
    """Tracks the process tree of one command: its members, its memory, its end."""

    def __init__(self, pid: int, token: str, group: Cgroup | None = None, births: Births | None = None) -> None:
        self.pid = pid
        self.token = token
        self.group = group  # the command's cgroup, when it has one: every member, however detached
        self.births = births  # the pid sequence before the command started: its token holders were born since
        self.peak_rss = 0  # bytes: the largest sum of the members' peak resident sets seen
        self.held = 0  # bytes: the members' total proportional set size at the last sample(held=True)
        self.seen: dict[int, psutil.Process] = {}

    def _members(self, fresh: bool = True) -> list[psutil.Process]:
        """The command's processes now: its cgroup's (one file to read), else the root's descendants.

        Without a cgroup the descendants come from a look at every process of the machine; with
        ``fresh=False`` (the samples) that look is shared by the commands running at once, so a
        controller watching N commands reads /proc once per sample period, not N times.
        """
        if self.group is not None and self.group.removed:  # emptied and removed once the command ended
            pids = []
        elif self.group is not None:
            pids = [self.pid, *(pid for pid in self.group.pids() if pid != self.pid)]
        else:
            pids = _descendants(self.pid, SAMPLE_EVERY_S / 2 if not fresh else 0.0)
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
        grouped = [] if self.group is None or self.group.removed else [_process(pid) for pid in self.group.pids()]
        holders = _token_holders(self.token, births=self.births)
        for p in [*self._members(), *self.seen.values(), *holders, *filter(None, grouped)]:
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


def _token_holders(token: str, exact: bool = True, births: Births | None = None) -> list[psutil.Process]:
    """Processes whose environment carries ``token`` (or a token starting with it).

    These are a command's descendants, even those that left its process group. With ``births`` (taken
    before the command started) only the processes born since are read: the others cannot be its.
    """
    needle = f"{TOKEN_VAR}={token}".encode() + (b"\0" if exact else b"")
    me = os.getpid()
    holders: dict[int, psutil.Process] = {}
    if sys.platform.startswith("linux"):
        young = births.born() if births is not None else None
        pids = young if young is not None else [int(name) for name in os.listdir("/proc") if name.isdigit()]
        # Reading /proc directly is several times faster than psutil.Process.environ() for a full scan.
        for pid in pids:
            if pid == me:
                continue
            try:
                if needle in read_all(f"/proc/{pid}/environ"):
                    # a pid tried from an interval can be a thread's: its process is the holder
                    leader = _tgid(pid) if young is not None else pid
                    holders[leader] = psutil.Process(leader)
            except (OSError, psutil.Error):
                continue
        return list(holders.values())
    for p in psutil.process_iter():
        try:
            value = p.environ().get(TOKEN_VAR, "")
            if p.pid != me and (value == token or (not exact and value.startswith(token))):
                holders[p.pid] = p
        except psutil.Error:
            continue
    return list(holders.values())


def _tgid(pid: int) -> int:
    """The process a thread id belongs to (its own id for a process's main thread)."""
    try:
        status = read_all(f"/proc/{pid}/status")
        at = status.index(b"\nTgid:") + 6
        return int(status[at : status.index(b"\n", at)])
    except (OSError, ValueError):
        return pid


def kill_token_holders(prefix: str) -> int:
    """Kill every process whose token starts with ``prefix`` (on resume after the controller died)."""
    holders = _token_holders(prefix, exact=False)
    for p in holders:
        _send(p, signal.SIGKILL)
    return len(holders) + close_left(prefix)
