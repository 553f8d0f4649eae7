"""Agents: who proposes changes. ``AGENTS`` is the registry of kinds by name."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

from overnight.agents._base import Agent, Context
from overnight.agents.command import CommandAgent
from overnight.config import AgentSection
from overnight.errors import ConfigError


def _command(settings: AgentSection) -> Agent:
    return CommandAgent(settings.command, settings.timeout_s)


def _llm(provider: str) -> Callable[[AgentSection], Agent]:
    def make(settings: AgentSection) -> Agent:
        from overnight.agents.chat import CHATS
        from overnight.agents.llm import LLMAgent

        chat = CHATS[provider](settings.model, settings.base_url, settings.max_output_tokens, settings.api)
        return LLMAgent(chat, settings)

    return make


def _tune(settings: AgentSection) -> Agent:
    from overnight.agents.tune import TuneAgent

    return TuneAgent(settings.tune)


def _cli(binary: str) -> Callable[[AgentSection], Agent]:
    def make(settings: AgentSection) -> Agent:
        module = importlib.import_module(f"overnight.agents.{binary}")
        cli: type[Agent] = module.AGENT
        return cli(settings)  # type: ignore[call-arg]

    return make


#: kind name → factory taking the [agent] settings (with command-line overrides applied)
AGENTS: dict[str, Callable[[AgentSection], Agent]] = {
    "command": _command,
    "tune": _tune,
    "openai": _llm("openai"),
    "anthropic": _llm("anthropic"),
    **{binary: _cli(binary) for binary in ("claude", "codex", "gemini", "opencode", "aider")},
}


def make_agent(settings: AgentSection, worker: int = 0) -> Agent:
    """Build the agent ``settings.kind`` names for worker number ``worker``; an unknown kind lists the valid ones.

    Workers' tune agents get seeds of their own (the configured seed plus the worker's
    number), so they do not propose alike.
    """
    try:
        factory = AGENTS[settings.kind]
    except KeyError:
        raise ConfigError(
            f"unknown agent kind {settings.kind!r}; valid kinds are: {', '.join(sorted(AGENTS))}"
        ) from None
    if worker:
        settings = dataclasses.replace(
            settings, tune=dataclasses.replace(settings.tune, seed=settings.tune.seed + worker)
        )
    return factory(settings)


__all__ = ["AGENTS", "Agent", "CommandAgent", "Context", "make_agent"]
