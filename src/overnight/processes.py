"""A command's process tree: find every member, sample its memory, end it.

Members are found by process group, by walking the tree while it runs, and by a
token placed in their environment, which catches processes that called setsid()
or double-forked out of the group. Two memory figures are sampled: the memory the
tree holds now (what ``memory_mb`` limits), the sum of the members' proportional set
sizes (Linux's Pss: a page shared by n processes counts 1/n in each, so forked
workers sharing their parent's pages are not counted n times; the resident set
elsewhere); and the peak, for the record, the largest sum over the members of each
one's peak resident set (Linux's VmHWM; the current RSS elsewhere).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import time

import psutil

log = logging.getLogger(__name__)

TOKEN_VAR = "OVERNIGHT_PROCESS_TOKEN"
POLL_S = 0.1  # how often a running command checks its limits and the stop event


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

    def __init__(self, pid: int, token: str) -> None:
        self.pid = pid
        self.token = token
        self.peak_rss = 0  # bytes: the largest sum of the members' peak resident sets seen
        self.held = 0  # bytes: the members' total proportional set size at the last sample(held=True)
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

    def sample(self, held: bool = False) -> None:
        """Update ``peak_rss``, and ``held`` if asked (reading every member's smaps costs a page-table walk)."""
        members = self._members()
        self.peak_rss = max(self.peak_rss, sum(_peak_rss(p) for p in members))
        if held:
            self.held = sum(_proportional_set(p) for p in members)

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
