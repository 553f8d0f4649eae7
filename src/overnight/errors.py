"""Exceptions raised by overnight.

Every error the user can cause or meet derives from one root, so the CLI can
catch a single type, print its message and exit with the code it carries::

    OvernightError                  exit 1: anything overnight reports on purpose
    ├── ConfigError                 exit 2: overnight.toml, program.md or a flag is wrong
    ├── GitError                    exit 4: the repository is not in a state we can use
    │   └── DirtyTreeError          exit 4: editable or protected files have uncommitted changes
    ├── RunStateError               exit 5: what was asked does not fit the run's state (running, settings, branch)
    ├── TaskBrokenError             exit 3: the baseline did not produce the metric
    ├── AgentError                  (recorded as `rejected`; stops nothing)
    └── AgentUnavailable            exit 6: the agent cannot work at all (credentials, program, server)

Messages are written for whoever acts next: they say what is wrong and what to do.
"""

from __future__ import annotations


class OvernightError(Exception):
    """Root of every error overnight raises on purpose."""

    exit_code = 1


class ConfigError(OvernightError):
    """The task files or command-line options are invalid."""

    exit_code = 2


class GitError(OvernightError):
    """A git operation failed or the repository is unusable."""

    exit_code = 4


class DirtyTreeError(GitError):
    """Files that an experiment depends on have uncommitted changes."""


class RunStateError(OvernightError):
    """What was asked does not fit the run's state: it runs already, its settings or branch differ, it is not there."""

    exit_code = 5


class TaskBrokenError(OvernightError):
    """The unchanged code does not produce the metric: nothing can be judged."""

    exit_code = 3


class AgentError(OvernightError):
    """An agent failed to produce a proposal; the experiment is rejected and the run goes on.

    ``usage`` carries what the failed attempt still cost (a records.Usage), when known;
    ``hypothesis`` what the agent said it tried, and ``notes`` what it wrote for the lab
    notebook, when it said so before failing (both are recorded: a failed try still teaches).
    """

    def __init__(
        self, message: str, usage: object | None = None, *, hypothesis: str = "", notes: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.usage = usage
        self.hypothesis = hypothesis
        self.notes = notes


class AgentUnavailable(OvernightError):
    """The agent cannot work at all (bad credentials, a missing program, a server that stays down).

    The experiment it was proposing is recorded as `rejected` (with ``usage``, when known), then the run stops.
    """

    exit_code = 6

    def __init__(self, message: str, usage: object | None = None) -> None:
        super().__init__(message)
        self.usage = usage
