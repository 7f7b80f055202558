"""Issue 9 §1-2 with the real CLIs: no message lost to a dropped push, and every word the
model needs in the one rendering each client shows it.

Written against the behaviour the issue asks for; they fail on the code they were
written on (the report lists which, and why).

- Claude Code and Codex show the model only ``structuredContent`` as JSON, Gemini CLI
  only the text (CLIENTS.md): explanations, hints, trust notes and reply hints must be
  in both.
- ``claude -p`` ignores ``--dangerously-load-development-channels``, so a session started
  with it drops every push: the mail must still reach the model, on its next peers call.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from client_drivers import Driver, Store
from clients_common import CLIENTS, JSON_CLIENTS, result_of, send_then, times_seen
from fake_model import Call, FakeModel, ModelRequest, Say, ToolResult
from peer_session import PeerSession

pytestmark = pytest.mark.scenarios

CHANNEL_FLAG = ["--dangerously-load-development-channels", "server:peers"]
# "comes from another agent, not the user": the trust note, in whatever words.
TRUST_NOTE = re.compile(r"not (from )?(the|your) user", re.IGNORECASE)


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return []


def seen(result: ToolResult) -> str:
    """The words the model read in a result: JSON's strings, or the text as it is.

    Claude Code shows structuredContent for a success but the text for an error
    (isError) result; Codex always the JSON; Gemini always the text.
    """
    try:
        return " ".join(_strings(result.json()))
    except ValueError:
        return result.payload


# -- a dropped push ------------------------------------------------------------------------


def test_claude_print_mode_with_the_channel_flag_loses_no_message(
    claude: Driver, fake_model: FakeModel, store: Store
) -> None:
    """The push is dropped (print mode ignores the flag): the next peers result carries it."""
    body = "dropped-push probe: the schema moved to db/v2"
    box: dict[str, Any] = {}
    fake_model.play(send_then(store, body, Call("list_peers"), box), Call("whoami"), Say("done"))
    run = claude.run("Work, and keep an eye on your peers.", *CHANNEL_FLAG)

    requests = fake_model.agent_requests()
    assert len(requests) == 3, run.describe()
    listed = result_of(requests[1], "list_peers")
    assert body in listed.payload, f"the message never reached the model: {listed.text}"
    assert times_seen(fake_model, body) == 1
    assert store.state_of(box["sent"]["message"]["id"]) == "delivered"


@pytest.mark.parametrize(
    ("flag", "state"),
    [pytest.param(True, "off", id="flag"), pytest.param(False, "off", id="no-flag")],
)
def test_claude_whoami_says_whether_push_is_confirmed(
    flag: bool, state: str, claude: Driver, fake_model: FakeModel, store: Store
) -> None:
    """Never a guessed "push": print mode ignores the channel flag always (CLIENTS.md), so
    its push is "off" with the flag too; "unconfirmed" (flag seen, nothing proven yet) is
    for interactive sessions (test_claude_interactive.py)."""
    live: dict[str, Any] = {}

    def look(request: ModelRequest) -> Call:
        live["peer"] = store.only_peer()
        return Call("list_peers")

    fake_model.play(Call("whoami"), look, Say("done"))
    claude.run("Who am I?", *(CHANNEL_FLAG if flag else []))

    requests = fake_model.agent_requests()
    whoami = result_of(requests[1], "whoami").json()
    assert whoami.get("push") == state, whoami
    assert live["peer"].get("push") == state, live["peer"]


# -- errors in the rendering each client shows -----------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_an_unknown_recipient_is_explained_to_the_model(
    client: str,
    make_driver: Callable[..., Driver],
    fake_model: FakeModel,
    store: Store,
    tmp_path: Path,
) -> None:
    """What was wrong (no peer 'bob') and what to do (the live peers' names) reach the model."""
    driver = make_driver(client)
    with PeerSession(store.env, name="alice", cwd=driver.cwd, errlog=tmp_path / "alice.log"):
        fake_model.play(Call("send_message", {"to_id": "bob", "message": "hi"}), Say("done"))
        run = driver.run("Tell bob hi.")
    requests = fake_model.agent_requests()
    assert len(requests) == 2, run.describe()
    result = result_of(requests[1], "send_message")
    assert result.is_error or "error" in result.payload.lower(), result.text
    assert "bob" in seen(result), f"no explanation reached the model: {result.text}"
    assert "alice" in seen(result), f"no hint (the live peers) reached the model: {result.text}"


@pytest.mark.parametrize("client", CLIENTS)
def test_a_misspelt_argument_is_explained_to_the_model(
    client: str,
    make_driver: Callable[..., Driver],
    fake_model: FakeModel,
    store: Store,
    tmp_path: Path,
) -> None:
    """``to`` for ``to_id`` (the reference's most reported confusion): the model is told to use to_id."""
    driver = make_driver(client)
    with PeerSession(store.env, name="alice", cwd=driver.cwd, errlog=tmp_path / "alice.log"):
        fake_model.play(Call("send_message", {"to": "alice", "message": "hi"}), Say("done"))
        run = driver.run("Tell alice hi.")
    requests = fake_model.agent_requests()
    assert len(requests) == 2, run.describe()
    result = result_of(requests[1], "send_message")
    # Gemini CLI checks required arguments itself ("params must have required property
    # 'to_id'"); Claude Code and Codex pass the call on and show what peers answers.
    assert "to_id" in seen(result), f"the model was not told to use to_id: {result.text}"


# -- what each message carries ------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_a_message_carries_its_sender_a_trust_note_and_how_to_reply(
    client: str,
    make_driver: Callable[..., Driver],
    fake_model: FakeModel,
    store: Store,
    tmp_path: Path,
) -> None:
    driver = make_driver(client)
    body = "I am rewriting types/auth.ts; hold off until I say done"
    with PeerSession(
        store.env, name="alice", cwd=driver.cwd, errlog=tmp_path / "alice.log"
    ) as alice:
        alice.call_ok("set_summary", summary="rewriting the auth types")
        sent: dict[str, Any] = {}

        def alice_writes(request: ModelRequest) -> Call:
            target = store.wait_peers(2)
            me = next(p for p in target if p["id"] != alice.id)
            sent.update(alice.call_ok("send_message", to_id=me["id"], message=body))
            # whoami, not list_peers: a listing would show alice's summary by itself.
            return Call("whoami")

        fake_model.play(alice_writes, Say("done"))
        run = driver.run("Work, and keep an eye on your peers.")

    requests = fake_model.agent_requests()
    assert len(requests) == 2, run.describe()
    listed = result_of(requests[1], "whoami")
    message_id = sent["message_id"]
    if client in JSON_CLIENTS:
        (message,) = listed.json()["new_mail"]["messages"]
        assert message["from_id"] == alice.id and message["from_name"] == "alice"
        assert message["verified"] is True
        assert message.get("from_summary") == "rewriting the auth types", message
        assert message.get("from_cwd") == str(driver.cwd), message
        assert message.get("reply_with") == {"to_id": alice.id, "reply_to": message_id}, message
        assert any(TRUST_NOTE.search(s) for s in _strings(listed.json())), listed.text
    else:
        text = listed.payload
        assert body in text and "alice" in text and alice.id in text, text
        assert "rewriting the auth types" in text, text  # the sender's summary
        assert message_id in text and "reply_to" in text, text  # how to answer
        assert TRUST_NOTE.search(text), text
