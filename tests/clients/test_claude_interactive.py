"""Issue 9 §1 with an interactive Claude Code in tmux: a push the client drops is not lost.

Offline, Claude Code's channel gate is off: a session started with
``--dangerously-load-development-channels server:peers`` says "Channels are not
currently available" and drops every ``notifications/claude/channel``. A message
sent to it must still reach the model, on its next peers tool call, once.

Written against the behaviour the issue asks for; it fails on the code it was
written on (the report says why).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from client_drivers import ClaudeDriver, Driver, Store
from clients_common import result_of, times_seen
from fake_model import Call, FakeModel, Say

pytestmark = pytest.mark.scenarios

CHANNEL_FLAG = ("--dangerously-load-development-channels", "server:peers")


def test_a_message_to_an_interactive_session_whose_channel_is_off_reaches_the_model(
    claude: Driver, claude_tmux: Callable[..., Any], fake_model: FakeModel, store: Store
) -> None:
    assert isinstance(claude, ClaudeDriver)
    session = claude_tmux(*CHANNEL_FLAG)
    session.wait_screen("Channels are not currently available")
    me = store.only_peer()

    body = "interactive probe: I renamed the users table to accounts"
    sent = store.send(me["id"], body)["message"]
    # A working channel would start a turn now; this one drops the push. The next
    # prompt's peers call must carry the message.
    fake_model.play(Call("list_peers"), Say("finished the probe"))
    session.type("check on your peers")
    session.wait_screen("finished the probe")

    requests = fake_model.agent_requests()
    assert len(requests) == 2, fake_model.describe()
    assert body not in requests[0].context(), "the push reached the model after all"
    listed = result_of(requests[1], "list_peers")
    assert body in listed.payload, f"the dropped push was lost: {listed.text}"
    assert times_seen(fake_model, body) == 1
    assert store.state_of(sent["id"]) == "delivered"
