"""Commands that cannot see the controller: their own user and pid namespaces, as root.

``overnight run`` makes itself non-dumpable (``secrets.conceal``), which keeps commands of the same
user out of its ``/proc/<pid>/environ`` and memory, but not root's: root has CAP_SYS_PTRACE. An
unsandboxed agent command run as root would read the controller's API keys from its ancestors'
``/proc/<pid>/environ``. So, as root and where ``unshare`` works, such a command starts in new user,
pid and mount namespaces (``unshare --user --map-root-user --pid --fork --mount-proc``): its ``/proc``
shows only its own processes, and as root of a user namespace it has no capability over the
controller, so even after unmounting its ``/proc`` it cannot read the controller's files there.
Elsewhere (no ``unshare``, namespaces refused, not root) nothing is added: a non-root command is
kept out by non-dumpability alone, and ``[task] sandbox = "bwrap"`` does the same and more.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Sequence

PREFIX = ("--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--kill-child", "--")


@functools.cache
def available() -> bool:
    """Whether commands can be started in namespaces of their own here (checked once)."""
    unshare = shutil.which("unshare")
    if unshare is None or not hasattr(os, "geteuid"):
        return False
    try:
        probe = subprocess.run([unshare, *PREFIX, "true"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def needed() -> bool:
    """Whether a command must be kept from the controller's /proc by namespaces: as root, where they work."""
    return hasattr(os, "geteuid") and os.geteuid() == 0 and available()


def wrap(command: str | Sequence[str]) -> list[str]:
    """``command`` (a shell line or an argument list) started in namespaces of its own."""
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    return [shutil.which("unshare") or "unshare", *PREFIX, *argv]
