"""LLM agents (`openai`, `anthropic`): ask a chat model for SEARCH/REPLACE edits.

One proposal is one conversation: the brief goes out; a reply whose edits do not
apply is answered with what went wrong (written for the model) and retried up to
``retries`` times; then the experiment is rejected with the reason. The whole
conversation shares the agent's timeout, and every call has its own.
"""

from __future__ import annotations

import time

from overnight.agents import edits, prices, prompt
from overnight.agents._base import Agent, Context
from overnight.agents.chat import Chat
from overnight.config import AgentSection
from overnight.errors import AgentError, AgentUnavailable
from overnight.globs import Rules
from overnight.records import Proposal, Usage

CALL_TIMEOUT_S = 600.0  # one call's limit (the SDK retries within the remaining time of the proposal)
DOWN_AFTER = 3  # proposals in a row that fail on transport before the run stops


class LLMAgent(Agent):
    def __init__(self, chat: Chat, settings: AgentSection) -> None:
        self.chat = chat
        self.name = chat.provider
        self.settings = settings
        self._transport_failures = 0

    def _usage(self, tokens_in: int, tokens_out: int) -> Usage:
        s = self.settings
        spent = prices.cost(self.chat.model, tokens_in, tokens_out, s.input_usd_per_mtok, s.output_usd_per_mtok)
        return Usage(tokens_in, tokens_out, spent)

    def propose(self, context: Context) -> Proposal:
        deadline = time.monotonic() + self.settings.timeout_s
        system = prompt.template("llm_rules").substitute()
        messages = [{"role": "user", "content": prompt.brief(context, self.settings.context_tokens)}]
        rules = Rules(context.config.task.editable, context.config.task.protected)
        usage = Usage()
        problems = ""
        for _ in range(self.settings.retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or context.stop.is_set():
                break
            try:
                reply = self.chat.complete(system, messages, min(CALL_TIMEOUT_S, remaining))
            except AgentError as err:
                self._transport_failures += 1
                if self._transport_failures >= DOWN_AFTER:
                    raise AgentUnavailable(f"{self.name} failed {DOWN_AFTER} proposals in a row; last: {err}") from None
                raise AgentError(str(err), usage) from None
            self._transport_failures = 0
            usage = usage + self._usage(reply.tokens_in, reply.tokens_out)
            try:
                changed = edits.apply(reply.text, context.task_dir, rules.allows, list(context.editable))
            except edits.EditError as err:
                problems = str(err)
                messages += [
                    {"role": "assistant", "content": reply.text},
                    {"role": "user", "content": prompt.template("retry").substitute(problems=problems)},
                ]
                continue
            edits.write(changed, context.task_dir)
            hypothesis = edits.hypothesis(reply.text) or f"edit {', '.join(sorted(changed))}"
            return Proposal(hypothesis, agent=self.name, usage=usage, info={"model": self.chat.model})
        if not problems:
            raise AgentError(f"{self.name}: the proposal ran out of time ({self.settings.timeout_s:g}s)", usage)
        tries = self.settings.retries + 1
        raise AgentError(f"the model's edits did not apply after {tries} tries: {problems[:400]}", usage)
