"""Helpers shared by the test modules (importable as ``support``: tests/ is on sys.path)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

from peers import procinfo
from peers.config import Settings, load_settings
from peers.ids import new_message_id, new_peer_id
from peers.models import Message, Peer
from peers.transports import create_transport
from peers.transports.base import Transport

__all__ = ["HOST", "Opener", "make_message", "make_peer"]

# The host identity every test transport uses: the real one, so pid checks apply.
HOST = socket.gethostname()


class Opener:
    """Opens connected transports on one store and closes them all at teardown."""

    def __init__(
        self,
        base: dict[str, Any],
        build: Callable[[Settings], Transport] = create_transport,
    ) -> None:
        self._build = build
        self._base = base
        self.opened: list[Transport] = []

    def settings(self, **overrides: Any) -> Settings:
        return load_settings(**{**self._base, **overrides})

    def unconnected(self, **overrides: Any) -> Transport:
        """A new instance on the store, not yet connected (closed at teardown all the same)."""
        transport = self._build(self.settings(**overrides))
        self.opened.append(transport)
        return transport

    async def __call__(self, **overrides: Any) -> Transport:
        transport = self.unconnected(**overrides)
        await transport.connect()
        return transport

    async def aclose(self) -> None:
        for transport in reversed(self.opened):
            await transport.close()


def make_peer(namespace: str, **fields: Any) -> Peer:
    """A valid live peer of this process (pid and start time of the test runner)."""
    pid = os.getpid()
    base: dict[str, Any] = {
        "id": new_peer_id(),
        "namespace": namespace,
        "host": HOST,
        "pid": pid,
        "pid_start": procinfo.process_start_time(pid),
        "cwd": "/work",
    }
    return Peer(**{**base, **fields})


def make_message(namespace: str, sender: Peer, recipient: Peer, body: str) -> Message:
    return Message(
        id=new_message_id(),
        namespace=namespace,
        sender_id=sender.id,
        sender_name=sender.name,
        recipient_id=recipient.id,
        body=body,
    )
