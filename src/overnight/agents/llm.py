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
from overnight.agents.failures import FailureStreak
from overnight.agents.hypothesis import stated
from overnight.config import AgentSection
from overnight.errors import AgentError
from overnight.globs import Rules
from overnight.records import Proposal, Usage

CALL_TIMEOUT_S = 600.0  # one call's limit (the SDK retries within the remaining time of the proposal)


class LLMAgent(Agent):
    def __init__(self, chat: Chat, settings: AgentSection) -> None:
        self.chat = chat
        self.name = chat.provider
        self.settings = settings
        self._transport = FailureStreak(self.name)  # calls that failed after the SDK's own retries

    def uncounted(self) -> str:
        return prices.unpriced(self.settings)

    def propose(self, context: Context) -> Proposal:
        deadline = time.monotonic() + self.settings.timeout_s
        system = prompt.template("llm_rules").substitute()
        messages = [{"role": "user", "content": prompt.brief(context, self.settings.context_tokens)}]
        rules = Rules(context.config.task.editable, context.config.task.protected)
        usage = Usage()
        problems = ""
        tries = 0
        for _ in range(self.settings.retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or context.stop.is_set():
                break
            tries += 1
            try:
                reply = self.chat.complete(system, messages, min(CALL_TIMEOUT_S, remaining))
            except AgentError as err:
                self._transport.failed(str(err), usage)
                raise AgentError(str(err), usage) from None
            self._transport.succeeded()
            usage = usage + prices.priced(
                self.settings, reply.tokens_in, reply.tokens_out, cached=reply.cached, written=reply.written
            )
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
            # Only a stated hypothesis: a reply's last line is the end of a SEARCH/REPLACE block.
            hypothesis = stated(reply.text) or f"edit {', '.join(sorted(changed))}"
            return Proposal(hypothesis, agent=self.name, usage=usage, info={"model": self.chat.model})
        if not problems:
            raise AgentError(f"{self.name}: the proposal ran out of time ({self.settings.timeout_s:g}s)", usage)
        cut_short = ""
        if tries <= self.settings.retries:  # the time limit (or a stop) ended the retries early
            cut_short = " (the run is stopping)" if context.stop.is_set() else " (no time was left for more)"
        raise AgentError(f"the model's edits did not apply after {tries} tries{cut_short}: {problems[:400]}", usage)
