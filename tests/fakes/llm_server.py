"""A real HTTP server on 127.0.0.1 that speaks the OpenAI Chat Completions, the OpenAI
Responses and the Anthropic Messages wire formats, replying from a script. Tests point the
real SDKs at it.

Each scripted step is a dict:
  text     the assistant's reply (default "")
  status   HTTP status (default 200); non-200 sends the provider's error body
  headers  extra response headers (e.g. {"Retry-After": "1"})
  delay    seconds to wait before answering (to exceed a client's timeout)
  usage    (input tokens, output tokens), default (100, 20)
  message  the error body's message (default "fake <status> error")
  cut_off  the reply stopped at the request's output limit, said as each API says it: Chat
           Completions `finish_reason: "length"`; Responses `status: "incomplete"` with
           `incomplete_details: {"reason": "max_output_tokens"}`; Anthropic `stop_reason:
           "max_tokens"`. The output tokens are then the limit asked for. (`text` is the
           reply as far as it got.)
When the script runs out, the last step repeats.

GET .../models (the probe before a run's baseline) answers ``models`` (an HTTP status; by
default 404, as a server without a list of models does) and is recorded in ``listed``, not in
``requests``: it uses up no scripted step.

Like OpenAI's API, the Chat Completions endpoint refuses `max_tokens` for the reasoning
models (o1, o3, o4-mini, ...) and gpt-5 with the real 400 body (they take
`max_completion_tokens`); such a request uses up no scripted step. Codex models (a name
with "codex") are served only by the Responses API: Chat Completions answers them 404 with
OpenAI's message, again without using a step.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from fakes.loopback import Loopback

_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}
_COMPLETION_TOKENS_ONLY = re.compile(r"^(o\d|gpt-5)")  # after a router's "openai/" prefix
# What api.openai.com answers when such a model gets `max_tokens`.
UNSUPPORTED_MAX_TOKENS = {
    "error": {
        "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
        "Use 'max_completion_tokens' instead.",
        "type": "invalid_request_error",
        "param": "max_tokens",
        "code": "unsupported_parameter",
    }
}


# What api.openai.com answers on /v1/chat/completions for a model served only by the Responses API.
RESPONSES_ONLY = {
    "error": {
        "message": "This model is only supported in v1/responses and not in v1/chat/completions.",
        "type": "invalid_request_error",
        "param": "model",
        "code": None,
    }
}


class FakeLLM(Loopback):
    def __init__(self, steps: list[dict[str, Any]], models: int = 404) -> None:
        self.steps = list(steps)
        self.models = models
        self.listed: list[str] = []  # the paths of GET requests (the probe's list of models)
        self.requests: list[dict[str, Any]] = []  # {"path", "body", "at", "headers"}
        self._lock = threading.Lock()
        self._served = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                fake.listed.append(self.path)
                status = fake.models if self.path.rstrip("/").endswith("/models") else 404
                anthropic = "anthropic-version" in {k.lower() for k in self.headers}
                payload = {"object": "list", "data": []} if status == 200 else _error(status, anthropic, None)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                request = {
                    "path": self.path,
                    "body": body,
                    "at": time.monotonic(),
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                }
                anthropic = self.path.endswith("/messages")
                responses = self.path.endswith("/responses")
                chat = not (anthropic or responses)
                responses_only = chat and "codex" in str(body.get("model", ""))
                refused = chat and _refuses_max_tokens(body)
                step = fake._next(request, scripted=not (refused or responses_only))
                time.sleep(step.get("delay", 0))
                status = step.get("status", 200)
                if responses_only:
                    status, payload = 404, RESPONSES_ONLY
                elif refused:
                    status, payload = 400, UNSUPPORTED_MAX_TOKENS
                elif status == 200:
                    payload = (
                        _anthropic(body, step)
                        if anthropic
                        else _response(body, step)
                        if responses
                        else _openai(body, step)
                    )
                else:
                    payload = _error(status, anthropic, step.get("message"))
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in step.get("headers", {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        super().__init__(Handler)

    def _next(self, request: dict[str, Any], scripted: bool = True) -> dict[str, Any]:
        """Record ``request``; return the script's next step (none when not ``scripted``)."""
        with self._lock:
            self.requests.append(request)
            if not scripted:
                return {}
            step = self.steps[min(self._served, len(self.steps) - 1)]
            self._served += 1
            return step


def _refuses_max_tokens(body: dict[str, Any]) -> bool:
    model = str(body.get("model", "")).rsplit("/", 1)[-1]
    return "max_tokens" in body and bool(_COMPLETION_TOKENS_ONLY.match(model))


def _tokens(body: dict[str, Any], step: dict[str, Any]) -> tuple[int, int]:
    """The step's usage; a reply cut off at the output limit used all of it, as the real APIs count."""
    tokens_in, tokens_out = step.get("usage", (100, 20))
    if step.get("cut_off"):
        limits = ("max_completion_tokens", "max_tokens", "max_output_tokens")
        tokens_out = next((int(body[k]) for k in limits if body.get(k)), tokens_out)
    return tokens_in, tokens_out


def _openai(body: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    tokens_in, tokens_out = _tokens(body, step)
    finish = "length" if step.get("cut_off") else "stop"
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": step.get("text", "")}, "finish_reason": finish}
        ],
        "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out, "total_tokens": tokens_in + tokens_out},
    }


def _response(body: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    """A Responses API object: the reply as one output message of output_text content."""
    tokens_in, tokens_out = _tokens(body, step)
    status = "incomplete" if step.get("cut_off") else "completed"
    return {
        "id": "resp_fake",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if step.get("cut_off") else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model", "fake"),
        "output": [
            {
                "type": "message",
                "id": "msg_fake",
                "status": status,  # the message item is incomplete too
                "role": "assistant",
                "content": [{"type": "output_text", "text": step.get("text", ""), "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "store": body.get("store", True),
        "temperature": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "usage": {
            "input_tokens": tokens_in,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": tokens_out,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": tokens_in + tokens_out,
        },
    }


def _anthropic(body: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    tokens_in, tokens_out = _tokens(body, step)
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "fake"),
        "content": [{"type": "text", "text": step.get("text", "")}],
        "stop_reason": "max_tokens" if step.get("cut_off") else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out},
    }


def _error(status: int, anthropic: bool, message: str | None = None) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    message = message or f"fake {status} error"
    if anthropic:
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "code": None, "param": None}}
