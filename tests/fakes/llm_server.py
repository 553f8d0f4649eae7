"""A real HTTP server on 127.0.0.1 that speaks the OpenAI Chat Completions and the
Anthropic Messages wire formats, replying from a script. Tests point the real SDKs at it.

Each scripted step is a dict:
  text     the assistant's reply (default "")
  status   HTTP status (default 200); non-200 sends the provider's error body
  headers  extra response headers (e.g. {"Retry-After": "1"})
  delay    seconds to wait before answering (to exceed a client's timeout)
  usage    (input tokens, output tokens), default (100, 20)
When the script runs out, the last step repeats.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}


class FakeLLM:
    def __init__(self, steps: list[dict[str, Any]]) -> None:
        self.steps = list(steps)
        self.requests: list[dict[str, Any]] = []  # {"path", "body", "at", "headers"}
        self._lock = threading.Lock()
        self._served = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                step = fake._next(
                    {
                        "path": self.path,
                        "body": body,
                        "at": time.monotonic(),
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                    }
                )
                time.sleep(step.get("delay", 0))
                status = step.get("status", 200)
                anthropic = self.path.endswith("/messages")
                if status == 200:
                    payload = _anthropic(body, step) if anthropic else _openai(body, step)
                else:
                    payload = _error(status, anthropic)
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

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _next(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.requests.append(request)
            step = self.steps[min(self._served, len(self.steps) - 1)]
            self._served += 1
            return step

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeLLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _openai(body: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    tokens_in, tokens_out = step.get("usage", (100, 20))
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": step.get("text", "")}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out, "total_tokens": tokens_in + tokens_out},
    }


def _anthropic(body: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    tokens_in, tokens_out = step.get("usage", (100, 20))
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "fake"),
        "content": [{"type": "text", "text": step.get("text", "")}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out},
    }


def _error(status: int, anthropic: bool) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    message = f"fake {status} error"
    if anthropic:
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "code": None, "param": None}}
