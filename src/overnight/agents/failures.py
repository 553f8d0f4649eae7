"""An agent's failures in a row: a service that stays down stops the run."""

from __future__ import annotations

from dataclasses import dataclass

from overnight.errors import AgentUnavailable
from overnight.records import Usage

DOWN_AFTER = 3  # proposals in a row that fail before the run stops


@dataclass
class FailureStreak:
    """Counts an agent's proposals that failed in a row: a service that stays down stops the run.

    One failure is one rejected experiment; :data:`DOWN_AFTER` in a row mean the agent cannot
    work (no network, an exhausted quota), so going on would only fill the ledger with rejections.
    """

    agent: str  # the agent's name, for the message
    hint: str = ""  # where to look, added to the message
    count: int = 0

    def failed(self, message: str, usage: Usage | None = None) -> None:
        """Count one failure; raise AgentUnavailable (with ``usage``) when it makes DOWN_AFTER in a row."""
        self.count += 1
        if self.count >= DOWN_AFTER:
            hint = f"; {self.hint}" if self.hint else ""
            raise AgentUnavailable(f"{self.agent} failed {DOWN_AFTER} proposals in a row; last: {message}{hint}", usage)

    def succeeded(self) -> None:
        self.count = 0
