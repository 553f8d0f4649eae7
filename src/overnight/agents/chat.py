"""Chat clients for LLM agents: the official OpenAI and Anthropic SDKs, imported lazily.

A client sends one conversation and returns the reply's text and token usage. Both
SDKs retry 429 (honouring Retry-After), 5xx and timeouts with backoff themselves;
here their errors become ours: bad credentials or an unknown model stop the run
(AgentUnavailable), anything else that survives the retries fails one proposal (AgentError).
"""

from __future__ import annotations

import importlib
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from overnight.errors import AgentError, AgentUnavailable

SDK_RETRIES = 4  # the SDKs' own retries of 429, 5xx, connection errors and timeouts
PROBE_TIMEOUT_S = 15.0  # the probe before the baseline: one call, one retry

# OpenAI's reasoning models (o1, o3, o4-mini, ...) and gpt-5 refuse `max_tokens`
# ("Unsupported parameter ... use 'max_completion_tokens'"), whichever server relays them.
_COMPLETION_TOKENS_MODELS = re.compile(r"^(o\d|gpt-5)", re.IGNORECASE)


@dataclass(frozen=True)
class Reply:
    text: str
    tokens_in: int  # every input token, those read from or written to the prompt cache included
    tokens_out: int
    cached: int = 0  # input tokens read from the cache
    written: int = 0  # input tokens written to the cache
    cut_off: bool = False  # the reply stopped at the output limit (max_output_tokens), not where the model ended it


class Chat(ABC):
    """One model behind one API. ``complete`` is called from one thread at a time.

    ``provider`` names the SDK module, the pip extra and the ``<PROVIDER>_*`` variables.
    """

    provider: str = ""
    _client: Any  # the SDK's client, made by the subclass

    def __init__(self, model: str, base_url: str, max_output_tokens: int, api: str = "auto") -> None:
        self.model = model
        self.base_url = base_url or os.environ.get(f"{self.provider.upper()}_BASE_URL", "")
        self.max_output_tokens = max_output_tokens
        missing = [] if model else ["a model: pass --model NAME or set [agent] model in overnight.toml"]
        key = self._missing_key()
        if key:
            missing.append(key)
        if missing:  # everything that is missing in one message: one round trip, not one per setting
            raise AgentUnavailable(f"the {self.provider} agent needs " + "; and ".join(missing))
        self._sdk = self._import()

    def _missing_key(self) -> str:
        """What the provider's credentials lack, in words ("" when nothing)."""
        return ""

    def probe(self) -> None:
        """One cheap call before any baseline is spent (the list of models): are the credentials taken, is
        the server there? Raises AgentUnavailable when not. A server that answers with anything else (no
        list of models, a slow answer) passes: the first proposal tells the rest."""
        client = self._client.with_options(max_retries=1, timeout=PROBE_TIMEOUT_S)
        try:
            client.models.list()
        except self._sdk.APITimeoutError:
            return
        except self._sdk.APIConnectionError as err:
            where = str(self._client.base_url).rstrip("/")
            raise AgentUnavailable(
                f"{self.provider} at {where} could not be reached ({type(err).__name__}: {str(err)[:200]}); "
                "check the server is up and --base-url (or [agent] base_url)"
            ) from None
        except self._sdk.APIStatusError as err:
            if isinstance(err, (self._sdk.AuthenticationError, self._sdk.PermissionDeniedError)):
                raise self._fail(err) from None

    def _import(self) -> Any:
        try:
            return importlib.import_module(self.provider)
        except ImportError:
            p = self.provider
            raise AgentUnavailable(f"the {p} agent needs the {p} SDK: pip install 'overnight[{p}]'") from None

    def _fail(self, err: Exception) -> Exception:
        """Map an SDK error to ours, with a message that says what to do."""
        sdk, provider, where = self._sdk, self.provider, str(self._client.base_url).rstrip("/")
        status = getattr(err, "status_code", None)
        if isinstance(err, (sdk.AuthenticationError, sdk.PermissionDeniedError)):
            return AgentUnavailable(
                f"{provider} refused the credentials ({status}) at {where}: check {provider.upper()}_API_KEY"
            )
        if isinstance(err, sdk.NotFoundError) and "v1/responses" in str(err):
            return AgentUnavailable(
                f"{provider} at {where} serves {self.model!r} only through the Responses API ({status}): "
                '[agent] api = "chat" forbids it; set api = "auto" or "responses"'
            )
        if isinstance(err, sdk.NotFoundError):
            return AgentUnavailable(
                f"{provider} at {where} has no model {self.model!r} ({status}); pass another --model"
            )
        if isinstance(err, sdk.APIConnectionError):  # no answer at all: say where it was asked
            return AgentError(
                f"{provider} at {where} could not be reached after retries: {type(err).__name__}: {str(err)[:200]}; "
                "check the server is up and --base-url (or [agent] base_url)"
            )
        return AgentError(f"{provider} call to {where} failed after retries: {type(err).__name__}: {str(err)[:300]}")

    @abstractmethod
    def complete(self, system: str, messages: list[dict[str, str]], timeout_s: float) -> Reply:
        """Send the conversation (role/content dicts, user first); return the reply."""


