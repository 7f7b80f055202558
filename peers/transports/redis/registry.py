"""Redis registry: registering peers, names and their inheritance, updates, liveness and reaping.

Liveness is a key per live peer with a TTL of ``peer_ttl`` (plus a pid check for
peers on this host). The registry sorted set holds only online peers, scored by
last seen: a listing reads it in one script (``roster.lua``), which reaps on the
way (a page per call) the peers whose alive key is gone.
A dead session is reaped once and moves to the offline set; it never costs a
listing again, so listing costs what the live peers cost.

A name claim looks first (who holds it, is that holder live) and then claims in
a script that checks the holder is unchanged ('raced' otherwise, and it looks
again). Inheriting a name's mail moves nothing (see ``names.lua``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from peers import constants as c
from peers.errors import BackendError
from peers.models import Peer, PeerFilter, PeerUpdate, PushState, ReceiveMode
from peers.transports import common
from peers.transports.redis.connection import RedisStore, edge
from peers.transports.redis.replies import text, text_map

__all__ = ["RegistryMixin", "peer_from_hash"]


def updatable(update: PeerUpdate | Peer) -> list[str]:
    """The given updatable fields of a peer hash as field, value pairs (for claim and update)."""
    pairs: list[str] = []
    if update.summary is not None:
        pairs += ["summary", update.summary]
    if update.files is not None:
        pairs += ["files", json.dumps(list(update.files))]
    if update.receive_mode is not None:
        pairs += ["mode", ReceiveMode(update.receive_mode).value]
    if update.push is not None:
        pairs += ["push", PushState(update.push).value]
    if update.hooks_at is not None:
        pairs += ["hooks_at", repr(update.hooks_at)]
    return pairs


def peer_from_hash(raw: Mapping[Any, Any]) -> Peer:
    fields = text_map(raw)
    # 'data' is the record as registered; what changes later has a field of its own.
    peer = Peer.model_validate_json(fields["data"])
    update: dict[str, Any] = {
        "name": fields.get("name") or None,
        "online": fields.get("online") == "1",
        "last_seen": float(fields.get("last_seen") or peer.last_seen),
        "successor": fields.get("successor") or None,
    }
    if "summary" in fields:
        update["summary"] = fields["summary"]
    if "files" in fields:
        update["files"] = tuple(json.loads(fields["files"]))
    if "mode" in fields:
        update["receive_mode"] = ReceiveMode(fields["mode"])
    if "push" in fields:
        update["push"] = PushState(fields["push"])
    if fields.get("hooks_at"):
        update["hooks_at"] = float(fields["hooks_at"])
    return peer.model_copy(update=update)


class RegistryMixin(RedisStore):
    """The peer half of the contract on Redis."""

    async def _load(self, peer_id: str) -> tuple[Peer, bool] | None:
        """A peer record and whether its alive key exists."""
        async with self._client().pipeline(transaction=False) as pipe:
            pipe.hgetall(self._keys.peer(peer_id))
            pipe.exists(self._keys.alive(peer_id))
            raw, alive = await pipe.execute()
        if not raw:
            return None
        return peer_from_hash(raw), bool(alive)

    async def _roster(self) -> tuple[list[tuple[Peer, bool]], list[str], bool]:
        """The online peers with their alive flags, after reaping a page of expired ones:
        (peers, the ids reaped, whether more expired ones may wait)."""
        reply = await self._run(
            "roster",
            self._keys.registry,
            repr(time.time()),
            c.GC_PAGE,
            json.dumps(common.leave_data("expired")),
        )
        split = [text(x) if not isinstance(x, list) else None for x in reply].index("", 1)
        reaped = [text(x) for x in reply[1:split]]
        pairs: list[tuple[Peer, bool]] = []
        for i in range(split + 1, len(reply) - 2, 3):
            flat = reply[i + 2]
            record = peer_from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))
            pairs.append((record, text(reply[i + 1]) == "1"))
        return pairs, reaped, text(reply[0]) == "1"

    async def _take_offline(self, peer: Peer, alive: bool) -> bool:
        """Reap a peer that is online but not live; False if it came back meanwhile."""
        mode, reason = ("reap_pid", "process gone") if alive else ("reap", "expired")
        changed = await self._run(
            "offline",
            self._keys.peer(peer.id),
            peer.id,
            mode,
            repr(time.time()),
            json.dumps(common.leave_data(reason)),
        )
        return int(changed) > 0

    async def _live(self) -> tuple[list[Peer], list[str], bool]:
        """The live peers, the ids of those reaped on the way, and whether more expired may wait."""
        pairs, reaped, more = await self._roster()
        live, dead = common.partition(pairs, self.host)
        alive = {p.id: a for p, a in pairs}
        for peer in dead:
            # Expired ones are the roster's to reap, a page per call; one whose
            # process is gone while its alive key lasts is reaped here.
            if alive[peer.id] and await self._take_offline(peer, True):
                reaped.append(peer.id)
        return live, reaped, more

    async def _displaced(self, peer_id: str, name: str) -> str:
        """The holder a claim of ``name`` would displace ('' for none); NameTaken if it is live.

        A holder still marked online but not live (TTL gone, or its process died
        here) is reaped first. The claiming script checks the holder is unchanged.
        """
        if not name:
            return ""
        found = await self._client().get(self._keys.name(name))
        holder_id = text(found) if found is not None else ""
        if not holder_id or holder_id == peer_id:
            return ""
        loaded = await self._load(holder_id)
        if loaded is not None:
            holder, alive = loaded
            live, _ = common.partition([loaded], self.host)
            if live:
                raise common.name_taken(name, holder, holder_id)
            if holder.online:
                await self._take_offline(holder, alive)
        return holder_id

    async def _settled(self, reply: Any, peer_id: str, name: str) -> bool:
        """True when a claim or update script succeeded, False when it lost a race; raises for the rest."""
        status = text(reply[0])
        if status == "ok":
            return True
        if status == "gone":
            raise common.not_registered(peer_id)
        if status == "taken":
            holder_id = text(reply[1])
            loaded = await self._load(holder_id)
            raise common.name_taken(name, loaded[0] if loaded else None, holder_id)
        # 'raced': the name changed hands between our look and the script; look again.
        return False

    @edge
    async def register(self, peer: Peer) -> Peer:
        """Add a live peer, claim its name atomically (NameTaken if a live peer holds it) and inherit the unread mail of the name's previous holders."""
        common.check_peer(peer, self.namespace)
        doorbell = self._bell()
        now = time.time()
        stored = peer.model_copy(update={"online": True, "last_seen": now, "successor": None})
        # Subscribe first: a sender that sees the new record finds the doorbell in place.
        fresh = not doorbell.has(peer.id)
        await doorbell.add(peer.id)
        name = stored.name or ""
        record = stored.model_dump_json()
        joined = json.dumps(common.join_data(stored))
        try:
            for _ in range(c.REDIS_CLAIM_ATTEMPTS):
                expected = await self._displaced(peer.id, name)
                reply = await self._run(
                    "claim",
                    self._keys.peer(peer.id),
                    peer.id,
                    name,
                    expected,
                    record,
                    repr(now),
                    self._ttl_ms,
                    joined,
                    *updatable(stored),
                )
                if await self._settled(reply, peer.id, name):
                    return stored
            raise BackendError(f"could not claim the name {name!r}: too many concurrent claims")
        except BaseException:
            if fresh:
                await doorbell.remove(peer.id)
            raise

    @edge
    async def heartbeat(self, peer_id: str) -> None:
        """Refresh last-seen; raise PeerNotFound if the peer is offline or unknown."""
        done = await self._run(
            "touch", self._keys.peer(peer_id), peer_id, repr(time.time()), self._ttl_ms
        )
        if not int(done):
            raise common.not_registered(peer_id)

    @edge
    async def update_peer(self, peer_id: str, update: PeerUpdate) -> Peer:
        """Change summary, files, name or receive mode of a live peer; a new name is claimed as in register."""
        common.check_name(update.name)
        key = self._keys.peer(peer_id)
        given = updatable(update)
        name = update.name or ""
        if name:
            online = await self._client().hget(key, "online")
            if online is None or text(online) != "1":
                raise common.not_registered(peer_id)  # rather than NameTaken, as on SQLite
        for _ in range(c.REDIS_CLAIM_ATTEMPTS):
            reply = await self._run(
                "update",
                key,
                peer_id,
                repr(time.time()),
                name,
                await self._displaced(peer_id, name),
                *given,
            )
            if await self._settled(reply, peer_id, name):
                return peer_from_hash(dict(zip(reply[1::2], reply[2::2], strict=True)))
        raise BackendError(f"could not claim the name {name!r}: too many concurrent claims")

    @edge
    async def unregister(self, peer_id: str) -> None:
        """Mark a peer offline; its name and unread mail wait for a successor (no-op if unknown)."""
        await self._run(
            "offline",
            self._keys.peer(peer_id),
            peer_id,
            "unregister",
            repr(time.time()),
            json.dumps(common.leave_data("unregistered")),
        )
        if self._doorbell is not None:
            await self._doorbell.remove(peer_id)

    @edge
    async def get_peer(self, peer_id: str) -> Peer | None:
        """The peer with this id, live or offline, or None."""
        raw = await self._client().hgetall(self._keys.peer(peer_id))
        return peer_from_hash(raw) if raw else None

    @edge
    async def get_peer_by_name(self, name: str) -> Peer | None:
        """The latest holder of a name, live or offline, or None."""
        holder = await self._client().get(self._keys.name(name))
        if holder is None:
            return None
        raw = await self._client().hgetall(self._keys.peer(text(holder)))
        return peer_from_hash(raw) if raw else None

    @edge
    async def list_peers(self, flt: PeerFilter | None = None) -> list[Peer]:
        """Live peers matching the filter, reaping dead ones on the way."""
        more = True
        while more:  # a page of expired peers reaped per call, all of them before we answer
            live, _, more = await self._live()
        return common.listing(live, flt)

    async def _reap_all(self) -> list[str]:
        reaped: list[str] = []
        more = True
        while more:
            _, ids, more = await self._live()
            reaped += ids
        return reaped

    async def _records(self, ids: list[str]) -> list[Peer]:
        async with self._client().pipeline(transaction=False) as pipe:
            for peer_id in ids:
                pipe.hgetall(self._keys.peer(peer_id))
            records = await pipe.execute()
        return [peer_from_hash(raw) for raw in records if raw]

    @edge
    async def list_offline(self) -> list[Peer]:
        """Offline peers still kept (named, or with unread mail), reaping dead ones first."""
        await self._reap_all()
        ids = [text(x) for x in await self._client().zrange(self._keys.offline, 0, -1)]
        return common.listing(p for p in await self._records(ids) if not p.online)

    @edge
    async def reap(self) -> list[Peer]:
        """Mark peers offline whose TTL ran out or whose process (on this host) is gone; return them."""
        return await self._records(await self._reap_all())
