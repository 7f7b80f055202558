"""The send path reuses whom a target named for a moment: what a sender sees stays right."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import pytest

from peers import constants as c
from peers.config import load_settings
from peers.errors import PeerNotFound
from peers.models import Peer
from peers.procinfo import process_start_time
from peers.service import PeersService, Sender
from peers.transports.base import Transport

pytestmark = pytest.mark.anyio


@pytest.fixture
def service(transport: Transport) -> PeersService:
    settings = load_settings(
        url="sqlite:///unused.db", namespace=transport.namespace, host=socket.gethostname(),
        rate_limit=1000,
    )  # fmt: skip
    return PeersService(transport, settings)


@pytest.fixture
def new(service: PeersService) -> Callable[..., Any]:
    async def make(name: str | None = None) -> Peer:
        pid = os.getpid()
        peer = service.new_peer(
            name=name, cwd="/work/app", pid=pid, pid_start=process_start_time(pid)
        )
        return await service.register(peer)

    return make


async def test_mail_to_a_name_whose_session_left_meanwhile_waits_for_the_next_one(
    service: PeersService, transport: Transport, new: Callable[..., Any]
) -> None:
    alice, bob = await new("alice"), await new("bob")
    await service.send(Sender.of(alice), "bob", "first")
    await transport.unregister(bob.id)  # within the reuse window
    second = await service.send(Sender.of(alice), "bob", "second")
    assert second.message.recipient_id == bob.id
    successor = await new("bob")
    # The successor inherits both; the transport followed the name, not the cache.
    assert [m.body for m in await transport.fetch(successor.id)] == ["first", "second"]


async def test_a_session_that_took_the_name_is_the_recipient_reported(
    service: PeersService, transport: Transport, new: Callable[..., Any]
) -> None:
    alice, bob = await new("alice"), await new("bob")
    assert (await service.send(Sender.of(alice), "bob", "one")).recipient.id == bob.id
    await transport.unregister(bob.id)
    successor = await new("bob")
    result = await service.send(Sender.of(alice), "bob", "two")
    assert result.recipient.id == successor.id
    assert [m.body for m in await transport.fetch(successor.id)] == ["one", "two"]


async def test_a_recipient_gone_for_good_is_an_error_and_is_looked_up_again(
    service: PeersService, transport: Transport, new: Callable[..., Any]
) -> None:
    alice, anon = await new("alice"), await new()
    sent = await service.send(Sender.of(alice), anon.id, "hello")
    await transport.ack(anon.id, [sent.message.id])
    await transport.unregister(anon.id)  # unnamed, no mail: forgotten by the store
    for _ in range(2):  # the reused record fails at the store, then the lookup says why
        with pytest.raises(PeerNotFound):
            await service.send(Sender.of(alice), anon.id, "anyone there?")
    assert service._recipients == {}


async def test_after_the_window_the_target_is_resolved_again(
    service: PeersService, transport: Transport, new: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(c, "RECIPIENT_CACHE_SECONDS", 0.0)
    alice, bob = await new("alice"), await new("bob")
    assert (await service.send(Sender.of(alice), "bob", "one")).delivery == "poll"
    await transport.unregister(bob.id)
    # Read again: the offline record says the mail waits for bob's next session.
    assert (await service.send(Sender.of(alice), "bob", "two")).delivery == "queued"
