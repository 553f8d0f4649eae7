"""List prices of known models, USD per million tokens, and what one call cost.

SOURCE and READ_ON say where the table comes from and when it was read: GitHub's per-token
price table of the models it serves, which lists each provider's list prices with their
cached-input and cache-write rates (and, for the 2025 models it no longer lists, the
providers' own 2025 price pages). Prices change: ``[agent] input_usd_per_mtok`` and
``output_usd_per_mtok`` override the table, and a model that is not in it has no known
price (a run with ``--max-cost-usd`` and such a model is refused at the start, unless the
tool reports its own cost).

A name matches its entry exactly, after a router's "provider/" prefix, or with a date
suffix ("claude-sonnet-4-5-20250929", "gpt-4o-2024-08-06"); anything else is unknown
rather than guessed. Input tokens read from the provider's prompt cache are priced at the
cached rate and tokens written to it at the cache-write rate; both are counted inside
the call's input tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from overnight.config import AgentSection
from overnight.records import Usage

SOURCE = "https://github.com/github/docs/blob/main/data/tables/copilot/models-and-pricing.yml"
READ_ON = "2026-12-01"

_DATED = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class Rates:
    """USD per million tokens: fresh input, output, input read from the cache, input written to it."""

    input: float
    output: float
    cached: float
    cache_write: float

    @classmethod
    def of(cls, input: float, output: float, cached: float | None = None, cache_write: float | None = None) -> Rates:
        return cls(input, output, input if cached is None else cached, input if cache_write is None else cache_write)


def _openai(input: float, output: float, cached_share: float = 0.1) -> Rates:
    return Rates.of(input, output, round(input * cached_share, 6))  # OpenAI charges no cache writes


def _anthropic(input: float, output: float) -> Rates:
    return Rates.of(input, output, round(input * 0.1, 6), round(input * 1.25, 6))  # 5-minute cache writes


PRICES: dict[str, Rates] = {
    # OpenAI, read from SOURCE on READ_ON (the default tier, prompts up to 272K tokens)
    "gpt-5-mini": _openai(0.25, 2.00),
    "gpt-5.3-codex": _openai(1.75, 14.00),
    "gpt-5.4": _openai(2.50, 15.00),
    "gpt-5.4-mini": _openai(0.75, 4.50),
    "gpt-5.4-nano": _openai(0.20, 1.25),
    "gpt-5.5": _openai(5.00, 30.00),
    # OpenAI, 2025 list prices (openai.com/api/pricing)
    "gpt-5-nano": _openai(0.05, 0.40),
    "gpt-5": _openai(1.25, 10.00),
    "gpt-5-codex": _openai(1.25, 10.00),
    "gpt-4.1-nano": _openai(0.10, 0.40, 0.25),
    "gpt-4.1-mini": _openai(0.40, 1.60, 0.25),
    "gpt-4.1": _openai(2.00, 8.00, 0.25),
    "gpt-4o-mini": _openai(0.15, 0.60, 0.5),
    "gpt-4o": _openai(2.50, 10.00, 0.5),
    "o4-mini": _openai(1.10, 4.40, 0.25),
    "o3": _openai(2.00, 8.00, 0.25),
    # Anthropic, read from SOURCE on READ_ON (cache reads 0.1×, 5-minute cache writes 1.25× the input rate)
    "claude-opus-5": _anthropic(5.00, 25.00),
    "claude-opus-4-8": _anthropic(5.00, 25.00),
    "claude-opus-4-7": _anthropic(5.00, 25.00),
    "claude-opus-4-6": _anthropic(5.00, 25.00),
    "claude-opus-4-5": _anthropic(5.00, 25.00),
    "claude-sonnet-5": _anthropic(2.00, 10.00),
    "claude-sonnet-4-6": _anthropic(3.00, 15.00),
    "claude-sonnet-4-5": _anthropic(3.00, 15.00),
    "claude-sonnet-4": _anthropic(3.00, 15.00),
    "claude-sonnet-4-0": _anthropic(3.00, 15.00),
    "claude-haiku-4-5": _anthropic(1.00, 5.00),
    # Anthropic, 2025 list prices (anthropic.com/pricing)
    "claude-opus-4-1": _anthropic(15.00, 75.00),
    "claude-opus-4-0": _anthropic(15.00, 75.00),
    "claude-opus-4": _anthropic(15.00, 75.00),
    "claude-3-5-haiku": _anthropic(0.80, 4.00),
    # Google, read from SOURCE on READ_ON (prompts up to 200K tokens)
    "gemini-3.1-pro": _openai(2.00, 12.00),
    "gemini-3.1-pro-preview": _openai(2.00, 12.00),
    "gemini-3.5-flash": _openai(1.50, 9.00),
}


def rates(model: str, input_usd: float = 0.0, output_usd: float = 0.0) -> Rates | None:
    """The model's rates: configured (no cache discount assumed), else listed, else None."""
    if input_usd or output_usd:
        return Rates.of(input_usd, output_usd)
    name = model.rsplit("/", 1)[-1]  # "openai/gpt-4o" on routers
    return PRICES.get(name) or PRICES.get(_DATED.sub("", name))


def price(model: str, input_usd: float = 0.0, output_usd: float = 0.0) -> tuple[float, float] | None:
    """(input, output) USD per million tokens: configured, else listed, else None."""
    found = rates(model, input_usd, output_usd)
    return None if found is None else (found.input, found.output)


def unpriced(settings: AgentSection) -> str:
    """Why ``settings``' model cannot be priced ("" when it can): for agents that report no cost of their own."""
    if price(settings.model, settings.input_usd_per_mtok, settings.output_usd_per_mtok) is not None:
        return ""
    if not settings.model:
        return "no model is named, so no price is known"
    return f"no price is known for the model {settings.model!r} (the table was read on {READ_ON})"


def cost(
    model: str,
    tokens_in: int,
    tokens_out: int,
    input_usd: float = 0.0,
    output_usd: float = 0.0,
    cached: int = 0,
    written: int = 0,
) -> float | None:
    """USD for one call; ``cached`` and ``written`` (cache reads and writes) are part of ``tokens_in``."""
    found = rates(model, input_usd, output_usd)
    if found is None:
        return None
    cached, written = min(cached, tokens_in), min(written, max(0, tokens_in - cached))
    fresh = tokens_in - cached - written
    total = fresh * found.input + cached * found.cached + written * found.cache_write + tokens_out * found.output
    return total / 1_000_000


def priced(
    settings: AgentSection,
    tokens_in: int,
    tokens_out: int,
    reported: float | None = None,
    cached: int = 0,
    written: int = 0,
) -> Usage:
    """The Usage of one call: the cost the tool ``reported``, else priced from ``settings``' model and prices."""
    if reported is None:
        s = settings
        reported = cost(s.model, tokens_in, tokens_out, s.input_usd_per_mtok, s.output_usd_per_mtok, cached, written)
    return Usage(tokens_in, tokens_out, reported)
