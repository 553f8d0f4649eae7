"""Running commands under bubblewrap (``[task] sandbox = "bwrap"``).

What it does: the command runs in user, pid, ipc, uts and cgroup namespaces of its own
with no capabilities (root included: it cannot remount anything, unmount its /proc or
enter another namespace), sees the host's file system read-only; only the worktree
(and, for coding-CLI agents, their own state folders) and a private, empty /tmp are
writable (the host's /tmp is hidden, except the task's repository and the Python
environment overnight runs in, when they live there); its /proc shows only its own
processes, its /dev/shm is private, and it dies with the harness; with
``network = false`` (the default) experiments have no network but loopback. Agents keep
the network: they talk to their models.

What it does not do: it is not a security boundary against a determined attacker
(bubblewrap shares the kernel; the worktree's `.git` file and the repository's objects
stay readable, and so does everything else on the machine that your user can read,
including files holding secrets outside the environment). It does not limit CPU, GPU
or memory (see ``memory_mb``), and it does not exist on macOS.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from overnight.errors import ConfigError


def require() -> None:
    if shutil.which("bwrap") is None:
        raise ConfigError(
            '[task] sandbox = "bwrap" needs bubblewrap: install it (apt-get install bubblewrap, '
            "dnf install bubblewrap, pacman -S bubblewrap) or remove the setting"
        )


def for_task(worktree: Path, root: Path, network: bool) -> Sandbox:
    """The sandbox of a task's experiments: ``worktree`` writable, ``root`` (the repository) readable.

    The repository and the Python environment overnight runs in stay visible when they live
    under /tmp: experiments read the repository's objects and usually run that Python.
    """
    return Sandbox(writable=(worktree,), network=network, visible=(root, Path(sys.prefix)))


@dataclass(frozen=True)
class Sandbox:
    writable: tuple[Path, ...]  # bound read-write, in this order (a folder before the folders inside it)
    network: bool = False
    # Host folders shown read-only even where the private /tmp would hide them (see for_task).
    visible: tuple[Path, ...] = ()

    def wrap(self, command: str | Sequence[str], cwd: Path) -> list[str]:
        """The argument list that runs ``command`` inside the sandbox, in ``cwd``."""
        # A private /dev (its /dev/shm a tmpfs of its own) and a /proc of its own pid namespace.
        argv = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
        for path in self.visible:
            if path.exists():
                argv += ["--ro-bind", str(path), str(path)]
        for path in self.writable:
            if path.exists():
                argv += ["--bind", str(path), str(path)]
        if not self.network:
            argv.append("--unshare-net")
        # As root, bubblewrap keeps every capability unless told: a command could remount / read-write,
        # unmount /proc to see the controller, or join its network namespace. A user namespace
        # (mounts made outside it cannot be changed from inside) and no capabilities hold for root
        # and for everyone else alike. --new-session: no terminal to inject input into.
        argv += ["--unshare-user", "--cap-drop", "ALL", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        argv += ["--unshare-pid", "--die-with-parent", "--new-session", "--chdir", str(cwd), "--"]
        return argv + (["sh", "-c", command] if isinstance(command, str) else list(command))
