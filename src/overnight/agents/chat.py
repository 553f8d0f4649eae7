"""Chat clients for LLM agents: the official OpenAI and Anthropic SDKs, imported lazily.

A client sends one conversation and returns the reply's text and token usage. Both
SDKs retry 429 (honouring Retry-After), 5xx and timeouts with backoff themselves;
here their errors become ours: bad credentials or an unknown model stop the run
(AgentUnavailable), anything else that survives the retries fails one proposal (AgentError).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from overnight.errors import AgentError, AgentUnavailable

SDK_RETRIES = 4  # the SDKs' own retries of 429, 5xx, connection errors and timeouts


@dataclass(frozen=True)
class Reply:
    text: str
    tokens_in: int
    tokens_out: int


class Chat(ABC):
    """One model behind one API. ``complete`` is called from one thread at a time."""

    provider: str = ""

    def __init__(self, model: str, base_url: str, max_output_tokens: int) -> None:
        if not model:
            raise AgentUnavailable(
                f"the {self.provider} agent needs a model: pass --model NAME or set [agent] model in overnight.toml"
            )
        self.model = model
        self.base_url = base_url
        self.max_output_tokens = max_output_tokens

    @abstractmethod
    def complete(self, system: str, messages: list[dict[str, str]], timeout_s: float) -> Reply:
        """Send the conversation (role/content dicts, user first); return the reply."""


def _import(module: str, extra: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise AgentUnavailable(f"the {module} agent needs the {module} SDK: pip install 'overnight[{extra}]'") from None


def _fail(sdk: Any, err: Exception, provider: str, model: str, where: str) -> Exception:
    """Map an SDK error to ours, with a message that says what to do."""
    status = getattr(err, "status_code", None)
    if isinstance(err, (sdk.AuthenticationError, sdk.PermissionDeniedError)):
        return AgentUnavailable(
            f"{provider} refused the credentials ({status}) at {where}: check {provider.upper()}_API_KEY"
        )
    if isinstance(err, sdk.NotFoundError):
        return AgentUnavailable(f"{provider} at {where} has no model {model!r} ({status}); pass another --model")
    return AgentError(f"{provider} call failed after retries: {type(err).__name__}: {str(err)[:300]}")


class OpenAIChat(Chat):
    provider = "openai"

    def __init__(self, model: str, base_url: str, max_output_tokens: int) -> None:
        super().__init__(model, base_url or os.environ.get("OPENAI_BASE_URL", ""), max_output_tokens)
        self._sdk = _import("openai", "openai")
        key = os.environ.get("OPENAI_API_KEY")
        if not key and not self.base_url:
            raise AgentUnavailable("the openai agent needs OPENAI_API_KEY (or --base-url for a local server)")
        self._client = self._sdk.OpenAI(
            api_key=key or "not-needed",  # local servers (vLLM, ollama, llama.cpp) take any key
            base_url=self.base_url or None,
            max_retries=SDK_RETRIES,
        )

    def complete(self, system: str, messages: list[dict[str, str]], timeout_s: float) -> Reply:
        try:
            response = self._client.chat.completions.create(
                model=self.model,
                messages=[{"role": "system", "content": system}, *messages],
                max_tokens=self.max_output_tokens,
                timeout=timeout_s,
            )
        except self._sdk.APIError as err:
            raise _fail(self._sdk, err, "openai", self.model, str(self._client.base_url)) from None
        text = response.choices[0].message.content or "" if response.choices else ""
        usage = response.usage
        return Reply(text, getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0)


class AnthropicChat(Chat):
    provider = "anthropic"

    def __init__(self, model: str, base_url: str, max_output_tokens: int) -> None:
        super().__init__(model, base_url or os.environ.get("ANTHROPIC_BASE_URL", ""), max_output_tokens)
        self._sdk = _import("anthropic", "anthropic")
        key = os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            raise AgentUnavailable("the anthropic agent needs ANTHROPIC_API_KEY")
        self._client = self._sdk.Anthropic(api_key=key, base_url=self.base_url or None, max_retries=SDK_RETRIES)

    def complete(self, system: str, messages: list[dict[str, str]], timeout_s: float) -> Reply:
        try:
            response = self._client.messages.create(
                model=self.model,
                system=system,
                messages=messages,
                max_tokens=self.max_output_tokens,
                timeout=timeout_s,
            )
        except self._sdk.APIError as err:
            raise _fail(self._sdk, err, "anthropic", self.model, str(self._client.base_url)) from None
        text = "".join(getattr(block, "text", "") for block in response.content)
        usage = response.usage
        return Reply(text, getattr(usage, "input_tokens", 0) or 0, getattr(usage, "output_tokens", 0) or 0)


CHATS: dict[str, type[Chat]] = {"openai": OpenAIChat, "anthropic": AnthropicChat}
