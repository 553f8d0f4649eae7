"""The `overnight` command: the entry point, and a map of where each command lives.

- this module: `main`, the entry point (`overnight.cli:main`): it parses the command
  line, hands the command to its module, and turns errors into exit codes. Errors
  derived from OvernightError print one message and exit with the code the error
  carries (see overnight.errors); for a command that took a task's newest run by
  default, the message says which run that was. Ctrl-C exits with 130, a closed
  pipe (`overnight log | head`) with 0, an OSError with 1.
- grammar.py: every subcommand and flag, with its help (all `--help` loads).
- write.py: the commands that run experiments or write: init (the files written by
  scaffold.py), run, noise, verify, demo (the example copied by demo.py).
- night.py: the run policy behind `overnight run` and `overnight demo`: the checks
  made before a run exists (agent settings, slots, limits, the task, one probe of the
  agent), starting or resuming the run, the controller with its agents, executor,
  slots and limits, the live view, Ctrl-C, and removing a run this call created whose
  baseline failed or whose agent proposed nothing.
- read.py: the commands that only read runs: status, runs, log, show, brief, report,
  finalize, export, dashboard.

A command's module is imported only when that command runs, and each command imports
what it calls inside itself: `overnight --help` loads the grammar alone, and looking at
a run (status, log, show, the dashboard) loads none of the write side (the controller,
the loop, agents, executors).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

from overnight.cli import grammar as arguments
from overnight.errors import OvernightError

log = logging.getLogger("overnight")

# Each command's module (it holds cmd_<command>), imported when the command runs.
_HOME = {
    "init": "write",
    "run": "write",
    "demo": "write",
    "noise": "write",
    "verify": "write",
    "runs": "read",
    "status": "read",
    "log": "read",
    "show": "read",
    "brief": "read",
    "report": "read",
    "finalize": "read",
    "export": "read",
    "dashboard": "read",
}


def main(argv: Sequence[str] | None = None) -> int:
    grammar = arguments.parser()
    args = grammar.parse_args(argv)
    if args.command is None:  # `overnight` alone: what it can do
        grammar.print_help()
        return 0
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="overnight: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(_command(args.command)(args) or 0)
    except OvernightError as err:
        print(f"overnight: error: {err}", file=sys.stderr)
        hint = _which_run(args)
        if hint:
            print(f"overnight: {hint}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("overnight: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `overnight log | head`: the reader has what it wanted
        _quiet_stdout()
        return 0
    except OSError as err:  # the machine's side: a full disk, a permission, a vanished folder
        print(f"overnight: error: {err}", file=sys.stderr)
        return 1


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    module = importlib.import_module(f"overnight.cli.{_HOME[name]}")
    command: Callable[[argparse.Namespace], int] = getattr(module, f"cmd_{name}")
    return command


# The commands that look at (or verify) one run, the most recent of the task unless --tag names one.
_ONE_RUN = {"status", "log", "show", "report", "finalize", "export", "brief", "verify", "dashboard"}


def _which_run(args: argparse.Namespace) -> str:
    """After an error about the run a command took by default: which run that was, and the task's others."""
    from overnight import views

    if args.command not in _ONE_RUN or getattr(args, "tag", None) is not None:
        return ""
    from overnight.run.paths import runs_of
    from overnight.views import runs as runlist

    try:
        root, rel = views.locate(args.dir)
        found = runs_of(root, rel)
        return runlist.choice_note(root, rel, found[-1][1], defaulted=True) if found else ""
    except (OvernightError, OSError):  # the error was about the folder itself: nothing to add
        return ""


def _quiet_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null, so Python's flush at exit does not complain."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
