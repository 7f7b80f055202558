"""How the CLI names peers and itself: `log --peer` lookups, and this terminal as a peer."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from cli_helpers import HOST, Cli, arun
from typer.testing import Result

from peers.cli import _here
from peers.ids import new_message_id
from peers.models import Message, Peer
from peers.procinfo import process_start_time
from peers.service import PeersService
from peers.transports import create_transport
from peers.transports.base import Transport


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def send_as(cli: Cli, sender: Peer, recipient: Peer, body: str) -> Message:
    message = Message(
        id=new_message_id(),
        namespace=cli.env["PEERS_NAMESPACE"],
        sender_id=sender.id,
        sender_name=sender.name,
        recipient_id=recipient.id,
        body=body,
    )
    return cli.with_transport(lambda t: t.send(message))


def leave_and_be_forgotten(cli: Cli, peer: Peer) -> None:
    async def go(t: Transport) -> None:
        await t.unregister(peer.id)
        # An unnamed peer with no mail waiting is deleted when it leaves.
        assert await t.get_peer(peer.id) is None

    cli.with_transport(go)


def test_log_finds_a_forgotten_peer_in_the_history(any_cli: Cli) -> None:
    gone = any_cli.register()
    bob = any_cli.register(name="bob")
    send_as(any_cli, gone, bob, "written before leaving")
    leave_and_be_forgotten(any_cli, gone)

    for target in (gone.id, gone.id[:6]):
        doc = as_json(any_cli("log", "--json", "--peer", target))
        assert doc["peer"] == gone.id
        assert [m["body"] for m in doc["messages"]] == ["written before leaving"]
    # A name still goes to its holder.
    assert as_json(any_cli("log", "--json", "--peer", "bob"))["peer"] == bob.id


def test_log_finds_a_forgotten_sender_by_its_name(cli: Cli) -> None:
    ghost = cli.register()
    bob = cli.register(name="bob")
    message = Message(
        id=new_message_id(),
        namespace=cli.env["PEERS_NAMESPACE"],
        sender_id=ghost.id,
        sender_name="ghost",
        recipient_id=bob.id,
        body="boo",
    )
    cli.with_transport(lambda t: t.send(message))
    leave_and_be_forgotten(cli, ghost)
    assert as_json(cli("log", "--json", "--peer", "ghost"))["peer"] == ghost.id


def test_log_prefix_matching_two_forgotten_peers_is_ambiguous(cli: Cli) -> None:
    bob = cli.register(name="bob")
    first = cli.register(id="zzgone0001")
    second = cli.register(id="zzgone0002")
    for peer in (first, second):
        send_as(cli, peer, bob, "hi")
        leave_and_be_forgotten(cli, peer)
    result = cli("log", "--peer", "zzgone")
    assert result.exit_code == 2
    assert "matches 2 peers" in result.stderr
    unknown = cli("log", "--peer", "nobody-at-all")
    assert unknown.exit_code == 1
    assert "no peer 'nobody-at-all'" in unknown.stderr


def test_here_is_a_peer_built_by_the_service(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(cli.cwd)

    async def go() -> Peer:
        settings = cli.settings()
        async with create_transport(settings) as transport:
            return await _here(PeersService(transport, settings), "cli-here")

    me = arun(go())
    assert me.id == "cli-here"
    assert me.client == "cli"
    assert (me.host, me.namespace) == (HOST, cli.env["PEERS_NAMESPACE"])
    assert me.cwd == os.getcwd()
    assert (me.pid, me.pid_start) == (os.getpid(), process_start_time(os.getpid()))
