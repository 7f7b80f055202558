"""Small helpers the real-client tests share: finding results, counting what the model saw."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from client_drivers import Store
from fake_model import Call, FakeModel, ModelRequest, Say, ToolResult

__all__ = [
    "CLIENTS",
    "JSON_CLIENTS",
    "result_of",
    "send_then",
    "times_seen",
]

CLIENTS = ["claude", "codex", "gemini"]
# Clients whose model reads structuredContent as JSON (CLIENTS.md, "What the model reads").
JSON_CLIENTS = {"claude", "codex"}


def result_of(request: ModelRequest, tool: str) -> ToolResult:
    """The last result of ``tool`` (bare peers name, or a client's own name) in a request."""
    bare = tool.split("__")[-1] if tool.startswith("mcp__") else tool
    for result in reversed(request.tool_results()):
        name = result.name
        if name in (tool, bare) or name.endswith(f"__{bare}") or name.endswith(f"_peers_{bare}"):
            return result
    raise AssertionError(
        f"no {tool} result reached the model; results: "
        f"{[(r.name, r.text[:200]) for r in request.tool_results()]}"
    )


def times_seen(fake: FakeModel, text: str) -> int:
    """How often ``text`` stands in the model's last context (each copy the model was shown)."""
    requests = fake.agent_requests()
    return requests[-1].context().count(text) if requests else 0


def send_then(
    store: Store, body: str, then: Say | Call, box: dict[str, Any], to: str | None = None
) -> Callable[[ModelRequest], Say | Call]:
    """A turn: another session sends ``body`` to this client's session, then ``then`` plays."""

    def turn(request: ModelRequest) -> Say | Call:
        target = to or store.only_peer()["id"]
        box["target"] = target
        box["sent"] = store.send(target, body)
        return then

    return turn
