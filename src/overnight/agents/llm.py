"""LLM agents (`openai`, `anthropic`): ask a chat model for SEARCH/REPLACE edits.

One proposal is one conversation: the brief goes out; the blocks of each reply that apply
are written to the worktree at once and kept. A reply with blocks that do not apply is
answered with which blocks applied and what went wrong with the others (written for the
model), and only those are asked again; a reply cut off at the output limit is answered
with a request for the rest, shorter. Up to ``retries`` follow-ups; then the experiment is
rejected with the reason. The whole conversation shares the agent's timeout, and every
call has its own.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from overnight.agents import edits, prices, prompt
from overnight.agents._base import Agent, Context
from overnight.agents.chat import Chat
from overnight.agents.failures import FailureStreak
from overnight.agents.hypothesis import MAX_NOTES, stated
from overnight.config import AgentSection
from overnight.errors import AgentError
from overnight.globs import Rules
from overnight.records import Proposal, Usage

_NOTHING_NEW = "Your reply has no block that had not applied already; send the blocks that failed, fixed."
CALL_TIMEOUT_S = 600.0  # one call's limit (the SDK retries within the remaining time of the proposal)


class LLMAgent(Agent):
    def __init__(self, chat: Chat, settings: AgentSection) -> None:
        self.chat = chat
        self.name = chat.provider
        self.settings = settings
        self._transport = FailureStreak(self.name)  # calls that failed after the SDK's own retries

    def uncounted(self) -> str:
        return prices.unpriced(self.settings)

    def probe(self) -> None:
        self.chat.probe()

    def propose(self, context: Context) -> Proposal:
        deadline = time.monotonic() + self.settings.timeout_s
        system = prompt.template("llm_rules").substitute()
        messages = [{"role": "user", "content": prompt.brief(context, self.settings.context_tokens)}]
        rules = Rules(context.config.task.editable, context.config.task.protected)
        usage = Usage()
        progress = _Progress(self.settings.max_output_tokens)
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
            outcome = edits.apply(
                reply.text, context.task_dir, rules.allows, list(context.editable), progress.done, reply.cut_off
            )
            edits.write(outcome, context.task_dir)  # what applies is kept, whatever becomes of the rest
            follow_up = progress.answer(outcome, reply.cut_off)
            if follow_up is None:
                return Proposal(
                    progress.hypothesis or f"edit {', '.join(sorted(progress.changed))}",
                    agent=self.name,
                    usage=usage,
                    info={"model": self.chat.model},
                    notes=tuple(progress.notes[:MAX_NOTES]),
                )
            messages += [{"role": "assistant", "content": reply.text}, {"role": "user", "content": follow_up}]
        if not progress.problems:
            raise AgentError(f"{self.name}: the proposal ran out of time ({self.settings.timeout_s:g}s)", usage)
        cut_short = ""
        if tries <= self.settings.retries:  # the time limit (or a stop) ended the retries early
            cut_short = " (the run is stopping)" if context.stop.is_set() else " (no time was left for more)"
        raise AgentError(
            f"the model's edits did not apply after {tries} tries{cut_short}: {progress.why()[:400]}",
            usage,
            hypothesis=progress.hypothesis,  # what it tried is still worth telling the next agent
            notes=tuple(progress.notes[:MAX_NOTES]),
        )


@dataclass
class _Progress:
    """One conversation so far: the blocks applied (in the worktree), what the model said, what it still owes."""

    limit: int  # the output limit of a reply, in tokens
    done: set[tuple[str, str, str]] = field(default_factory=set)  # Block.key of every block applied
    changed: set[str] = field(default_factory=set)
    hypothesis: str = ""
    notes: list[str] = field(default_factory=list)
    owed: bool = False  # the last follow-up asked again for failed blocks: a reply must apply some
    cut_offs: int = 0
    problems: str = ""  # what went wrong with the last reply

    def answer(self, outcome: edits.Outcome, cut_off: bool) -> str | None:
        """Take in a reply whose blocks that applied are written; the follow-up for the model, or None when done."""
        earlier = bool(self.done)
        self.done |= {b.key for b in outcome.parsed.blocks if b.index in outcome.applied}
        self.changed |= outcome.changed.keys()
        self.hypothesis = stated(outcome.parsed.outside) or self.hypothesis
        self.notes += [note for note in outcome.parsed.notes if note not in self.notes]
        owed, self.owed = self.owed, bool(outcome.problems)
        if cut_off:
            self.cut_offs += 1
            self.problems = f"the reply was cut off at the output limit ({self.limit} tokens)"
            return _tidy(_cut_off(outcome, earlier, self.limit))
        if outcome.problems or (not outcome.applied and (owed or not self.done)):
            self.problems = "\n\n".join(outcome.problems) or (_NOTHING_NEW if outcome.repeated else edits.NO_BLOCKS)
            return _tidy(
                prompt.template("retry").substitute(applied=_applied(outcome, earlier), problems=self.problems)
            )
        return None  # every block applied; or, asked for the rest of a cut-off reply, the model says nothing is missing

    def why(self) -> str:
        """Why the conversation ended without a proposal, for the experiment's reason."""
        if not self.cut_offs:
            return self.problems
        return (
            f"{self.cut_offs} of the model's replies were cut off at the output limit ({self.limit} tokens; "
            f"raise [agent] max_output_tokens); last: {self.problems}"
        )


def _cut_off(outcome: edits.Outcome, earlier: bool, limit: int) -> str:
    """The follow-up to a reply that reached the output limit: what applied, and a request for the rest."""
    parsed = outcome.parsed
    if parsed.unclosed:
        where = f"inside {parsed.unclosed}"
    elif parsed.blocks:
        where = f"after block {parsed.blocks[-1].index}"
    else:
        where = "before any complete SEARCH/REPLACE block"
    return prompt.template("cut_off").substitute(
        limit=limit,
        where=where,
        applied=_applied(outcome, earlier),
        problems="\n\n".join(outcome.problems),
        finish="If nothing is missing, reply with your Hypothesis line alone." if earlier or outcome.applied else "",
    )


def _numbers(indexes: list[int]) -> str:
    """``[1, 3, 4]`` → ``blocks 1, 3 and 4``."""
    names = [str(i) for i in indexes]
    if len(names) == 1:
        return f"block {names[0]}"
    return f"blocks {', '.join(names[:-1])} and {names[-1]}"


def _applied(outcome: edits.Outcome, earlier: bool) -> str:
    """One or two sentences for the model: which blocks applied (and stay), which were already in."""
    said = []
    if outcome.applied:
        are, them = ("is", "it") if len(outcome.applied) == 1 else ("are", "them")
        said.append(f"Your {_numbers(outcome.applied)} applied and {are} in the files now; do not send {them} again.")
    if outcome.repeated:
        was = "it was" if len(outcome.repeated) == 1 else "they were"
        said.append(f"Your {_numbers(outcome.repeated)} had applied before, so {was} skipped.")
    if not said:
        said.append(
            "The blocks that applied before are in the files now; none of this reply applied."
            if earlier
            else "Nothing was changed: the files are as they were."
        )
    return " ".join(said)


def _tidy(text: str) -> str:
    """A filled template without the blank lines an empty part leaves."""
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
