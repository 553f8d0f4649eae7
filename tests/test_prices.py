"""What agents cost: the price table, cached input at its own rate."""

from __future__ import annotations

import pytest


def test_cached_input_is_priced_at_its_own_rate_and_the_table_says_where_it_comes_from() -> None:
    from overnight.agents import prices

    sonnet = prices.rates("claude-sonnet-4-5-20250929")
    assert sonnet == prices.Rates(3.0, 15.0, 0.3, 3.75)
    # 1000 input tokens of which 600 read from the cache and 100 written to it, 200 out
    assert prices.cost("claude-sonnet-4-5", 1000, 200, cached=600, written=100) == pytest.approx(
        (300 * 3.0 + 600 * 0.3 + 100 * 3.75 + 200 * 15.0) / 1e6
    )
    assert prices.cost("openai/gpt-5.4", 1000, 0, cached=1000) == pytest.approx(1000 * 0.25 / 1e6)
    # configured prices know no cache discount: every input token at the configured rate
    assert prices.cost("local-model", 1000, 0, 2.0, 8.0, cached=500) == pytest.approx(1000 * 2.0 / 1e6)
    assert prices.rates("gpt-7-turbo") is None and prices.READ_ON and prices.SOURCE.startswith("https://")
