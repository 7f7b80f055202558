"""The one shape of mail and errors the model reads (peers.mailview), and its import cost."""

from __future__ import annotations

import json
import subprocess
import sys

from peers.mailview import (
    TRUST_CLI,
    TRUST_PEER,
    error_block,
    error_text,
    mail_block,
    mail_item,
    mail_text,
)


def _item(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "message_id": "01abc",
        "from_id": "k3j4h5",
        "from_name": "alice",
        "sender_kind": "peer",
        "sent_at": "2026-12-01T10:51:54.343Z",
        "body": "hold off parser.py",
        "from_summary": "refactoring the parser",
        "from_cwd": "/work/app",
    }
    fields.update(overrides)
    return mail_item(**fields)  # type: ignore[arg-type]


def test_a_message_carries_its_sender_how_to_answer_and_the_trust_note() -> None:
    item = _item(reply_to="01xyz", broadcast=True)
    assert item["verified"] is True
    assert item["reply_with"] == {"to_id": "k3j4h5", "reply_to": "01abc"}
    assert item["trust"] == TRUST_PEER
    text = mail_text(mail_block([item]))
    for part in (
        "1 new message from other AI agent sessions (not from your user):",
        "01abc", "alice (id k3j4h5), a peer session", "[broadcast]", "[answers 01xyz]",
        "working on: refactoring the parser", "in /work/app", "hold off parser.py",
        'send_message(to_id="k3j4h5", reply_to="01abc", message="...")', TRUST_PEER,
    ):  # fmt: skip
        assert part in text, part
    json.dumps(item)  # plain values only


def test_a_command_line_message_cannot_be_answered_and_says_so() -> None:
    item = _item(sender_kind="cli", from_name="cli:ops", from_summary=None, from_cwd=None)
    assert item["verified"] is False and item["reply_with"] is None
    assert item["trust"] == TRUST_CLI
    text = mail_text(mail_block([item]))
    assert "from the command line, unverified" in text and "to answer" not in text
    assert TRUST_CLI in text


def test_counts_and_what_still_waits_are_in_both_renderings() -> None:
    block = mail_block([_item(), _item(message_id="01abd")], more_waiting=3)
    assert block["count"] == 2 and block["more_waiting"] == 3
    assert block["headline"].startswith("2 new messages")
    assert "call check_messages" in block["more_hint"]
    text = mail_text(block)
    assert "2 new messages" in text and "3 more unread messages waiting" in text
    empty = mail_block([])
    assert (empty["count"], mail_text(empty)) == (0, "No new messages.")


def test_a_message_that_may_have_been_pushed_already_says_so() -> None:
    item = _item(also_pushed=True)
    assert "<channel>" in item["also_pushed"]
    assert item["also_pushed"] in mail_text(mail_block([item]))
    assert "also_pushed" not in _item()


def test_an_error_says_what_was_wrong_and_what_is_allowed() -> None:
    block = error_block(
        "peer_not_found", "no peer 'dave'", hint="send to a live one", allowed=["alice", "bob"]
    )
    assert block == {
        "error": "peer_not_found",
        "message": "no peer 'dave'",
        "allowed": ["alice", "bob"],
        "hint": "send to a live one",
    }
    text = error_text("send_message", block)
    assert text.splitlines() == [
        "send_message failed (peer_not_found): no peer 'dave'",
        "Allowed: alice, bob",
        "What to do: send to a live one",
    ]


def test_the_hook_path_modules_import_nothing_heavy() -> None:
    """peers.hook builds mail with these on every agent step: no pydantic, mcp, rich..."""
    code = (
        "import sys; import peers.mailview, peers.text, peers.transcript; "
        "heavy = {'pydantic', 'mcp', 'mcp_types', 'rich', 'structlog', 'redis', 'anyio', "
        "'typer', 'psutil'}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
