"""A scripted model API on loopback, for driving the real agent CLIs in tests.

One :class:`FakeModel` speaks the three wire protocols the clients use (see
/work/shared/CLIENTS.md, "Driving the real CLIs in tests"):

- Anthropic Messages (Claude Code): ``POST /v1/messages`` (SSE when the body
  says ``"stream": true``) and ``/v1/messages/count_tokens``;
- OpenAI Responses with SSE (Codex): ``POST /v1/responses``;
- Gemini (Gemini CLI): ``POST /v1beta/models/M:streamGenerateContent?alt=sse``,
  ``:generateContent`` and ``:countTokens``.

A test gives it a script of turns (:class:`Say`, :class:`Call`, or a function of
the request returning one of them). Each *agent* request (the agent loop's own
call, the one that carries the tools) plays the next turn; when the script is
used up it says "done" so the client ends its turn. *Side* requests (titles,
summaries, token counts, "who speaks next" checks) get a harmless answer and
never consume a turn. Every request is logged with its parsed body, so a test
can read what reached the model's context (:class:`ModelRequest`).

It is a standard-library ``ThreadingHTTPServer`` on a free port: the CLIs run as
blocking subprocesses, so a thread is all the concurrency it needs. SSE bodies
are built whole and sent with a Content-Length: clients parse the event stream
the same way, and keep-alive keeps working.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = ["Call", "FakeModel", "ModelRequest", "Say", "ToolResult", "Turn"]

Api = Literal["anthropic", "openai", "gemini", "other"]


@dataclass(frozen=True)
class Say:
    """A text answer that ends the agent's turn."""

    text: str


@dataclass(frozen=True)
class Call:
    """A call of one tool offered to the model.

    ``tool`` is the bare peers tool name (``whoami``) or a glob (``*send_message``):
    the fake finds the client's own name for it among the tools the request
    offers (``mcp__peers__whoami``, ``mcp_peers_whoami``, or Codex's ``whoami``
    in namespace ``mcp__peers``), or, when the client does not offer it, calls
    the name that client would use, so the test sees what the client does with a
    call of a tool it hid.
    """

    tool: str
    args: dict[str, Any] = field(default_factory=dict)


Turn = Say | Call | Callable[["ModelRequest"], "Say | Call"]


@dataclass(frozen=True)
class ToolResult:
    """One tool result as the model receives it.

    ``text`` is exactly what the client put in the model's context; ``payload``
    is that text without the client's own wrapping (Codex's "Wall time ...
    Output:" preamble, Gemini's ``<untrusted_context>`` tags).
    """

    name: str
    text: str
    is_error: bool = False

    @property
    def payload(self) -> str:
        text = self.text
        match = _CODEX_PREAMBLE.match(text)
        if match:
            text = text[match.end() :]
        match = _UNTRUSTED.fullmatch(text.strip())
        if match:
            text = match.group(1)
        return text

    def json(self) -> Any:
        """The payload parsed as JSON (Claude Code and Codex pass structuredContent as JSON)."""
        return json.loads(self.payload)


_CODEX_PREAMBLE = re.compile(r"(Exit code: -?\d+\n)?Wall time: [0-9.]+ seconds\nOutput:\n")
_UNTRUSTED = re.compile(r"<untrusted_context>\n?(.*?)\n?</untrusted_context>", re.DOTALL)


@dataclass
class ModelRequest:
    """One logged request: where it went, its body, and what the fake answered."""

    api: Api
    path: str
    body: dict[str, Any]
    agent: bool  # the agent loop's request (it offers tools), not a side request
    played: Say | Call | None = None
    called_name: str | None = None
    at: float = field(default_factory=time.time)

    # -- what the request offers ------------------------------------------------

    def tool_names(self) -> list[str]:
        """The tools the model is offered, under the names the client gives them."""
        return _tool_names(self.api, self.body)

    def offers(self, tool: str) -> bool:
        return self.resolve(tool) is not None

    def resolve(self, tool: str) -> str | None:
        """The offered name of a peers tool (``whoami``) or of a glob; None if not offered."""
        pattern = tool if any(ch in tool for ch in "*?[") else f"*{tool}"
        names = self.tool_names()
        exact = [n for n in names if n == tool]
        if exact:
            return exact[0]
        for name in names:
            if fnmatch.fnmatchcase(name, pattern) and _bare(name) == _bare_pattern(tool):
                return name
        for name in names:
            if fnmatch.fnmatchcase(name, pattern):
                return name
        return None

    # -- what reached the model -----------------------------------------------------

    def tool_results(self) -> list[ToolResult]:
        """Every tool result in the request's context, oldest first."""
        return _tool_results(self.api, self.body)

    def context(self) -> str:
        """Everything the model reads in this request as one string (system, messages, results)."""
        return _context_text(self.api, self.body)


