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
import shutil
import subprocess
from collections.abc import Sequence

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


def wrap(command: str | Sequence[str]) -> list[str]:
    """``command`` (a shell line or an argument list) started in a user namespace of its own."""
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    return [shutil.which("unshare") or "unshare", *PREFIX, *argv]
