"""The session's delivery rules: a push that fails is retried, never skipped or doubled."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from peers.config import load_settings
from peers.errors import PeersError
from peers.models import Message, Peer, ReceiveMode
from peers.procinfo import process_start_time
from peers.service import PeersService, Sender
from peers.session import Session
from peers.transports import create_transport

pytestmark = pytest.mark.anyio


class PipeClosed(PeersError):
    """Stands for the server's DeliveryFailed: the notification was not written."""


async def test_a_failed_push_is_pushed_again_then_acked(tmp_path: Path) -> None:
    settings = load_settings(url=f"sqlite:///{tmp_path}/p.db", namespace="s", safety_recheck=0.2)
    async with create_transport(settings) as transport:
        service = PeersService(transport, settings)
        session = Session(service, settings)
        await session.build_context("claude-code", ReceiveMode.PUSH, cwd=str(tmp_path))
        me = await session.register()
        other = await service.register(
            service.new_peer(cwd=str(tmp_path), pid=os.getpid(),
                             pid_start=process_start_time(os.getpid()), name="other")
        )
        pushed: list[str] = []
        attempts = 0
        done = anyio.Event()

        async def deliver(message: Message, sender: Peer | None) -> None:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                raise PipeClosed("client pipe closed")
            pushed.append(message.body)
            if len(pushed) == 2:
                done.set()

        await service.send(Sender.of(other), me.id, "first")
        await service.send(Sender.of(other), me.id, "second")
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.push_loop, deliver)
            with anyio.fail_after(10):
                await done.wait()
            tg.cancel_scope.cancel()
        assert pushed == ["first", "second"]
        assert await service.pending(me.id) == []