class FakeModel:
    """A scripted model server on 127.0.0.1 (use as a context manager)."""

    model_name = "fake-model"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._script: list[Turn] = []
        self.requests: list[ModelRequest] = []
        self.unmatched: list[str] = []  # paths the fake does not know
        self.errors: list[str] = []  # scripted turns that raised
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> FakeModel:
        fake = self

        class Handler(_Handler):
            model = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-model", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeModel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the fake model is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- the script ----------------------------------------------------------------

    def play(self, *turns: Turn) -> None:
        """Replace the script: the next agent requests play these turns in order."""
        with self._lock:
            self._script = list(turns)

    def _next_turn(self, request: ModelRequest) -> Say | Call:
        with self._lock:
            turn = self._script.pop(0) if self._script else Say("done.")
        if isinstance(turn, Say | Call):
            return turn
        try:
            return turn(request)
        except Exception as exc:
            # A failing turn function (an assertion in the test's script) ends the
            # client's turn at once; the test sees it in `errors` (Run.check fails).
            with self._lock:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            return Say(f"fake model: the scripted turn failed: {exc}")

    # -- the log -------------------------------------------------------------------

    def agent_requests(self) -> list[ModelRequest]:
        """The agent loop's requests, in order (side requests left out)."""
        with self._lock:
            return [r for r in self.requests if r.agent]

    def side_requests(self) -> list[ModelRequest]:
        with self._lock:
            return [r for r in self.requests if not r.agent]

    def _log(self, request: ModelRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):04d}"

    def describe(self) -> str:
        """The log in short, for assertion messages."""
        lines = []
        for r in self.requests:
            what = r.played if r.played is not None else "-"
            lines.append(f"{r.api} {r.path} agent={r.agent} played={what}")
        lines += [f"scripted turn failed: {e}" for e in self.errors]
        return "\n".join(lines) or "(no requests)"


