"""Agents: who proposes changes. ``AGENTS`` is the registry of kinds by name."""

from __future__ import annotations

from collections.abc import Callable

from overnight.agents._base import Agent, Context
from overnight.agents.command import CommandAgent
from overnight.config import AgentSection
from overnight.errors import ConfigError


def _command(settings: AgentSection) -> Agent:
    return CommandAgent(settings.command, settings.timeout_s)


#: kind name → factory taking the [agent] settings (with command-line overrides applied)
AGENTS: dict[str, Callable[[AgentSection], Agent]] = {
    "command": _command,
}


def make_agent(settings: AgentSection) -> Agent:
    """Build the agent ``settings.kind`` names; an unknown kind lists the valid ones."""
    try:
        factory = AGENTS[settings.kind]
    except KeyError:
        raise ConfigError(
            f"unknown agent kind {settings.kind!r}; valid kinds are: {', '.join(sorted(AGENTS))}"
        ) from None
    return factory(settings)


__all__ = ["AGENTS", "Agent", "CommandAgent", "Context", "make_agent"]