def output_limit_field(model: str, base_url: str) -> str:
    """The Chat Completions parameter that caps the reply's tokens for ``model``.

    OpenAI's own API deprecated ``max_tokens`` and refuses it for reasoning models and
    gpt-5, so those and the official API get ``max_completion_tokens``; the family is read
    from the name (after a router's "openai/" prefix) because proxies relay it as is. Other
    servers (vLLM, ollama, llama.cpp) keep ``max_tokens``, which some of them only know.
    """
    family = model.rsplit("/", 1)[-1]
    if not base_url or _COMPLETION_TOKENS_MODELS.match(family):
        return "max_completion_tokens"
    return "max_tokens"


class OpenAIChat(Chat):
    """OpenAI's Chat Completions API, or its Responses API (``[agent] api``).

    With "auto", Chat Completions (what every compatible server speaks) until the model
    answers 404 "only supported in v1/responses" (codex models, some newer ones): then the
    Responses API, for that call and every later one.
    """

    provider = "openai"

    def __init__(self, model: str, base_url: str, max_output_tokens: int, api: str = "auto") -> None:
        super().__init__(model, base_url, max_output_tokens)
        self.api = api
        key = os.environ.get("OPENAI_API_KEY")
        self._client = self._sdk.OpenAI(
            api_key=key or "not-needed",  # local servers (vLLM, ollama, llama.cpp) take any key
            base_url=self.base_url or None,
            max_retries=SDK_RETRIES,
        )
        self._limit = {output_limit_field(model, self.base_url): max_output_tokens}

    def _missing_key(self) -> str:
        if os.environ.get("OPENAI_API_KEY") or self.base_url:
            return ""
        return "OPENAI_API_KEY in the environment (or --base-url for a local server)"

    def complete(self, system: str, messages: list[dict[str, str]], timeout_s: float) -> Reply:
        if self.api == "responses":
            return self._respond(system, messages, timeout_s)
        try:
            response = self._client.chat.completions.create(
                model=self.model,
                messages=[{"role": "system", "content": system}, *messages],
                timeout=timeout_s,
                **self._limit,
            )
        except self._sdk.APIError as err:
            if self.api == "auto" and isinstance(err, self._sdk.NotFoundError) and "v1/responses" in str(err):
                self.api = "responses"
                return self._respond(system, messages, timeout_s)
            raise self._fail(err) from None
        text = response.choices[0].message.content or "" if response.choices else ""
        usage = response.usage
        details = getattr(usage, "prompt_tokens_details", None)
        return Reply(
            text,
            getattr(usage, "prompt_tokens", 0) or 0,
            getattr(usage, "completion_tokens", 0) or 0,
            cached=getattr(details, "cached_tokens", 0) or 0,
            # "length": the token limit was reached (OpenAI, vLLM, llama.cpp and Ollama's compatible endpoint alike)
            cut_off=bool(response.choices) and response.choices[0].finish_reason == "length",
        )

    def _respond(self, system: str, messages: list[dict[str, str]], timeout_s: float) -> Reply:
        """One call of the Responses API: the rules as instructions, the conversation as input."""
        try:
            response = self._client.responses.create(
                model=self.model,
                instructions=system,
                input=messages,
                max_output_tokens=self.max_output_tokens,
                store=False,  # nothing of the run is kept on the provider's side
                timeout=timeout_s,
            )
        except self._sdk.APIError as err:
            raise self._fail(err) from None
        usage = response.usage
        details = getattr(usage, "input_tokens_details", None)
        incomplete = getattr(response, "incomplete_details", None)
        return Reply(
            response.output_text or "",
            getattr(usage, "input_tokens", 0) or 0,
            getattr(usage, "output_tokens", 0) or 0,
            cached=getattr(details, "cached_tokens", 0) or 0,
            cut_off=response.status == "incomplete" and getattr(incomplete, "reason", "") == "max_output_tokens",
        )


class AnthropicChat(Chat):
    provider = "anthropic"

    def __init__(self, model: str, base_url: str, max_output_tokens: int, api: str = "auto") -> None:
        super().__init__(model, base_url, max_output_tokens)  # one API: Messages (``api`` is the openai agent's)
        key = os.environ.get("ANTHROPIC_API_KEY")
        self._client = self._sdk.Anthropic(api_key=key, base_url=self.base_url or None, max_retries=SDK_RETRIES)

    def _missing_key(self) -> str:
        return "" if os.environ.get("ANTHROPIC_API_KEY") else "ANTHROPIC_API_KEY in the environment"

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
            raise self._fail(err) from None
        text = "".join(getattr(block, "text", "") for block in response.content)
        usage = response.usage
        cached = getattr(usage, "cache_read_input_tokens", 0) or 0
        written = getattr(usage, "cache_creation_input_tokens", 0) or 0
        fresh = getattr(usage, "input_tokens", 0) or 0  # Anthropic counts cache reads and writes apart from it
        return Reply(
            text,
            fresh + cached + written,
            getattr(usage, "output_tokens", 0) or 0,
            cached=cached,
            written=written,
            # the reply reached max_tokens, or filled what was left of the model's context window
            cut_off=response.stop_reason in ("max_tokens", "model_context_window_exceeded"),
        )


CHATS: dict[str, type[Chat]] = {"openai": OpenAIChat, "anthropic": AnthropicChat}
