"""Commands that cannot read the controller's /proc files, as root: a user namespace of their own.

``overnight run`` makes itself non-dumpable (``secrets.conceal``), which keeps commands of the same
user out of its ``/proc/<pid>/environ`` and memory, but not root's: root has CAP_SYS_PTRACE. An
unsandboxed command run as root would read the controller's API keys from its ancestors'
``/proc/<pid>/environ``. So, as root and where ``unshare`` works, every unsandboxed command (experiment,
evaluator, agent) starts in a user namespace of its own where it is root (``unshare --user
--map-root-user``): its pids are the host's and its files still root's, but it has no capability
outside its namespace, so the non-dumpable controller's /proc files refuse it as they refuse another
user. Elsewhere (no ``unshare``, namespaces refused, not root) nothing is added: a non-root command
is kept out by non-dumpability alone, and ``[task] sandbox = "bwrap"`` does this and more (a pid
namespace too). A root command in a user namespace loses root's power over files of other users:
their mode bits apply to it, as in the sandbox.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from overnight.process.cgroup import Cgroup

PREFIX = ("--user", "--map-root-user", "--")


@functools.cache
def available() -> bool:
    """Whether commands can be started in a user namespace of their own here (checked once)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    try:
        probe = subprocess.run([unshare, *PREFIX, "true"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def needed() -> bool:
    """Whether commands must be kept from the controller's /proc by a namespace: as root, where one works."""
    return hasattr(os, "geteuid") and os.geteuid() == 0 and available()


@functools.cache
def _joins(parent: Path) -> bool:
    try:
        probe = Path(tempfile.mkdtemp(prefix="overnight-userns-", dir=parent))
    except OSError:
        return False
    try:
        join = f"echo 0 > {shlex.quote(str(probe / 'cgroup.procs'))}"
        done = subprocess.run(wrap(join), capture_output=True, timeout=30, check=False)
        return done.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        for _ in range(100):  # the probe leaves its cgroup when it is reaped, a moment after it ends
            try:
                probe.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.01)


def joins_cgroups(group: Cgroup) -> bool:
    """Whether a command in a user namespace of its own can join ``group`` (a sibling of it is tried once):
    then the namespace's shell joins it, saving the exec of a shell outside (overnight.process)."""
    return _joins(group.path.parent)


def wrap(command: str | Sequence[str]) -> list[str]:
    """``command`` (a shell line or an argument list) started in a user namespace of its own."""
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    return [_unshare(), *PREFIX, *argv]


@functools.cache
def _unshare() -> str:
    return shutil.which("unshare") or "unshare"
