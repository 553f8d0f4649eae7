"""Which processes were born since a moment: the candidates for a command's token, without reading them all.

A command's processes that left its cgroup and process group are found by the token in their
environment (overnight.process.tree). Reading every process's ``/proc/<pid>/environ`` costs a
millisecond or more per command on a busy machine (an open, a read of the process's memory and a
close for each of hundreds of processes), and only processes born after the command started can
carry its token: they are its descendants.

The contract: :meth:`Births.since` the moment before a command starts, then :meth:`Births.born`
gives the pids that *may* have been born since (never fewer than those that were), or says None
where it cannot tell, and the caller reads every process as before.

How: Linux hands out pids in one increasing sequence that wraps around at ``pid_max``, each time the
next free one after the last handed out (``/proc/sys/kernel/ns_last_pid``). Every pid handed out
between two readings lies in the interval between them, taken around the wrap, unless the sequence
came all the way round meanwhile. It cannot have without at least (``pid_max`` − the reserved low
pids − the pids in use) / 2 forks (a pid in use is skipped), and the kernel counts forks
(``processes`` in ``/proc/stat``, threads included): with fewer than that (and a margin for forks
in flight as it is read), the interval holds every process born since. Anything unexpected (another pid namespace's ``/proc``, a
file that cannot be read, too many forks) answers None.

What it does not see: a fork that fails after its pid was handed out moves the sequence without
being counted, so a command that makes tens of thousands of forks fail while one of its processes
left its cgroup could come round unseen. A token is a mark in the environment, which a process can
drop anyway (exec with another environment): it finds descendants that left by accident or by
tools (setsid, double forks, another cgroup), not a command that hides on purpose; the cgroup
(overnight.process.cgroup) is what contains those.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

_RESERVED = 300  # pids below this are skipped when the sequence wraps (RESERVED_PIDS)
_IN_FLIGHT = 4096  # forks that may have taken a pid but not yet been counted when the counter is read
_WALK = 256  # an interval up to this long is tried pid by pid rather than listing /proc


@functools.cache
def _pid_max() -> int | None:
    """The kernel's ``pid_max``, where ``/proc`` is this process's own pid namespace's (else None)."""
    try:
        if os.readlink("/proc/self") != str(os.getpid()):  # /proc of another pid namespace
            return None
        with open("/proc/sys/kernel/pid_max", "rb") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return None


def read_all(path: str) -> bytes:
    """A /proc file's bytes, with two system calls fewer than open() (the token scan reads one per process).

    procfs fills a read's buffer until the file's end, so a short read is the end (``/proc/stat`` passes
    64 KiB on machines with many CPUs and interrupts: it takes more than one read).
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        parts = [os.read(fd, 1 << 16)]
        while len(parts[-1]) == 1 << 16:
            parts.append(os.read(fd, 1 << 16))
        return b"".join(parts)
    finally:
        os.close(fd)


def _counters() -> tuple[int, int, int] | None:
    """(forks since boot, tasks now, the last pid handed out), read in that order; None where unreadable."""
    try:
        stat = read_all("/proc/stat")
        at = stat.index(b"\nprocesses ") + 11
        forks = int(stat[at : stat.index(b"\n", at)])
        tasks = int(read_all("/proc/loadavg").split()[3].split(b"/")[1])  # "running/total" scheduling entities
        last = int(read_all("/proc/sys/kernel/ns_last_pid"))
    except (OSError, ValueError, IndexError):
        return None
    return forks, tasks, last


@dataclass(frozen=True)
class Births:
    """The kernel's pid sequence at one moment (see the module docstring)."""

    forks: int
    tasks: int
    last_pid: int
    pid_max: int

    @classmethod
    def since(cls) -> Births | None:
        """Now, to be compared later; None where this machine cannot tell (not Linux, another namespace)."""
        pid_max = _pid_max()
        counters = _counters() if pid_max is not None else None
        if pid_max is None or counters is None:
            return None
        return cls(*counters, pid_max=pid_max)

    def born(self) -> list[int] | None:
        """The pids that may have been born since this moment (a superset of those that were, threads' ids
        possibly among them); None where it cannot be told, and every process must be considered.

        A short interval is given as it is (no listing of ``/proc``: most of its pids are gone already);
        a long one is cut to the processes ``/proc`` lists.
        """
        now = _counters()
        if now is None:
            return None
        forks, _, last = now
        made = forks - self.forks
        # Coming round means passing every pid but the reserved ones: each one either handed out (a fork)
        # or skipped because it is in use. In use: a task's pid, or a dead leader's kept by its process
        # group or session (at most three per task), or a pid handed out since.
        if made < 0 or 2 * made + 3 * self.tasks + _RESERVED + _IN_FLIGHT >= self.pid_max:
            return None  # the sequence may have come all the way round
        first = self.last_pid
        spans = [range(first + 1, last + 1)] if last >= first else [range(first + 1, self.pid_max), range(1, last + 1)]
        if sum(len(span) for span in spans) <= _WALK:
            return [pid for span in spans for pid in span]
        try:
            listed = [int(name) for name in os.listdir("/proc") if name.isdigit()]
        except OSError:
            return None
        return [pid for pid in listed if any(pid in span for span in spans)]
