"""List prices of well-known models, USD per million tokens (input, output).

These are the public list prices OpenAI and Anthropic published in 2025; they change.
``[agent] input_usd_per_mtok`` and ``output_usd_per_mtok`` override them, and a model
that is not listed (a local server, a new model) has no cost unless configured.
A name matches its entry exactly or with a date suffix ("claude-sonnet-4-5-20250929",
"gpt-4o-2024-08-06"); anything else is unknown rather than guessed.
"""

from __future__ import annotations

import re

from overnight.config import AgentSection
from overnight.records import Usage

_DATED = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2})$")

PRICES: dict[str, tuple[float, float]] = {
    # OpenAI
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5": (1.25, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "o4-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    # Anthropic
    "claude-opus-4-5": (5.00, 25.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-opus-4-0": (15.00, 75.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-sonnet-4-0": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-5-haiku": (0.80, 4.00),
}


def price(model: str, input_usd: float = 0.0, output_usd: float = 0.0) -> tuple[float, float] | None:
    """(input, output) USD per million tokens: configured, else listed, else None."""
    if input_usd or output_usd:
        return input_usd, output_usd
    name = model.rsplit("/", 1)[-1]  # "openai/gpt-4o" on routers
    return PRICES.get(name) or PRICES.get(_DATED.sub("", name))


def unpriced(settings: AgentSection) -> str:
    """Why ``settings``' model cannot be priced ("" when it can): for agents that report no cost of their own."""
    if price(settings.model, settings.input_usd_per_mtok, settings.output_usd_per_mtok) is not None:
        return ""
    if not settings.model:
        return "no model is named, so no price is known"
    return f"no price is known for the model {settings.model!r}"


def cost(model: str, tokens_in: int, tokens_out: int, input_usd: float = 0.0, output_usd: float = 0.0) -> float | None:
    rates = price(model, input_usd, output_usd)
    if rates is None:
        return None
    return (tokens_in * rates[0] + tokens_out * rates[1]) / 1_000_000


def priced(settings: AgentSection, tokens_in: int, tokens_out: int, reported: float | None = None) -> Usage:
    """The Usage of one call: the cost the tool ``reported``, else priced from ``settings``' model and prices."""
    if reported is None:
        s = settings
        reported = cost(s.model, tokens_in, tokens_out, s.input_usd_per_mtok, s.output_usd_per_mtok)
    return Usage(tokens_in, tokens_out, reported)
