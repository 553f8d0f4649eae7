"""A cgroup v2 of its own for each command, where the machine lets overnight make one.

Following a command's processes by their parents and an environment token misses a
process that double-forks, calls setsid and drops its environment between two samples:
it outlives the run and can write after it. A cgroup cannot be left that way (only a
process allowed to write another cgroup's ``cgroup.procs`` can move out), so every
process the command starts is found in ``cgroup.procs`` and ended at once by
``cgroup.kill``. Its memory (``memory.current``, when the memory controller is enabled
there) counts tmpfs and /dev/shm pages the command wrote, which live on after the
processes that wrote them.

Where: a child of the cgroup overnight itself runs in, on the cgroup2 mount (the
unified hierarchy of a pure or a hybrid system). That needs write access there: root,
or a delegated subtree (a systemd user service, a container given its cgroup). Where it
is refused, :meth:`Cgroup.create` returns None and the command is followed by its
process tree and token as before; the ledger records which containment ran
(``info.containment`` of each experiment: "cgroup" or "tree").

A command joins its cgroup before it runs anything: it is started as a shell that
writes its own pid to ``cgroup.procs`` and then execs the command, so not even its
first fork can happen outside.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import signal
import time
from collections.abc import Sequence
from pathlib import Path

KIND = "cgroup"
# sh: join the cgroup named by $1, then become the command; 125 when it cannot join (see ``wrap``).
_JOIN = 'echo 0 > "$1" || exit 125; shift; exec "$@"'
_refused = False  # a cgroup could not be made once: do not try again for every command
_checked: Path | None = None  # the cgroup a command's cgroup was made under and joinable (not read again)


@functools.cache
def _mount() -> str | None:
    """Where the cgroup2 hierarchy is mounted (read once: every command's cgroup is made under it)."""
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split()[4] for line in mounts if " - cgroup2 " in line), None)


def _own() -> Path | None:
    """This process's cgroup v2 folder, or None where there is no cgroup2 mount."""
    mount = _mount()
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    own = next((line[3:] for line in lines if line.startswith("0::")), None)
    if mount is None or own is None or own.startswith("/.."):  # "/..": our cgroup is outside this namespace's view
        return None
    return Path(mount) / own.lstrip("/")


class Cgroup:
    """One command's cgroup: made by :meth:`create`, joined through :meth:`wrap`, ended by :meth:`close`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._removed = False  # close() removed it: a second close() has nothing to do

    @classmethod
    def create(cls, name: str) -> Cgroup | None:
        """A new cgroup under this process's own, or None where that is not allowed (see the module docstring)."""
        global _refused, _checked
        if _refused:
            return None
        parent = _checked or _own()
        if parent is None or (parent != _checked and not (parent / "cgroup.procs").exists()):
            _refused = True
            return None
        path = parent / f"overnight-{name}"
        try:
            path.mkdir()
        except FileExistsError:
            pass
        except OSError as err:
            if parent == _checked and isinstance(err, FileNotFoundError):
                _checked = None  # this process was moved and its old cgroup removed: look again
                return cls.create(name)
            _refused = True  # read-only, not ours: the machine does not delegate cgroups to us
            return None
        if parent != _checked:
            if not os.access(path / "cgroup.procs", os.W_OK):
                with contextlib.suppress(OSError):
                    path.rmdir()
                _refused = True
                return None
            _checked = parent  # a cgroup was made and can be joined here: the next ones need no look
        return cls(path)

    @property
    def removed(self) -> bool:
        """Whether :meth:`close` removed it (then it holds no process, and none can join it)."""
        return self._removed

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """``argv`` started so that it is in this cgroup before it runs."""
        return ["sh", "-c", _JOIN, "overnight-join", str(self.path / "cgroup.procs"), *argv]

    def wrap_shell(self, command: str) -> str:
        """A shell line that joins this cgroup, then runs ``command`` in the same shell (no second exec)."""
        return f"echo 0 > {shlex.quote(str(self.path / 'cgroup.procs'))} || exit 125\n{command}"

    def pids(self) -> list[int]:
        try:
            return [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def memory(self) -> int | None:
        """Bytes charged to the cgroup now (memory.current: processes, page cache, tmpfs), when known."""
        try:
            return int((self.path / "memory.current").read_text())
        except (OSError, ValueError):
            return None

    def signal(self, sig: int) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def kill(self, wait_s: float = 5.0) -> int:
        """SIGKILL every process in the cgroup (cgroup.kill where the kernel has it); how many there were."""
        left = self.pids()
        if not left:
            return 0
        with contextlib.suppress(OSError):  # before Linux 5.14: one by one below, until none is left
            (self.path / "cgroup.kill").write_text("1")
        deadline = time.monotonic() + wait_s
        while self.pids() and time.monotonic() < deadline:
            self.signal(signal.SIGKILL)
            time.sleep(0.01)
        return len(left)

    def close(self) -> int:
        """Kill what is left and remove the cgroup; the number of processes that were left."""
        if self._removed:  # no process can join a removed cgroup
            return 0
        killed = self.kill()
        for _ in range(100):  # a killed process leaves the cgroup when it is reaped, a moment later
            try:
                self.path.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                time.sleep(0.01)
                continue
            self._removed = True
            break
        return killed


def close_left(prefix: str) -> int:
    """Kill and remove the cgroups of commands whose token starts with ``prefix`` (a controller that died
    left them); how many processes were in them."""
    parent = _own()
    if parent is None:
        return 0
    try:
        left = [path for path in parent.glob(f"overnight-{prefix}*") if path.is_dir()]
    except OSError:
        return 0
    return sum(Cgroup(path).close() for path in left)