# -- HTTP -------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    model: FakeModel
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is the record; stderr stays quiet

    def do_GET(self) -> None:
        self._send_json(404, {"error": {"message": f"no such endpoint: {self.path}"}})
        self.model.unmatched.append(f"GET {self.path}")

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        path = urlsplit(self.path).path
        model = self.model
        if path.endswith("/messages/count_tokens"):
            model._log(ModelRequest("anthropic", path, body, agent=False))
            self._send_json(200, {"input_tokens": _estimate_tokens(body)})
        elif path.endswith("/messages"):
            self._anthropic(path, body)
        elif path.endswith("/responses"):
            self._openai(path, body)
        elif ":countTokens" in path:
            model._log(ModelRequest("gemini", path, body, agent=False))
            self._send_json(200, {"totalTokens": _estimate_tokens(body)})
        elif ":streamGenerateContent" in path or ":generateContent" in path:
            self._gemini(path, body, stream=":streamGenerateContent" in path)
        else:
            model._log(ModelRequest("other", path, body, agent=False))
            model.unmatched.append(f"POST {path}")
            self._send_json(404, {"error": {"message": f"no such endpoint: {path}"}})

    # -- replies ----------------------------------------------------------------------

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_json(self, status: int, doc: Any) -> None:
        self._send(status, "application/json", json.dumps(doc).encode())

    def _send_sse(self, events: list[tuple[str | None, Any]]) -> None:
        chunks = []
        for name, data in events:
            head = f"event: {name}\n" if name else ""
            chunks.append(f"{head}data: {json.dumps(data)}\n\n")
        self._send(200, "text/event-stream", "".join(chunks).encode())

    def _turn(self, request: ModelRequest, client_name: Callable[[str], str]) -> Say | Call:
        turn = self.model._next_turn(request) if request.agent else Say("ok")
        request.played = turn
        if isinstance(turn, Call):
            request.called_name = request.resolve(turn.tool) or client_name(turn.tool)
        self.model._log(request)
        return turn

    # -- Anthropic Messages (Claude Code) ---------------------------------------------

    def _anthropic(self, path: str, body: dict[str, Any]) -> None:
        request = ModelRequest("anthropic", path, body, agent=_anthropic_is_agent(body))
        turn = self._turn(request, lambda t: f"mcp__peers__{_bare_pattern(t)}")
        model = self.model
        msg_id = model.new_id("msg")
        if isinstance(turn, Call):
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": model.new_id("toolu"),
                "name": request.called_name,
                "input": turn.args,
            }
            stop = "tool_use"
        else:
            block = {"type": "text", "text": turn.text}
            stop = "end_turn"
        usage = {"input_tokens": _estimate_tokens(body), "output_tokens": 8}
        message = {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": body.get("model", model.model_name),
            "content": [block],
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            self._send_json(200, message)
            return
        start_block = dict(block, input={}) if block["type"] == "tool_use" else dict(block, text="")
        if block["type"] == "tool_use":
            delta = {"type": "input_json_delta", "partial_json": json.dumps(turn.args)}  # type: ignore[union-attr]
        else:
            delta = {"type": "text_delta", "text": block["text"]}
        self._send_sse(
            [
                ("message_start", {"type": "message_start", "message": dict(message, content=[], stop_reason=None)}),
                ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": start_block}),
                ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 8}}),
                ("message_stop", {"type": "message_stop"}),
            ]
        )  # fmt: skip

    # -- OpenAI Responses (Codex) ---------------------------------------------------------

    def _openai(self, path: str, body: dict[str, Any]) -> None:
        request = ModelRequest("openai", path, body, agent=_openai_is_agent(body))
        turn = self._turn(request, _bare_pattern)
        model = self.model
        resp_id = model.new_id("resp")
        if isinstance(turn, Call):
            name = request.called_name or _bare_pattern(turn.tool)
            namespace = _openai_namespace_of(body, name)
            item: dict[str, Any]
            if _openai_is_custom(body, name):
                # A freeform tool (apply_patch): its input is the raw text, not JSON.
                item = {
                    "type": "custom_tool_call",
                    "id": model.new_id("ctc"),
                    "call_id": model.new_id("call"),
                    "name": name,
                    "input": str(turn.args.get("input", "")),
                    "status": "completed",
                }
            else:
                item = {
                    "type": "function_call",
                    "id": model.new_id("fc"),
                    "call_id": model.new_id("call"),
                    "name": name,
                    "arguments": json.dumps(turn.args),
                    "status": "completed",
                }
                if namespace:
                    item["namespace"] = namespace
        else:
            item = {
                "type": "message",
                "id": model.new_id("msg"),
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": turn.text, "annotations": []}],
            }
        tokens = _estimate_tokens(body)
        usage = {
            "input_tokens": tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 8,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": tokens + 8,
        }
        base = {"id": resp_id, "object": "response", "model": body.get("model", model.model_name)}
        if not body.get("stream", True):
            self._send_json(200, dict(base, status="completed", output=[item], usage=usage))
            return
        self._send_sse(
            [
                ("response.created", {"type": "response.created", "response": dict(base, status="in_progress", output=[])}),
                ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": item}),
                ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}),
                ("response.completed", {"type": "response.completed", "response": dict(base, status="completed", output=[item], usage=usage)}),
            ]
        )  # fmt: skip

    # -- Gemini (Gemini CLI) ----------------------------------------------------------------

    def _gemini(self, path: str, body: dict[str, Any], stream: bool) -> None:
        request = ModelRequest("gemini", path, body, agent=_gemini_is_agent(body))
        if not request.agent and body.get("generationConfig", {}).get("responseMimeType") == (
            "application/json"
        ):
            # Side checks that want JSON (who speaks next, loop detection): "the user".
            request.played = Say("{}")
            self.model._log(request)
            part: dict[str, Any] = {"text": json.dumps(_gemini_json_answer(body))}
        else:
            turn = self._turn(request, lambda t: f"mcp_peers_{_bare_pattern(t)}")
            if isinstance(turn, Call):
                part = {"functionCall": {"name": request.called_name, "args": turn.args}}
            else:
                part = {"text": turn.text}
        answer = {
            "candidates": [
                {"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": {
                "promptTokenCount": _estimate_tokens(body),
                "candidatesTokenCount": 8,
                "totalTokenCount": _estimate_tokens(body) + 8,
            },
            "modelVersion": self.model.model_name,
        }
        if stream:
            self._send_sse([(None, answer)])
        else:
            self._send_json(200, answer)


# -- reading request bodies --------------------------------------------------------------


def _bare(name: str) -> str:
    """The peers tool name inside a client's name for it."""
    for prefix in ("mcp__peers__", "mcp_peers_"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _bare_pattern(tool: str) -> str:
    return _bare(tool.lstrip("*"))


def _estimate_tokens(body: Any) -> int:
    return max(1, len(json.dumps(body)) // 4)


def _anthropic_is_agent(body: dict[str, Any]) -> bool:
    tools = body.get("tools") or []
    return any(isinstance(t, dict) and t.get("name") for t in tools)


def _openai_is_agent(body: dict[str, Any]) -> bool:
    return bool(body.get("tools"))


def _gemini_is_agent(body: dict[str, Any]) -> bool:
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and tool.get("functionDeclarations"):
            return True
    return False


def _openai_tools(body: dict[str, Any]) -> Iterator[tuple[str | None, str]]:
    """(namespace, name) of every function the request offers."""
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict):
            continue
        if tool.get("type") == "namespace" or "tools" in tool:
            space = tool.get("name")
            for inner in tool.get("tools") or []:
                if isinstance(inner, dict) and inner.get("name"):
                    yield space, str(inner["name"])
        elif tool.get("name"):
            yield None, str(tool["name"])


def _openai_is_custom(body: dict[str, Any], name: str) -> bool:
    return any(
        isinstance(t, dict) and t.get("type") == "custom" and t.get("name") == name
        for t in body.get("tools") or []
    )


def _openai_namespace_of(body: dict[str, Any], name: str) -> str | None:
    for space, tool in _openai_tools(body):
        if tool == name and space:
            return space
    return "mcp__peers" if not any(t == name for _, t in _openai_tools(body)) else None


def _tool_names(api: Api, body: dict[str, Any]) -> list[str]:
    if api == "anthropic":
        names = [str(t.get("name")) for t in body.get("tools") or [] if isinstance(t, dict)]
        # Claude Code defers MCP tools behind ToolSearch and lists their names in a
        # system message; a direct call of such a name works.
        deferred = re.findall(r"mcp__peers__[A-Za-z0-9_]+", _context_text(api, body))
        return names + [n for n in dict.fromkeys(deferred) if n not in names]
    if api == "openai":
        return [name for _, name in _openai_tools(body)]
    if api == "gemini":
        return [
            str(decl.get("name"))
            for tool in body.get("tools") or []
            if isinstance(tool, dict)
            for decl in tool.get("functionDeclarations") or []
            if isinstance(decl, dict)
        ]
    return []


def _text_of(content: Any) -> str:
    """The text inside an Anthropic or OpenAI content value (string or list of blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict):
                if "text" in block:
                    parts.append(str(block["text"]))
                elif "content" in block:
                    parts.append(_text_of(block["content"]))
                elif "output" in block:
                    parts.append(_text_of(block["output"]))
            elif isinstance(block, str):
                parts.append(block)
        return "".join(parts)
    if isinstance(content, dict):
        return _text_of([content])
    return "" if content is None else json.dumps(content)


def _tool_results(api: Api, body: dict[str, Any]) -> list[ToolResult]:
    results: list[ToolResult] = []
    if api == "anthropic":
        names: dict[str, str] = {}
        for message in body.get("messages") or []:
            content = message.get("content")
            if not isinstance(content, list):
                continue
            for block in content:
                if not isinstance(block, dict):
                    continue
                if block.get("type") == "tool_use":
                    names[str(block.get("id"))] = str(block.get("name"))
                elif block.get("type") == "tool_result":
                    name = names.get(str(block.get("tool_use_id")), "?")
                    text = _text_of(block.get("content"))
                    results.append(ToolResult(name, text, bool(block.get("is_error"))))
    elif api == "openai":
        names = {}
        for item in body.get("input") or []:
            if not isinstance(item, dict):
                continue
            kind = item.get("type")
            if kind in ("function_call", "custom_tool_call", "mcp_call"):
                names[str(item.get("call_id"))] = str(item.get("name"))
            elif kind in ("function_call_output", "custom_tool_call_output", "mcp_call_output"):
                name = names.get(str(item.get("call_id")), "?")
                output = item.get("output")
                text = _text_of(output) if not isinstance(output, str) else output
                results.append(ToolResult(name, text))
    elif api == "gemini":
        for content in body.get("contents") or []:
            for part in content.get("parts") or []:
                response = part.get("functionResponse") if isinstance(part, dict) else None
                if isinstance(response, dict):
                    payload = response.get("response")
                    if isinstance(payload, dict) and set(payload) <= {"output", "error"}:
                        text = _text_of(payload.get("output", payload.get("error")))
                        error = "error" in payload
                    else:
                        text, error = json.dumps(payload), False
                    results.append(ToolResult(str(response.get("name")), text, error))
    return results


def _context_text(api: Api, body: dict[str, Any]) -> str:
    """Every piece of text in a request, joined (system, messages, tool results)."""
    pieces: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str):
            pieces.append(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                if key in ("tools", "input_schema", "parameters", "inputSchema"):
                    continue  # tool declarations are not context
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for key in ("system", "instructions", "systemInstruction", "messages", "input", "contents"):
        walk(body.get(key))
    return "\n".join(pieces)


def _gemini_json_answer(body: dict[str, Any]) -> Any:
    """A harmless answer to a Gemini side check that asks for JSON, shaped by its schema.

    Seen: the model router's complexity check, the "who speaks next" check
    (answered "user", so the turn ends as scripted).
    """
    config = body.get("generationConfig") or {}
    schema = config.get("responseJsonSchema") or config.get("responseSchema") or {}
    return _from_schema(schema, "")


def _from_schema(schema: Any, key: str) -> Any:
    if not isinstance(schema, dict):
        return None
    kind = str(schema.get("type", "object")).lower()
    if schema.get("enum"):
        values = list(schema["enum"])
        return "user" if "user" in values else values[0]
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: _from_schema(sub, name) for name, sub in props.items()}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return False
    return "user" if key == "next_speaker" else "simple"
