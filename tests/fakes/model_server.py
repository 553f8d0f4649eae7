"""A scripted coding model behind a real HTTP server on 127.0.0.1, for the real coding CLIs.

It speaks two wire formats and drives each program through its own tools:

- the Anthropic Messages API as Claude Code and opencode use it (``POST /v1/messages``, streamed as
  server-sent events when asked, ``count_tokens`` too): it reads the task's file with
  ``Read``, changes one line with ``Edit``, then ends its turn with a ``Hypothesis:`` line.
  Requests that offer no edit tool (the program's side calls: titles, summaries) get a
  short text reply;
- Google's generateContent API as Gemini CLI uses it (``:streamGenerateContent?alt=sse``):
  ``read_file``, then ``replace``, then the hypothesis;
- OpenAI's Responses API as Codex uses it (``POST /v1/responses``, streamed): it calls
  Codex's ``exec_command`` tool with an ``apply_patch`` patch (which Codex applies itself,
  as a file change), then answers with the hypothesis once the tool's output comes back.

The file is found in the working directory the program states in its request ("Primary
working directory: ..."): each experiment runs in a worktree of its own.

``Script`` says what to change and how to fail: ``error`` (an HTTP status) answers every
request that offers tools with the provider's error body, as an API outage mid-proposal
would; ``hang`` holds each such request open for that many seconds.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from fakes.loopback import Loopback

_WORKDIR = re.compile(r"[Ww]orking directory: ([^\s\\\"]+)")


@dataclass
class Script:
    file: str = "train.py"  # relative to the program's working directory
    old: str = "X = 10"
    new: str = "X = 4"
    hypothesis: str = "move X from 10 to 4"
    error: int = 0  # answer requests that offer tools with this HTTP status
    hang: float = 0.0  # or hold them open this long
    usage: tuple[int, int] = (300, 40)  # input, output tokens of each reply


class ModelServer(Loopback):
    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:  # a connectivity probe
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server._lock:
                    server.requests.append({"path": self.path, "body": body})
                if "count_tokens" in self.path:
                    self._json(200, {"input_tokens": server.script.usage[0]})
                elif self.path.split("?")[0].endswith("/v1/messages"):
                    self._messages(body)
                elif self.path.split("?")[0].endswith("/responses"):
                    self._responses(body)
                elif "generatecontent" in self.path.lower():  # generateContent, streamGenerateContent
                    self._generate(body)
                else:
                    self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}})

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _messages(self, body: dict[str, Any]) -> None:
                script = server.script
                tools = {t.get("name") for t in body.get("tools", [])}
                editing = bool(tools & {"Edit", "edit"})  # Claude Code's tools, opencode's
                if editing and script.hang:
                    time.sleep(script.hang)
                if editing and script.error:
                    kind = {401: "authentication_error", 429: "rate_limit_error"}.get(script.error, "api_error")
                    message = f"scripted {script.error} error from the model server"
                    self._json(script.error, {"type": "error", "error": {"type": kind, "message": message}})
                    return
                blocks, stop = server.reply(body, tools)
                model = body.get("model", "claude")
                if body.get("stream"):
                    self._stream(model, blocks, stop)
                    return
                content = [
                    b
                    if b["type"] == "text"
                    else {"type": "tool_use", "id": b["id"], "name": b["name"], "input": b["input"]}
                    for b in blocks
                ]
                tokens_in, tokens_out = script.usage
                self._json(200, {"id": "msg_scripted", "type": "message", "role": "assistant", "model": model,
                                 "content": content, "stop_reason": stop, "stop_sequence": None,
                                 "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out}})  # fmt: skip

            def _responses(self, body: dict[str, Any]) -> None:
                script = server.script
                if script.hang:
                    time.sleep(script.hang)
                if script.error:
                    message = f"scripted {script.error} error from the model server"
                    self._json(script.error, {"error": {"message": message, "type": "invalid_request_error",
                                                        "param": None, "code": None}})  # fmt: skip
                    return
                done = any(
                    isinstance(i, dict) and i.get("type") == "function_call_output" for i in body.get("input", [])
                )
                if not done:
                    patch = (f"*** Begin Patch\n*** Update File: {script.file}\n@@\n-{script.old}\n+{script.new}\n"
                             "*** End Patch")  # fmt: skip
                    arguments = json.dumps({"cmd": f"apply_patch <<'PATCH'\n{patch}\nPATCH\n"})
                    item: dict[str, Any] = {"type": "function_call", "id": "fc_scripted", "call_id": "call_scripted",
                                            "name": "exec_command", "arguments": arguments, "status": "completed"}  # fmt: skip
                else:
                    text = f"I changed `{script.old}` to `{script.new}`.\n\nHypothesis: {script.hypothesis}"
                    item = {"type": "message", "id": "msg_scripted", "role": "assistant", "status": "completed",
                            "content": [{"type": "output_text", "text": text, "annotations": []}]}  # fmt: skip
                self._events(_response_events(body.get("model", "gpt"), item, script.usage))

            def _generate(self, body: dict[str, Any]) -> None:
                script = server.script
                tools = {f.get("name") for t in body.get("tools", []) for f in t.get("functionDeclarations", [])}
                if "replace" in tools and script.hang:
                    time.sleep(script.hang)
                if "replace" in tools and script.error:
                    message = f"scripted {script.error} error from the model server"
                    self._json(script.error, {"error": {"code": script.error, "message": message,
                                                        "status": "INVALID_ARGUMENT"}})  # fmt: skip
                    return
                answered = sum(
                    1 for c in body.get("contents", []) for p in c.get("parts", []) if "functionResponse" in p
                )
                if "replace" not in tools:
                    parts: list[dict[str, Any]] = [{"text": "Editing one constant."}]
                elif answered == 0:
                    parts = [{"functionCall": {"name": "read_file", "args": {"file_path": script.file}}}]
                elif answered == 1:
                    change = {"file_path": script.file, "old_string": script.old, "new_string": script.new,
                              "instruction": f"Change {script.old} to {script.new}."}  # fmt: skip
                    parts = [{"functionCall": {"name": "replace", "args": change}}]
                else:
                    parts = [
                        {"text": f"I changed `{script.old}` to `{script.new}`.\n\nHypothesis: {script.hypothesis}"}
                    ]
                tokens_in, tokens_out = script.usage
                reply = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
                         "usageMetadata": {"promptTokenCount": tokens_in, "candidatesTokenCount": tokens_out,
                                           "totalTokenCount": tokens_in + tokens_out},
                         "modelVersion": "scripted"}  # fmt: skip
                if "alt=sse" not in self.path:
                    self._json(200, reply)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(f"data: {json.dumps(reply)}\r\n\r\n".encode())
                self.wfile.flush()
                self.close_connection = True

            def _events(self, events: list[tuple[str, dict[str, Any]]]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                for name, data in events:
                    self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
                    self.wfile.flush()
                self.close_connection = True

            def _stream(self, model: str, blocks: list[dict[str, Any]], stop: str) -> None:
                tokens_in, tokens_out = server.script.usage
                events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": {
                    "id": "msg_scripted", "type": "message", "role": "assistant", "model": model, "content": [],
                    "stop_reason": None, "stop_sequence": None,
                    "usage": {"input_tokens": tokens_in, "output_tokens": 1}}})]  # fmt: skip
                for i, block in enumerate(blocks):
                    if block["type"] == "text":
                        start = {"type": "text", "text": ""}
                        delta = {"type": "text_delta", "text": block["text"]}
                    else:
                        start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                        delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
                    events += [
                        ("content_block_start", {"type": "content_block_start", "index": i, "content_block": start}),
                        ("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}),
                        ("content_block_stop", {"type": "content_block_stop", "index": i}),
                    ]
                events += [
                    (
                        "message_delta",
                        {
                            "type": "message_delta",
                            "delta": {"stop_reason": stop, "stop_sequence": None},
                            "usage": {"output_tokens": tokens_out},
                        },
                    ),
                    ("message_stop", {"type": "message_stop"}),
                ]
                self._events(events)

        super().__init__(Handler)

    def reply(self, body: dict[str, Any], tools: set[Any]) -> tuple[list[dict[str, Any]], str]:
        """The next turn: read the file, edit it, then state the hypothesis (by how many tool results came back).

        In Claude Code's tools (``Read``, ``Edit``: file_path, old_string, new_string) or opencode's
        (``read``, ``edit``: filePath, oldString, newString), whichever the request offers.
        """
        script = self.script
        if "Edit" in tools:
            read, change, keys = "Read", "Edit", ("file_path", "old_string", "new_string")
        elif "edit" in tools:
            read, change, keys = "read", "edit", ("filePath", "oldString", "newString")
        else:
            return [{"type": "text", "text": "Editing one constant."}], "end_turn"
        messages = body.get("messages", [])
        results = sum(
            1
            for m in messages
            if isinstance(m.get("content"), list)
            for c in m["content"]
            if isinstance(c, dict) and c.get("type") == "tool_result"
        )
        found = _WORKDIR.search(json.dumps(body))
        path = f"{found.group(1) if found else '.'}/{script.file}"
        if results == 0:
            return [{"type": "tool_use", "id": "toolu_read", "name": read, "input": {keys[0]: path}}], "tool_use"
        if results == 1:
            edit = dict(zip(keys, (path, script.old, script.new), strict=True))
            return [{"type": "tool_use", "id": "toolu_edit", "name": change, "input": edit}], "tool_use"
        text = f"I changed `{script.old}` to `{script.new}`.\n\nHypothesis: {script.hypothesis}"
        return [{"type": "text", "text": text}], "end_turn"


def _response_events(model: str, item: dict[str, Any], usage: tuple[int, int]) -> list[tuple[str, dict[str, Any]]]:
    """One Responses API turn holding ``item``, as the stream of events the API sends."""
    events: list[tuple[str, dict[str, Any]]] = []

    def event(kind: str, **data: Any) -> None:
        events.append((kind, {"type": kind, "sequence_number": len(events), **data}))

    response = {"id": "resp_scripted", "object": "response", "created_at": int(time.time()), "model": model,
                "status": "in_progress", "output": []}  # fmt: skip
    event("response.created", response=response)
    if item["type"] == "function_call":
        event("response.output_item.added", output_index=0, item={**item, "arguments": "", "status": "in_progress"})
        event("response.function_call_arguments.delta", item_id=item["id"], output_index=0, delta=item["arguments"])
        event("response.function_call_arguments.done", item_id=item["id"], output_index=0, arguments=item["arguments"])
    else:
        part = item["content"][0]
        event("response.output_item.added", output_index=0, item={**item, "content": [], "status": "in_progress"})
        event("response.content_part.added", item_id=item["id"], output_index=0, content_index=0,
              part={**part, "text": ""})  # fmt: skip
        event("response.output_text.delta", item_id=item["id"], output_index=0, content_index=0, delta=part["text"])
        event("response.output_text.done", item_id=item["id"], output_index=0, content_index=0, text=part["text"])
        event("response.content_part.done", item_id=item["id"], output_index=0, content_index=0, part=part)
    event("response.output_item.done", output_index=0, item=item)
    tokens_in, tokens_out = usage
    event("response.completed", response={**response, "status": "completed", "output": [item], "usage": {
        "input_tokens": tokens_in, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": tokens_out,
        "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": tokens_in + tokens_out}})  # fmt: skip
    return events
