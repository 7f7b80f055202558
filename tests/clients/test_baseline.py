"""Baseline with the real CLIs: peers tools run, their results reach the model, and mail
sent by another session reaches the model through a peers tool result (the poll path).

These pass on today's code. Each client runs with the peers entry `peers install`
writes today plus the tier's extras (client_config.TIER_EXTRAS) and, for Codex,
without its sandbox: the scenario files check what still goes wrong without them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from client_drivers import Driver, Store
from clients_common import CLIENTS, JSON_CLIENTS, result_of, send_then, times_seen
from fake_model import Call, FakeModel, ModelRequest, Say


@pytest.mark.parametrize("client", CLIENTS)
def test_whoami_and_list_peers_results_reach_the_next_model_request(
    client: str, make_driver: Callable[..., Driver], fake_model: FakeModel, store: Store
) -> None:
    driver = make_driver(client)
    live: dict[str, Any] = {}

    def look(request: ModelRequest) -> Call:
        live["me"] = store.only_peer()  # while the session runs
        return Call("list_peers")

    fake_model.play(Call("whoami"), look, Say("done"))
    run = driver.run("Who am I among the peers, and who else is there?")

    requests = fake_model.agent_requests()
    assert len(requests) == 3, run.describe()
    assert requests[0].offers("whoami") and requests[0].offers("list_peers"), requests[
        0
    ].tool_names()
    me = live["me"]
    assert me["client"] == {"claude": "claude-code"}.get(client, client)

    whoami = result_of(requests[1], "whoami")
    assert not whoami.is_error, whoami.text
    assert me["id"] in whoami.payload
    listed = result_of(requests[2], "list_peers")
    assert not listed.is_error, listed.text
    if client in JSON_CLIENTS:
        # Claude Code and Codex show the model structuredContent as JSON.
        assert whoami.json()["id"] == me["id"]
        assert listed.json()["scope"] == "machine" and listed.json()["peers"] == []
    else:
        # Gemini CLI shows the text, wrapped as untrusted context.
        assert "<untrusted_context>" in whoami.text
        assert "No other live peers" in listed.payload


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=pytest.mark.redis_real)])
@pytest.mark.parametrize("client", CLIENTS)
def test_a_message_from_another_session_reaches_the_model_with_the_next_peers_result(
    client: str,
    backend: str,
    make_driver: Callable[..., Driver],
    fake_model: FakeModel,
    request: pytest.FixtureRequest,
) -> None:
    store: Store = request.getfixturevalue("store" if backend == "sqlite" else "redis_store")
    driver = make_driver(client, store=store)
    body = f"hold off on auth.ts for {client}, I am rewriting it"
    box: dict[str, Any] = {}
    fake_model.play(send_then(store, body, Call("list_peers"), box), Call("whoami"), Say("done"))
    run = driver.run("Do your work; check on your peers.")

    requests = fake_model.agent_requests()
    assert len(requests) == 3, run.describe()
    assert body not in requests[0].context()  # sent while the model was thinking
    listed = result_of(requests[1], "list_peers")
    assert body in listed.payload, listed.text
    sent = box["sent"]["message"]
    if client in JSON_CLIENTS:
        (message,) = listed.json()["new_mail"]["messages"]
        assert message["message_id"] == sent["id"] and message["body"] == body
        assert message["verified"] is False  # typed on the command line
    else:
        assert "1 new message" in listed.payload
        assert "from the command line, unverified" in listed.payload
    # Shown once: the next peers result does not carry it again.
    assert body not in result_of(requests[2], "whoami").payload
    assert times_seen(fake_model, body) == 1
    assert store.state_of(sent["id"]) == "delivered"
