"""Redis transport: one Redis server shared by sessions on many hosts.

Supports
    Everything in the contract, across hosts: peers, durable mailboxes,
    inheritance of a name's mail, history, live events and push. Each mailbox
    is a stream with one consumer group (``constants.REDIS_GROUP``): fetch
    reads the group's pending entries, then new ones, without consuming; ack
    is XACK + XDEL, so a stream holds only unacked mail. A send is
    idempotent by message id, so a caller may retry one whose reply was lost.
    Push is a payload-free pub/sub doorbell per recipient, rung by a send
    unless an earlier ring is still waiting for the recipient's next fetch;
    the streams stay the source of truth, so a missed doorbell costs only the
    caller's safety re-check. Each peer served here has its own doorbell
    connection, read by one task (redis-py's pub/sub is not safe to share
    between tasks while it reconnects). Events (join, leave, summary, rename,
    message) are appended to a capped log stream, which also backs history,
    by the scripts that change state, in the same step, and published on the
    namespace's events channel: they come in commit order (a message event
    names the final recipient). A reader takes them from the channel and,
    whenever its subscription is confirmed (first, and after a reconnect),
    reads the log from the last entry it handled, so what pub/sub dropped
    meanwhile still arrives, once. Concurrent sends share one script call.
    Liveness is a key per live peer with a TTL of ``peer_ttl`` (plus a pid
    check for peers on this host), listed through a sorted-set registry,
    never KEYS or SCAN. Registration and name claims, peer updates, sends
    (following successor pointers), mail inheritance and gc's removal of a
    peer are Lua scripts: each check and the writes that depend on it are one
    atomic step, so no concurrent write lands in between. Every key is
    ``peers:{<namespace>}:...`` (see :class:`peers.keys.RedisKeys`): one
    hash tag, so the scripts stay legal on one Redis Cluster slot.
    A Redis restart that keeps its data (AOF) is ridden out by retries; after
    one that lost it, heartbeat raises PeerNotFound (the server re-registers)
    and missing consumer groups are re-created.

URL format
    ``redis://[[user]:password@]host[:port][/db]``
    ``rediss://[[user]:password@]host[:port][/db]`` (TLS)
    ``unix://[[user]:password@]/path/to/redis.sock[?db=N]``
    User and password are the ACL login (``deploy/redis/users.acl`` lists the
    commands peers needs). Passwords are redacted in every message.

Options
    From the settings: ``PEERS_NAMESPACE``, ``PEERS_PEER_TTL`` (alive-key TTL),
    ``PEERS_RETENTION`` (a delivered message's record expires when its
    window ends; unread mail, the log and offline peers wait for ``gc``),
    and for ``rediss://`` ``PEERS_REDIS_CA_FILE``, ``PEERS_REDIS_CA_PATH``,
    ``PEERS_REDIS_CERT_FILE``, ``PEERS_REDIS_KEY_FILE`` (client certificate)
    and ``PEERS_REDIS_VERIFY`` (false skips certificate and host name checks).
    URL query options of redis-py (``socket_timeout``, ...) pass through.
    The server should run with ``appendonly yes`` and
    ``maxmemory-policy noeviction`` (``deploy/redis/compose.yaml``):
    ``peers doctor`` warns otherwise.
    :meth:`RedisTransport.from_client` takes a ready-made
    ``redis.asyncio.Redis`` (fakeredis in tests) instead of a URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from typing import Any, Concatenate, Final, ParamSpec, Self, TypeVar
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from peers import constants as c
from peers.config import Settings, redact_url
from peers.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    InvalidInput,
    NameTaken,
    PeerNotFound,
)
from peers.keys import RedisKeys
from peers.log import get_logger
from peers.models import (
    Check,
    CheckStatus,
    DeliveryState,
    Event,
    EventKind,
    GcReport,
    HistoryQuery,
    Message,
    MessageRecord,
    Peer,
    PeerFilter,
    PeerUpdate,
    PushState,
    ReceiveMode,
)
from peers.tasks import cancel_and_wait
from peers.transports.base import Capabilities, Transport
from peers.transports.redis.batching import Coalescer
from peers.transports.redis.checks import permission_checks

__all__ = ["RedisTransport"]

_log = get_logger(__name__)

_SCHEMES: Final = ("redis", "rediss", "unix")
# events() replays the log from this long before it was called and drops what
# happened before the call by timestamp: the server's clock and ours differ a little.
_EVENT_REPLAY_MS: Final = 2_000
_EVENT_BATCH: Final = 200
# events() gives up after this many failed reads in a row (about half a minute).
_EVENT_RETRIES: Final = 15
_HISTORY_BATCH: Final = 500
# gc expires a mailbox's old mail this many entries per script call.
_EXPIRE_PAGE: Final = 500
# history() stops scanning the log this long before `since` (clock skew between writers).
_HISTORY_SKEW: Final = 60.0
# How long register() waits for the server to confirm a doorbell subscription.
_SUBSCRIBE_CONFIRM: Final = 5.0

P = ParamSpec("P")
R = TypeVar("R")


# -- server-side scripts ---------------------------------------------------------------
#
# Each script starts with a prelude that defines the namespace's key stems (built
# by RedisKeys, the one place for key names) and the group and log length as Lua
# constants, so calls carry only their own arguments. KEYS[1] is always a key of
# the namespace, which routes the script to its slot.

_PRELUDE_BODY = """
-- Append an event to the log and publish it, entry id included, for live readers.
local function log(...)
  local id = redis.call('XADD', LOG, 'MAXLEN', '~', MAXLEN, '*', ...)
  redis.call('PUBLISH', EVENTS, cjson.encode({id, {...}}))
  return id
end
-- An entry's place in commit order: its first stream id, kept in 'o' across moves.
local function order_of(entry)
  local f = entry[2]
  for i = 1, #f, 2 do
    if f[i] == 'o' then return f[i + 1] end
  end
  return entry[1]
end
-- A stream entry's field (entries are {id, {field, value, ...}}).
local function field(entry, name)
  local f = entry[2]
  for i = 1, #f, 2 do
    if f[i] == name then return f[i + 1] end
  end
  return nil
end
local function make_group(stream)
  -- MKSTREAM at 0: mail already in the stream is read too. BUSYGROUP is fine.
  redis.pcall('XGROUP', 'CREATE', stream, GROUP, '0', 'MKSTREAM')
end
"""


def _lua_string(text: str) -> str:
    """A Lua 5.1 string literal for any text (printable ASCII as is, the rest as \\ddd)."""
    out = [chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:03d}" for b in text.encode()]
    return '"' + "".join(out) + '"'


def _prelude(keys: RedisKeys) -> str:
    constants = {
        "PEER": keys.peer(""),
        "ALIVE": keys.alive(""),
        "MBOX": keys.mailbox(""),
        "MSG": keys.message(""),
        "NAME": keys.name(""),
        "RING": keys.ring(""),
        "WAKE": keys.wake_channel(""),
        "REGISTRY": keys.registry,
        "LOG": keys.log,
        "EVENTS": keys.events_channel,
        "GROUP": c.REDIS_GROUP,
        # One consumer per mailbox: every instance of the recipient sees the same pending list.
        "CONSUMER": "mail",
        "MAXLEN": str(c.REDIS_EVENT_LOG_MAXLEN),
        "RING_TTL": str(c.REDIS_RING_TTL_MS),
    }
    lines = [f"local {name} = {_lua_string(value)}" for name, value in constants.items()]
    return "\n".join(lines) + _PRELUDE_BODY


# Name claims, shared by the register and update scripts (concatenated before them).
_NAMES = """
local function before(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if tonumber(am) ~= tonumber(bm) then return tonumber(am) < tonumber(bm) end
  return tonumber(as) < tonumber(bs)
end

-- Move the previous holder's unacked mail into the claimant's mailbox, merged
-- with what the claimant already has in commit order.
local function inherit(from, to)
  local src, dst = MBOX .. from, MBOX .. to
  local moved = redis.call('XRANGE', src, '-', '+')
  redis.call('DEL', src)
  if #moved == 0 then return end
  local own = redis.call('XRANGE', dst, '-', '+')
  local all = moved
  if #own > 0 then
    all = {}
    local i, j = 1, 1
    while i <= #moved or j <= #own do
      if j > #own or (i <= #moved and before(order_of(moved[i]), order_of(own[j]))) then
        all[#all + 1] = moved[i]; i = i + 1
      else
        all[#all + 1] = own[j]; j = j + 1
      end
    end
    redis.call('DEL', dst)
    make_group(dst)
  end
  for _, entry in ipairs(all) do
    local mid = field(entry, 'id')
    local new = redis.call('XADD', dst, '*', 'id', mid, 'm', field(entry, 'm'), 'o', order_of(entry))
    if redis.call('EXISTS', MSG .. mid) == 1 then
      redis.call('HSET', MSG .. mid, 'rcpt', to, 'entry', new)
    end
  end
end

-- Whom a claim of `name` by `id` displaces: false (nobody) or the previous
-- holder's id; or, as a second value, the reply that refuses the claim. The
-- caller looked first and names the holder it expects (`expected`, '' = none).
local function displaced(id, name, expected)
  if name == '' then return false end
  local holder = redis.call('GET', NAME .. name)
  if not holder or holder == id then return false end
  if holder ~= expected then return false, {'raced', holder} end
  if redis.call('HGET', PEER .. holder, 'online') == '1'
      and redis.call('EXISTS', ALIVE .. holder) == 1 then
    return false, {'taken', holder}
  end
  return holder
end

-- Give `id` the name (releasing its old one), and take the previous holder's
-- place: its successor pointer names `id`, its unacked mail moves over.
local function take_name(id, name, holder)
  local peer = PEER .. id
  local old = redis.call('HGET', peer, 'name')
  if old and old ~= '' and old ~= name and redis.call('GET', NAME .. old) == id then
    redis.call('DEL', NAME .. old)
  end
  redis.call('HSET', peer, 'name', name)
  make_group(MBOX .. id)
  if name ~= '' then
    redis.call('SET', NAME .. name, id)
  end
  if holder then
    redis.call('HSET', PEER .. holder, 'name', '', 'successor', id)
    inherit(holder, id)
  end
end
"""

# Register a peer and claim its name.
# ARGV: id, name ('' = none), expected holder ('' = none), record json, now,
# ttl ms, join event data json, then the updatable fields as field, value pairs
# (see _UPDATE).
# Returns {'ok'} | {'raced', holder} | {'taken', holder}.
_CLAIM = """
local id, name, expected = ARGV[1], ARGV[2], ARGV[3]
local record, now, ttl, data = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local holder, refused = displaced(id, name, expected)
if refused then return refused end
redis.call('HSET', KEYS[1], 'data', record, 'online', '1', 'last_seen', now, 'successor', '')
for i = 8, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('SET', ALIVE .. id, '1', 'PX', ttl)
redis.call('ZADD', REGISTRY, now, id)
take_name(id, name, holder)
log('k', 'join', 'p', id, 'n', name, 'at', now, 'd', data)
return {'ok'}
"""

# Update a live peer: set the given fields, claim a new name, log SUMMARY and
# RENAME. Only the given fields are written, each in its own hash field
# ('summary', 'files' as a JSON list, 'mode'; 'data' keeps the record as
# registered and these win over it), so concurrent updates of different
# fields both stand, and a record deleted meanwhile is not written back.
# ARGV: id, now, new name ('' = unchanged), its expected holder ('' = none),
# then field, value pairs.
# Returns {'ok', hash fields and values...} | {'gone'} | {'raced', holder} | {'taken', holder}.
_UPDATE = """
local id, now, name, expected = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local peer = KEYS[1]
if redis.call('HGET', peer, 'online') ~= '1' then return {'gone'} end  -- or deleted
local old = redis.call('HGET', peer, 'name') or ''
local renamed = name ~= '' and name ~= old
local holder = false
if renamed then
  local refused
  holder, refused = displaced(id, name, expected)
  if refused then return refused end
end
local described = false
for i = 5, #ARGV, 2 do
  if redis.call('HGET', peer, ARGV[i]) ~= ARGV[i + 1] then
    redis.call('HSET', peer, ARGV[i], ARGV[i + 1])
    described = described or ARGV[i] == 'summary' or ARGV[i] == 'files'
  end
end
if renamed then
  take_name(id, name, holder)
  local was = old == '' and 'null' or cjson.encode(old)
  log('k', 'rename', 'p', id, 'n', name, 'at', now,
      'd', '{"old": ' .. was .. ', "new": ' .. cjson.encode(name) .. '}')
else
  name = old
end
if described then
  local d = redis.call('HMGET', peer, 'summary', 'files')
  log('k', 'summary', 'p', id, 'n', name, 'at', now,
      'd', '{"summary": ' .. cjson.encode(d[1] or '') .. ', "files": ' .. (d[2] or '[]') .. '}')
end
local out = redis.call('HGETALL', peer)
table.insert(out, 1, 'ok')
return out
"""

# Store messages for their recipients, following successor pointers, and ring
# them: one call carries every send that queued up meanwhile (see batching.py),
# each handled on its own (one's failure leaves the others standing).
# ARGV: now, max hops, then one value per message: recipient id, message id,
# sender id, sender name, broadcast ('1' | '0'), sent_at and the message json,
# joined by NUL (which none of them holds: JSON escapes it, the rest are
# sanitised). One value rather than seven: the client packs each value separately.
# Returns one line per message: the final recipient's id, or '!nopeer',
# '!conflict' or '!error <reply>' (one string: the client parses it in one piece).
_SEND = """
local now, hops = ARGV[1], tonumber(ARGV[2])
local out = {}
local function send(rid, mid, sender, sender_name, broadcast, sent_at, body)
  local stored = redis.call('HMGET', MSG .. mid, 'rcpt', 'm')
  if stored[1] then
    -- Already stored: a retry whose first reply was lost is not a second message.
    if stored[2] == body then return stored[1] end
    return '!conflict'
  end
  if redis.call('EXISTS', PEER .. rid) == 0 then return '!nopeer' end
  for _ = 1, hops do
    local nxt = redis.call('HGET', PEER .. rid, 'successor')
    if not nxt or nxt == '' or redis.call('EXISTS', PEER .. nxt) == 0 then break end
    rid = nxt
  end
  local entry = redis.call('XADD', MBOX .. rid, '*', 'id', mid, 'm', body)
  redis.call('HSET', MSG .. mid, 'm', body, 'rcpt', rid, 'entry', entry, 't', sent_at)
  log('k', 'message', 'p', sender, 'n', sender_name, 'at', now, 'mid', mid, 'r', rid,
      'b', broadcast)
  -- One ring until the recipient fetches: a pending ring already makes it read this too.
  if redis.call('SET', RING .. rid, '1', 'NX', 'PX', RING_TTL) then
    redis.call('PUBLISH', WAKE .. rid, '')
  end
  return rid
end
for i = 3, #ARGV do
  local packed, f, at = ARGV[i], {}, 1
  for k = 1, 6 do
    local nul = string.find(packed, '\\0', at, true)
    f[k] = string.sub(packed, at, nul - 1)
    at = nul + 1
  end
  -- An error reply (a key of the wrong type...) fails this message only.
  local ok, result = pcall(send, f[1], f[2], f[3], f[4], f[5], f[6], string.sub(packed, at))
  if not ok then
    local why = type(result) == 'table' and (result.err or '?') or tostring(result)
    result = '!error ' .. string.gsub(why, '[\\r\\n]', ' ')
  end
  out[#out + 1] = result
end
return table.concat(out, '\\n')
"""

# Ack a recipient's own pending messages: XACK + XDEL, and the message record
# then lives until the end of its retention window.
# ARGV: recipient id, now, retention seconds, message ids...
_ACK = """
local rid, now, retention = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local n = 0
for i = 4, #ARGV do
  local key = MSG .. ARGV[i]
  local m = redis.call('HMGET', key, 'rcpt', 'entry', 'acked_at', 't')
  if m[1] == rid and m[2] and not m[3] then
    redis.call('XACK', KEYS[1], GROUP, m[2])
    if redis.call('XDEL', KEYS[1], m[2]) == 1 then
      redis.call('HSET', key, 'acked_at', ARGV[2])
      local left = math.floor((tonumber(m[4]) + retention - now) * 1000)
      redis.call('PEXPIRE', key, math.max(left, 1))
      n = n + 1
    end
  end
end
return n
"""

# Heartbeat: refresh a live peer. ARGV: id, now, ttl ms. Returns 0 if offline/unknown.
# Read a mailbox without consuming: the consumer's pending entries (read before,
# not acked), then new ones. The ring marker goes first, so a send after this
# point rings again. New entries read past the limit stay pending and come
# first next time. KEYS[1]: the mailbox. ARGV: recipient id, limit.
# Returns the messages' JSON, oldest first (NOGROUP is an error reply).
_FETCH = """
redis.call('DEL', RING .. ARGV[1])
local out = {}
for _, start in ipairs({'0', '>'}) do
  local reply = redis.call('XREADGROUP', 'GROUP', GROUP, CONSUMER, 'COUNT', ARGV[2],
                           'STREAMS', KEYS[1], start)
  -- Redis answers {{stream, entries}} or nil; fakeredis {stream, entries}.
  local entries = reply and (type(reply[1]) == 'table' and reply[1][2] or reply[2]) or {}
  if entries then
    for _, entry in ipairs(entries) do
      local f = entry[2]  -- false for an entry deleted while pending
      if f then
        for i = 1, #f, 2 do
          if f[i] == 'm' then out[#out + 1] = f[i + 1] end
        end
      end
    end
  end
end
return out
"""

_TOUCH = """
local id, now = ARGV[1], ARGV[2]
if redis.call('HGET', KEYS[1], 'online') ~= '1' then return 0 end
redis.call('HSET', KEYS[1], 'last_seen', now)
redis.call('SET', ALIVE .. id, '1', 'PX', ARGV[3])
redis.call('ZADD', REGISTRY, now, id)
return 1
"""

# Take a peer offline. ARGV: id, mode, now, event data json. Modes:
# 'unregister'; 'reap' (its TTL ran out: loses to a heartbeat that landed since
# the caller looked); 'reap_pid' (its process is gone, whatever the TTL says).
# Returns 0 (nothing changed), 1 (offline) or 2 (anonymous without mail: deleted).
_OFFLINE = """
local id, mode, now, data = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('HGET', KEYS[1], 'online') ~= '1' then return 0 end
if mode == 'reap' and redis.call('EXISTS', ALIVE .. id) == 1 then return 0 end
redis.call('DEL', ALIVE .. id)
redis.call('HSET', KEYS[1], 'online', '0')
local name = redis.call('HGET', KEYS[1], 'name') or ''
log('k', 'leave', 'p', id, 'n', name, 'at', now, 'd', data)
if mode == 'unregister' and name == '' and redis.call('XLEN', MBOX .. id) == 0 then
  -- Nothing can wait for an anonymous peer without mail: drop it.
  redis.call('DEL', KEYS[1], MBOX .. id)
  redis.call('ZREM', REGISTRY, id)
  return 2
end
return 1
"""

# Remove a mailbox's mail sent before the cutoff, entries and message records
# together: an inheritance cannot move an entry in between and leave it without
# its record. One page of entries per call, so a huge mailbox never blocks the
# server for long; a mailbox is in commit order, so the scan stops at the first
# entry committed well after the cutoff (the margin covers clock skew between
# the server and the senders, whose sent_at decides).
# KEYS[1]: the mailbox. ARGV: cutoff (seconds since the epoch), margin (ms),
# start (exclusive entry id, or '-'), page size.
# Returns {next start or '' when done, removed ids...}.
_EXPIRE = """
local cutoff, margin, start = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
if start ~= '-' then start = '(' .. start end
local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', ARGV[4])
local out = {''}
for _, entry in ipairs(entries) do
  local committed = tonumber(string.match(order_of(entry), '^(%d+)'))
  if committed > cutoff * 1000 + margin then return out end
  local mid, body = field(entry, 'id'), field(entry, 'm')
  if mid and body then
    local ok, message = pcall(cjson.decode, body)
    local sent = ok and type(message) == 'table' and tonumber(message['sent_at'])
    if sent and sent < cutoff then
      redis.call('XACK', KEYS[1], GROUP, entry[1])
      redis.call('XDEL', KEYS[1], entry[1])
      redis.call('DEL', MSG .. mid)
      out[#out + 1] = mid
    end
  end
end
if #entries == tonumber(ARGV[4]) then out[1] = entries[#entries][1] end
return out
"""

# Collect an offline peer past retention with no unread mail (that mail waits
# for the name's next holder): its record, mailbox, liveness and doorbell keys,
# registry entry, and its name if it still points here. The checks and the
# delete are one step, so a send cannot land in between and be deleted.
# ARGV: id, cutoff (last_seen before it is past retention). Returns 1 if collected.
_COLLECT = """
local id = ARGV[1]
local p = redis.call('HMGET', KEYS[1], 'online', 'last_seen', 'name')
if not p[2] or p[1] == '1' or tonumber(p[2]) >= tonumber(ARGV[2]) then return 0 end
if redis.call('XLEN', MBOX .. id) > 0 then return 0 end
redis.call('DEL', KEYS[1], MBOX .. id, ALIVE .. id, RING .. id)
redis.call('ZREM', REGISTRY, id)
if p[3] and p[3] ~= '' and redis.call('GET', NAME .. p[3]) == id then
  redis.call('DEL', NAME .. p[3])
end
return 1
"""


# -- helpers -----------------------------------------------------------------------------


def _s(value: Any) -> str:
    """A reply as text: clients may or may not decode responses."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _text_map(raw: Mapping[Any, Any] | None) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in (raw or {}).items()}


def _entries(reply: Any) -> list[tuple[str, dict[str, str] | None]]:
    """Stream entries of an XREAD/XREADGROUP reply (RESP2 list or RESP3 map) or an XRANGE."""
    if not reply:
        return []
    if isinstance(reply, Mapping):
        streams: list[Any] = [[k, v] for k, v in reply.items()]
    elif (
        reply
        and isinstance(reply[0], list | tuple)
        and len(reply[0]) == 2
        and isinstance(reply[0][1], list)
    ):
        streams = list(reply)
    else:
        streams = [[None, reply]]
    out: list[tuple[str, dict[str, str] | None]] = []
    for _, items in streams:
        for entry_id, fields in items or []:
            out.append((_s(entry_id), _text_map(fields) if fields else None))
    return out


def _retry_delay(failures: int) -> float:
    """Exponential backoff of the pub/sub readers, capped at twice the command retries' cap."""
    return min(c.REDIS_BACKOFF_CAP * 2, c.REDIS_BACKOFF_BASE * 2.0**failures)


def _stream_id(entry_id: str) -> tuple[int, int]:
    """A stream entry id as a comparable pair (milliseconds, sequence)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _entry_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


def _missing_group(exc: ResponseError) -> bool:
    text = str(exc)
    # Redis says NOGROUP (wrapped in a pipeline's own message); fakeredis words a
    # missing stream differently.
    return "NOGROUP" in text or "requires the key to exist" in text


def _updatable(update: PeerUpdate | Peer) -> list[str]:
    """The given updatable fields of a peer hash as field, value pairs (for _CLAIM and _UPDATE)."""
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


def _peer_from_hash(raw: Mapping[Any, Any]) -> Peer:
    fields = _text_map(raw)
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


def _message(raw: str, recipient_id: str) -> Message:
    message = Message.model_validate_json(raw)
    if message.recipient_id != recipient_id:
        message = message.model_copy(update={"recipient_id": recipient_id})
    return message


def _event_from_log(fields: Mapping[str, str]) -> Event | None:
    try:
        kind = EventKind(fields.get("k", ""))
    except ValueError:
        return None  # a log entry that is not an event
    data: dict[str, Any]
    if kind == EventKind.MESSAGE:
        data = {
            "id": fields.get("mid"),
            "sender_id": fields.get("p"),
            "sender_name": fields.get("n") or None,
            "recipient_id": fields.get("r"),
            "broadcast": fields.get("b") == "1",
        }
    else:
        data = json.loads(fields.get("d") or "{}")
    return Event(
        kind=kind,
        at=float(fields.get("at") or 0.0),
        peer_id=fields.get("p", ""),
        peer_name=fields.get("n") or None,
        data=data,
    )


def _note(event: str, level: str = "warning", **fields: Any) -> None:
    """Log from a background task; a closed stderr must not stop the task."""
    with contextlib.suppress(Exception):
        getattr(_log, level)(event, **fields)


Op = Callable[Concatenate["RedisTransport", P], Coroutine[Any, Any, R]]


def _edge_within(factor: float | None) -> Callable[[Op[P, R]], Op[P, R]]:
    """Convert redis exceptions into peers' own at the transport's edge; bound the call to
    ``factor`` times the transport's ``op_timeout`` (None: unbounded)."""

    def decorate(fn: Op[P, R]) -> Op[P, R]:
        @functools.wraps(fn)
        async def wrapper(self: RedisTransport, /, *args: P.args, **kwargs: P.kwargs) -> R:
            seconds = None if factor is None else self.op_timeout * factor
            try:
                async with asyncio.timeout(seconds):
                    return await fn(self, *args, **kwargs)
            except RedisError as exc:
                raise self._convert(exc) from exc
            except TimeoutError as exc:  # the deadline (an OSError too: caught first)
                within = f" within {seconds:g} s" if seconds is not None else ""
                raise BackendUnavailable(f"Redis at {self._url} did not answer{within}") from exc
            except OSError as exc:  # TLS files, sockets outside redis-py's own wrapping
                raise BackendUnavailable(f"cannot reach Redis at {self._url}: {exc}") from exc

        return wrapper

    return decorate


_edge = _edge_within(1)


# -- doorbells ---------------------------------------------------------------------------


class _Silence:
    """Tells a quiet pub/sub connection from a dead one (a half-open link answers nothing)."""

    def __init__(self, quiet: float) -> None:
        self._quiet = quiet
        self._answer_within = min(quiet, c.REDIS_SOCKET_TIMEOUT)
        self._heard = time.monotonic()
        self._pinged: float | None = None

    async def read(self, pubsub: PubSub) -> dict[str, Any] | None:
        """One read: a message, or None after a short wait (then the connection is checked)."""
        # A timeout (not a blocking read) so that checks keep pace with ``quiet``.
        message: dict[str, Any] | None = await pubsub.get_message(
            timeout=min(c.REDIS_BLOCK_MS / 1000, self._quiet)
        )
        if message is None:
            await self.check(pubsub)
        else:
            self.heard()
        return message

    def heard(self) -> None:
        self._heard = time.monotonic()
        self._pinged = None

    async def check(self, pubsub: PubSub) -> None:
        """After a read that got nothing: PING a long-quiet connection, drop one that never answered."""
        now = time.monotonic()
        if self._pinged is None:
            if now - self._heard > self._quiet:
                await pubsub.ping()  # the answer comes as a 'pong' message
                self._pinged = now
        elif now - self._pinged > self._answer_within:
            self.heard()  # the next connection starts with a clean slate
            if pubsub.connection is not None:
                await pubsub.connection.disconnect()  # the next read reconnects, re-subscribes
            raise RedisConnectionError(
                f"no answer to PING within {self._answer_within:g} s on a pub/sub connection"
            )


class _Bell:
    """One peer's doorbell: its own pub/sub connection, read by its own task only.

    redis-py's PubSub is not safe to use from two tasks while it reconnects (a
    subscribe racing with the reader's reconnect fails in odd ways), so after
    the first subscribe nothing but the reader touches the connection.
    """

    def __init__(self, pubsub: PubSub, quiet: float) -> None:
        self.pubsub = pubsub
        self.quiet = quiet
        self.rung = asyncio.Event()
        self.confirmed = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        failures = 0
        silence = _Silence(self.quiet)
        while True:
            try:
                # redis-py reconnects and re-subscribes by itself, in this task.
                message = await silence.read(self.pubsub)
            except (RedisError, OSError) as exc:
                failures += 1
                if failures == 1:
                    _note("redis doorbell connection lost; reconnecting", error=str(exc))
                await asyncio.sleep(_retry_delay(failures))
                continue
            if failures:
                _note("redis doorbell connection back", level="info", attempts=failures)
            failures = 0
            kind = _s(message.get("type")) if message else ""
            if kind == "message":
                self.rung.set()
            elif kind == "subscribe":
                if self.confirmed.is_set():
                    # Re-subscribed after a reconnect: a ring may have been lost meanwhile.
                    self.rung.set()
                self.confirmed.set()

    async def close(self) -> None:
        reader, self.reader = self.reader, None
        if reader is not None:
            await cancel_and_wait(reader)
        with contextlib.suppress(RedisError, OSError):
            await self.pubsub.aclose()  # type: ignore[no-untyped-call]
        self.rung.set()  # release waiters: they re-fetch and find the transport closed


class _Doorbell:
    """The wake channels of the peers this instance serves, one pub/sub connection each.

    Subscribed when a peer registers here (or at its first wait) and kept, so a
    ring that comes while nobody waits stays set until the next wait.
    """

    def __init__(self, client: Redis, keys: RedisKeys, quiet: Callable[[], float]) -> None:
        self._client = client
        self._keys = keys
        self._bells: dict[str, _Bell] = {}
        self._quiet = quiet

    def has(self, peer_id: str) -> bool:
        return peer_id in self._bells

    async def add(self, peer_id: str) -> None:
        if peer_id in self._bells:
            return
        pubsub = self._client.pubsub(ignore_subscribe_messages=False)
        bell = self._bells[peer_id] = _Bell(pubsub, self._quiet())
        try:
            await bell.pubsub.subscribe(self._keys.wake_channel(peer_id))
        except BaseException:
            if self._bells.get(peer_id) is bell:
                del self._bells[peer_id]
            with contextlib.suppress(RedisError, OSError):
                await bell.pubsub.aclose()  # type: ignore[no-untyped-call]
            raise
        if self._bells.get(peer_id) is not bell:
            # Closed (or removed) while subscribing: nobody will close this one.
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            return
        bell.reader = asyncio.create_task(bell.read(), name=f"peers-redis-doorbell-{peer_id}")
        # A send right after register() returns must find the subscription in place.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(bell.confirmed.wait(), _SUBSCRIBE_CONFIRM)

    async def remove(self, peer_id: str) -> None:
        bell = self._bells.pop(peer_id, None)
        if bell is not None:
            await bell.close()

    async def wait(self, peer_id: str, timeout: float) -> bool:
        await self.add(peer_id)
        bell = self._bells.get(peer_id)
        if bell is None:
            return True  # closed meanwhile: the caller re-fetches and finds out
        rung = bell.rung
        if not rung.is_set():
            try:
                await asyncio.wait_for(rung.wait(), max(timeout, 0.0))
            except TimeoutError:
                return False
        rung.clear()
        return True

    async def close(self) -> None:
        bells, self._bells = self._bells, {}
        for bell in bells.values():
            await bell.close()


# -- the transport -----------------------------------------------------------------------


class RedisTransport(Transport):
    """Peers and mailboxes of one namespace on a Redis server."""

    capabilities = Capabilities(
        name="redis", cross_host=True, push=True, events=True, networked=True
    )

    def __init__(self, settings: Settings, client: Redis | None = None) -> None:
        self.namespace = settings.namespace
        self.host = settings.host
        self._settings = settings
        self._keys = RedisKeys(settings.namespace)
        self._ttl_ms = max(1, int(settings.peer_ttl * 1000))
        self._retention = settings.retention
        self._given = client
        self._url = redact_url(settings.url) if client is None else _describe(client, settings)
        # Commands, and a second client for pub/sub (doorbells, events) whose socket
        # timeout outlasts its reads' wait (redis-py raises otherwise).
        self._r: Redis | None = None
        self._rb: Redis | None = None
        self._doorbell: _Doorbell | None = None
        self._scripts: dict[str, Any] = {}
        self._sends: Coalescer[Message, str] | None = None
        # How long a call may take before the server counts as gone (see REDIS_OP_TIMEOUT),
        # and how long a pub/sub connection may stay silent before it is checked.
        self.op_timeout = c.REDIS_OP_TIMEOUT
        self.pubsub_quiet = c.REDIS_PUBSUB_QUIET

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build an unconnected transport from the settings (URL, namespace, host, TTL, retention)."""
        scheme = urlsplit(settings.url).scheme.lower()
        if scheme not in _SCHEMES:
            raise ConfigError(
                f"PEERS_URL {redact_url(settings.url)!r} is not a Redis URL "
                "(redis://, rediss:// or unix://)"
            )
        return cls(settings)

    @classmethod
    def from_client(cls, client: Redis, settings: Settings) -> Self:
        """A transport on a ready-made redis.asyncio client (fakeredis in tests); the caller closes it."""
        return cls(settings, client=client)

    # -- lifecycle ---------------------------------------------------------------

    def _build_clients(self) -> tuple[Redis, Redis]:
        s = self._settings
        scheme = urlsplit(s.url).scheme.lower()
        options: dict[str, Any] = {
            "decode_responses": True,
            "client_name": "peers",
            "driver_info": None,  # no CLIENT SETINFO: one round trip less per connection
            "health_check_interval": c.REDIS_HEALTH_CHECK_INTERVAL,
            "socket_connect_timeout": c.REDIS_CONNECT_TIMEOUT,
        }
        if scheme == "rediss":
            options["ssl_cert_reqs"] = "required" if s.redis_verify else "none"
            options["ssl_check_hostname"] = s.redis_verify
            for option, value in (
                ("ssl_ca_certs", s.redis_ca_file),
                ("ssl_ca_path", s.redis_ca_path),
                ("ssl_certfile", s.redis_cert_file),
                ("ssl_keyfile", s.redis_key_file),
            ):
                if value:
                    options[option] = value

        def build(socket_timeout: float | None) -> Redis:
            retry = Retry(
                ExponentialBackoff(cap=c.REDIS_BACKOFF_CAP, base=c.REDIS_BACKOFF_BASE),
                c.REDIS_RETRIES,
            )
            try:
                return Redis.from_url(s.url, socket_timeout=socket_timeout, retry=retry, **options)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"PEERS_URL {self._url!r} is not usable: {exc}") from None

        commands = build(None)  # bounded per call instead: see REDIS_OP_TIMEOUT
        blocking = build(c.REDIS_BLOCK_MS / 1000 + c.REDIS_SOCKET_TIMEOUT)
        return commands, blocking

    @_edge
    async def connect(self) -> None:
        """Open connections and create or migrate the store (idempotent)."""
        if self._r is None:
            if self._given is not None:
                self._r = self._rb = self._given
            else:
                self._r, self._rb = self._build_clients()
            prelude = _prelude(self._keys)
            self._scripts = {
                name: self._r.register_script(prelude + body)
                for name, body in (
                    ("claim", _NAMES + _CLAIM),
                    ("update", _NAMES + _UPDATE),
                    ("send", _SEND),
                    ("fetch", _FETCH),
                    ("ack", _ACK),
                    ("touch", _TOUCH),
                    ("offline", _OFFLINE),
                    ("collect", _COLLECT),
                    ("expire", _EXPIRE),
                )
            }
            self._doorbell = _Doorbell(self._rb, self._keys, lambda: self.pubsub_quiet)
            self._sends = Coalescer(self._send_batch, c.REDIS_SEND_BATCH, name="redis-sends")
        await self._r.ping()

    async def close(self) -> None:
        """Release connections and wake-up endpoints; safe to call twice."""
        sends, self._sends = self._sends, None
        if sends is not None:
            await sends.close(BackendUnavailable(f"the connection to Redis at {self._url} closed"))
        doorbell, self._doorbell = self._doorbell, None
        if doorbell is not None:
            await doorbell.close()
        clients = {id(x): x for x in (self._r, self._rb) if x is not None}
        self._r = self._rb = None
        if self._given is None:
            for client in clients.values():
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()

    def _client(self) -> Redis:
        if self._r is None:
            raise BackendUnavailable(f"not connected to Redis at {self._url}: call connect() first")
        return self._r

    def _sender(self) -> Coalescer[Message, str]:
        if self._sends is None:
            raise BackendUnavailable(f"not connected to Redis at {self._url}: call connect() first")
        return self._sends

    def _bell(self) -> _Doorbell:
        if self._doorbell is None:
            raise BackendUnavailable(f"not connected to Redis at {self._url}: call connect() first")
        return self._doorbell

    def _convert(self, exc: RedisError) -> Exception:
        where = f"Redis at {self._url}"
        if isinstance(exc, AuthenticationError | AuthorizationError):
            return BackendError(
                f"{where} refused the login ({exc}); check the user and password in PEERS_URL "
                "(redis://user:password@host:port/db)"
            )
        if isinstance(exc, NoPermissionError):
            return BackendError(
                f"{where} denied a command to this user ({exc}); grant it the rules in "
                "deploy/redis/users.acl"
            )
        if isinstance(exc, BusyLoadingError):
            return BackendUnavailable(f"{where} is still loading its data; try again shortly")
        if isinstance(exc, RedisConnectionError | RedisTimeoutError):
            return BackendUnavailable(f"cannot reach {where}: {exc}")
        if isinstance(exc, OutOfMemoryError):
            return BackendError(
                f"{where} is out of memory and refuses writes ({exc}); raise maxmemory "
                "or run `peers gc`"
            )
        if isinstance(exc, ReadOnlyError):
            return BackendError(f"{where} is a read-only replica; point PEERS_URL at the primary")
        return BackendError(f"{where} failed: {exc}")

    async def _run(self, script: str, key: str, *args: Any) -> Any:
        """Run one of the server-side scripts; ``key`` routes it to the namespace's slot."""
        client = self._client()
        compiled = self._scripts[script]
        try:
            # EVALSHA directly: the hot path (send) pays for one command, nothing more.
            return await client.evalsha(compiled.sha, 1, key, *args)
        except NoScriptError:
            # A restarted server forgot its script cache: load the script and run it again.
            return await compiled(keys=[key], args=args)

    @_edge
    async def ping(self) -> float:
        """Round-trip the store once; return the latency in seconds or raise BackendUnavailable."""
        client = self._client()
        started = time.perf_counter()
        await client.ping()
        return time.perf_counter() - started

    async def _server_facts(self) -> dict[str, str] | None:
        """Version, mode and persistence facts from INFO, or None (fakeredis has no INFO)."""
        client = self._client()
        try:
            async with client.pipeline(transaction=False) as pipe:
                pipe.info("server")
                pipe.info("persistence")
                pipe.info("memory")
                server, persistence, memory = await pipe.execute()
        except ResponseError:
            return None
        return {
            "server_version": _s(server.get("redis_version", "unknown")),
            "mode": _s(server.get("redis_mode", "standalone")),
            "aof": "on" if str(persistence.get("aof_enabled", "0")) == "1" else "off",
            "maxmemory_policy": _s(memory.get("maxmemory_policy", "unknown")),
        }

    @_edge
    async def info(self) -> dict[str, str]:
        """Backend facts for status and doctor (version, schema, path or address)."""
        facts = await self._server_facts()
        info = {"backend": "redis", "url": self._url, "namespace": self.namespace}
        if facts is None:
            info.update(server_version="unknown (no INFO)", mode="unknown")
        else:
            info.update(facts)
        return info

    @_edge
    async def diagnostics(self) -> list[Check]:
        """Checks for `peers doctor`: server version, persistence, eviction policy, mode."""
        facts = await self._server_facts()
        if facts is None:
            return [
                Check(
                    name="redis server",
                    status=CheckStatus.WARN,
                    detail=f"{self._url} does not answer INFO (a fake or proxied server?)",
                )
            ]
        version = facts["server_version"]
        try:
            major_minor = tuple(int(p) for p in version.split(".")[:2])
        except ValueError:
            major_minor = (0, 0)
        aof = facts["aof"] == "on"
        noeviction = facts["maxmemory_policy"] == "noeviction"
        standalone = facts["mode"] == "standalone"
        return [
            Check(
                name="redis server",
                status=CheckStatus.OK if major_minor >= (6, 2) else CheckStatus.FAIL,
                detail=f"Redis {version} at {self._url}",
                fix="" if major_minor >= (6, 2) else "upgrade to Redis 7 (6.2 at least)",
            ),
            Check(
                name="redis persistence",
                status=CheckStatus.OK if aof else CheckStatus.WARN,
                detail="AOF on" if aof else "AOF off: a restart may lose unread mail",
                fix="" if aof else "run Redis with appendonly yes (deploy/redis/compose.yaml)",
            ),
            Check(
                name="redis eviction policy",
                status=CheckStatus.OK if noeviction else CheckStatus.FAIL,
                detail=f"maxmemory-policy {facts['maxmemory_policy']}",
                fix=""
                if noeviction
                else "set maxmemory-policy noeviction: eviction silently deletes mailboxes",
            ),
            Check(
                name="redis mode",
                status=CheckStatus.OK if standalone else CheckStatus.FAIL,
                detail=facts["mode"],
                fix="" if standalone else "point PEERS_URL at a standalone Redis",
            ),
            *await permission_checks(self._client(), self._keys),
        ]

    # -- peers -------------------------------------------------------------------

    def _is_live(self, peer: Peer, alive: bool) -> bool:
        # The alive key's TTL stands for the heartbeat freshness here.
        return peer.is_live(self.host, fresh=alive)

    async def _load(self, peer_id: str) -> tuple[Peer, bool] | None:
        """A peer record and whether its alive key exists."""
        async with self._client().pipeline(transaction=False) as pipe:
            pipe.hgetall(self._keys.peer(peer_id))
            pipe.exists(self._keys.alive(peer_id))
            raw, alive = await pipe.execute()
        if not raw:
            return None
        return _peer_from_hash(raw), bool(alive)

    async def _load_all(self) -> list[tuple[Peer, bool]]:
        """Every stored peer of the namespace (from the registry) and its alive flag."""
        client = self._client()
        ids = [_s(x) for x in await client.zrange(self._keys.registry, 0, -1)]
        if not ids:
            return []
        async with client.pipeline(transaction=False) as pipe:
            for peer_id in ids:
                pipe.hgetall(self._keys.peer(peer_id))
                pipe.exists(self._keys.alive(peer_id))
            replies = await pipe.execute()
        out: list[tuple[Peer, bool]] = []
        for i, peer_id in enumerate(ids):
            raw, alive = replies[2 * i], replies[2 * i + 1]
            if raw:
                out.append((_peer_from_hash(raw), bool(alive)))
            else:
                _log.debug("registry names a missing peer record", peer_id=peer_id)
        return out

    async def _take_offline(self, peer: Peer, alive: bool) -> bool:
        """Reap a peer that is online but not live; False if it came back meanwhile."""
        mode, reason = ("reap_pid", "process gone") if alive else ("reap", "expired")
        changed = await self._run(
            "offline",
            self._keys.peer(peer.id),
            peer.id,
            mode,
            repr(time.time()),
            json.dumps({"reason": reason}),
        )
        return int(changed) > 0

    async def _reap(self, pairs: list[tuple[Peer, bool]]) -> list[Peer]:
        reaped: list[Peer] = []
        for peer, alive in pairs:
            if (
                peer.online
                and not self._is_live(peer, alive)
                and await self._take_offline(peer, alive)
            ):
                reaped.append(peer.model_copy(update={"online": False}))
        return reaped

    def _name_taken(self, name: str, holder: Peer | None, holder_id: str) -> NameTaken:
        if holder is None:
            return NameTaken(f"name {name!r} is held by live peer {holder_id}")
        return NameTaken(
            f"name {name!r} is held by live peer {holder.id} on {holder.host} "
            f"(pid {holder.pid}); choose another name or end that session"
        )

    def _not_registered(self, peer_id: str) -> PeerNotFound:
        return PeerNotFound(f"peer {peer_id} is not registered (or was reaped); register again")

    async def _displaced(self, peer_id: str, name: str) -> str:
        """The holder a claim of ``name`` would displace ('' for none); NameTaken if it is live.

        A holder still marked online but not live (TTL gone, or its process died
        here) is reaped first. The claiming script checks the holder is unchanged.
        """
        if not name:
            return ""
        found = await self._client().get(self._keys.name(name))
        holder_id = _s(found) if found is not None else ""
        if not holder_id or holder_id == peer_id:
            return ""
        loaded = await self._load(holder_id)
        if loaded is not None:
            holder, alive = loaded
            if self._is_live(holder, alive):
                raise self._name_taken(name, holder, holder_id)
            if holder.online:
                await self._take_offline(holder, alive)
        return holder_id

    async def _settled(self, reply: Any, peer_id: str, name: str) -> bool:
        """True when a claim or update script succeeded, False when it lost a race; raises for the rest."""
        status = _s(reply[0])
        if status == "ok":
            return True
        if status == "gone":
            raise self._not_registered(peer_id)
        if status == "taken":
            holder_id = _s(reply[1])
            loaded = await self._load(holder_id)
            raise self._name_taken(name, loaded[0] if loaded else None, holder_id)
        # 'raced': the name changed hands between our look and the script; look again.
        return False

    def _check_name(self, name: str | None) -> None:
        if name is not None and not c.NAME_PATTERN.fullmatch(name):
            raise InvalidInput(f"peer name {name!r} is invalid: {c.NAME_RULE}")

    @_edge
    async def register(self, peer: Peer) -> Peer:
        """Add a live peer, claim its name atomically (NameTaken if a live peer holds it) and inherit the unread mail of the name's previous holders."""
        if peer.namespace != self.namespace:
            raise InvalidInput(
                f"peer {peer.id} belongs to namespace {peer.namespace!r}, not {self.namespace!r}"
            )
        self._check_name(peer.name)
        doorbell = self._bell()
        now = time.time()
        stored = peer.model_copy(update={"online": True, "last_seen": now, "successor": None})
        # Subscribe first: a sender that sees the new record finds the doorbell in place.
        fresh = not doorbell.has(peer.id)
        await doorbell.add(peer.id)
        name = stored.name or ""
        record = stored.model_dump_json()
        joined = json.dumps(
            {"host": peer.host, "pid": peer.pid, "cwd": peer.cwd, "client": peer.client}
        )
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
                    *_updatable(stored),
                )
                if await self._settled(reply, peer.id, name):
                    return stored
            raise BackendError(f"could not claim the name {name!r}: too many concurrent claims")
        except BaseException:
            if fresh:
                await doorbell.remove(peer.id)
            raise

    @_edge
    async def heartbeat(self, peer_id: str) -> None:
        """Refresh last-seen; raise PeerNotFound if the peer is offline or unknown."""
        done = await self._run(
            "touch", self._keys.peer(peer_id), peer_id, repr(time.time()), self._ttl_ms
        )
        if not int(done):
            raise self._not_registered(peer_id)

    @_edge
    async def update_peer(self, peer_id: str, update: PeerUpdate) -> Peer:
        """Change summary, files, name or receive mode of a live peer; a new name is claimed as in register."""
        self._check_name(update.name)
        key = self._keys.peer(peer_id)
        given = _updatable(update)
        name = update.name or ""
        if name:
            online = await self._client().hget(key, "online")
            if online is None or _s(online) != "1":
                raise self._not_registered(peer_id)  # rather than NameTaken, as on SQLite
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
                return _peer_from_hash(dict(zip(reply[1::2], reply[2::2], strict=True)))
        raise BackendError(f"could not claim the name {name!r}: too many concurrent claims")

    @_edge
    async def unregister(self, peer_id: str) -> None:
        """Mark a peer offline; its name and unread mail wait for a successor (no-op if unknown)."""
        await self._run(
            "offline",
            self._keys.peer(peer_id),
            peer_id,
            "unregister",
            repr(time.time()),
            json.dumps({"reason": "unregister"}),
        )
        if self._doorbell is not None:
            await self._doorbell.remove(peer_id)

    @_edge
    async def get_peer(self, peer_id: str) -> Peer | None:
        """The peer with this id, live or offline, or None."""
        raw = await self._client().hgetall(self._keys.peer(peer_id))
        return _peer_from_hash(raw) if raw else None

    @_edge
    async def get_peer_by_name(self, name: str) -> Peer | None:
        """The latest holder of a name, live or offline, or None."""
        holder = await self._client().get(self._keys.name(name))
        if holder is None:
            return None
        raw = await self._client().hgetall(self._keys.peer(_s(holder)))
        return _peer_from_hash(raw) if raw else None

    @_edge
    async def list_peers(self, flt: PeerFilter | None = None) -> list[Peer]:
        """Live peers matching the filter, reaping dead ones on the way."""
        pairs = await self._load_all()
        await self._reap(pairs)
        live = [p for p, alive in pairs if self._is_live(p, alive)]
        if flt is not None:
            live = [p for p in live if flt.matches(p)]
        return sorted(live, key=lambda p: p.registered_at)

    @_edge
    async def list_offline(self) -> list[Peer]:
        """Offline peers still kept (named, or with unread mail)."""
        pairs = await self._load_all()
        reaped = {p.id: p for p in await self._reap(pairs)}
        offline = [reaped.get(p.id, p) for p, _ in pairs if not p.online or p.id in reaped]
        return sorted(offline, key=lambda p: p.registered_at)

    @_edge
    async def reap(self) -> list[Peer]:
        """Mark peers offline whose TTL ran out or whose process (on this host) is gone; return them."""
        return await self._reap(await self._load_all())

    # -- messages ----------------------------------------------------------------

    @_edge
    async def send(self, message: Message) -> Message:
        """Store a message durably for its recipient (following successors), wake it, return it as stored."""
        if message.namespace != self.namespace:
            raise InvalidInput(
                f"message {message.id} belongs to namespace {message.namespace!r}, "
                f"not {self.namespace!r}"
            )
        fields = f"{message.recipient_id}{message.id}{message.sender_id}{message.sender_name}"
        if "\0" in fields or "\n" in fields or "\r" in fields:
            # They travel NUL-separated, and the reply names recipients one per line.
            raise InvalidInput(
                f"message {message.id!r}: ids and names cannot hold NUL or line breaks"
            )
        recipient = await self._sender().submit(message)
        if recipient != message.recipient_id:
            return message.model_copy(update={"recipient_id": recipient})
        return message

    async def _send_batch(self, messages: Sequence[Message]) -> list[str | Exception]:
        """One script call for several sends: each one's final recipient, or its error."""
        args: list[str | int] = [repr(time.time()), c.MAX_SUCCESSOR_HOPS]
        for m in messages:
            fields = (m.recipient_id, m.id, m.sender_id, m.sender_name or "")
            flag = "1" if m.broadcast else "0"
            args.append("\0".join((*fields, flag, repr(m.sent_at), m.model_dump_json())))
        # Bounded here too: the batch may run in a task of its own, outside any caller's deadline.
        async with asyncio.timeout(self.op_timeout):
            reply = await self._run("send", self._keys.registry, *args)
        lines = _s(reply).split("\n")
        out: list[str | Exception] = []
        for m, line in zip(messages, lines, strict=True):
            if line == "!nopeer":
                out.append(
                    PeerNotFound(f"no peer {m.recipient_id} in namespace {self.namespace!r}")
                )
            elif line == "!conflict":
                out.append(InvalidInput(f"a different message with id {m.id} already exists"))
            elif line.startswith("!error "):
                out.append(
                    BackendError(f"Redis at {self._url} refused message {m.id}: {line[7:]}")
                )
            else:
                out.append(line)
        return out

    async def _ensure_group(self, recipient_id: str) -> bool:
        """Re-create a missing consumer group (data lost); False if there is no mailbox to have."""
        loaded = await self._load(recipient_id)
        if loaded is None or loaded[0].successor is not None:
            return False  # unknown, or its mail moved to a successor
        with contextlib.suppress(ResponseError):  # BUSYGROUP: someone else was quicker
            await self._client().xgroup_create(
                self._keys.mailbox(recipient_id), c.REDIS_GROUP, id="0", mkstream=True
            )
        return True

    @_edge
    async def fetch(self, recipient_id: str, limit: int = 100) -> list[Message]:
        """The recipient's pending messages, oldest first, without consuming them."""
        if limit < 1:
            raise InvalidInput(f"fetch limit must be at least 1, not {limit}")
        mailbox = self._keys.mailbox(recipient_id)
        for attempt in range(2):
            try:
                # One script rather than a pipeline of DEL and two XREADGROUPs: the
                # same round trip, half the client CPU (an idle recipient's fetch
                # after each wake-up is mostly this).
                found = await self._run("fetch", mailbox, recipient_id, limit)
                break
            except ResponseError as exc:
                if attempt or not _missing_group(exc):
                    raise
                if not await self._ensure_group(recipient_id):
                    return []
        return [_message(_s(raw), recipient_id) for raw in found[:limit]]

    @_edge
    async def ack(self, recipient_id: str, message_ids: Sequence[str]) -> int:
        """Mark the recipient's own pending messages delivered; return how many changed."""
        unique = list(dict.fromkeys(message_ids))
        if not unique:
            return 0
        changed = await self._run(
            "ack",
            self._keys.mailbox(recipient_id),
            recipient_id,
            repr(time.time()),
            repr(self._retention),
            *unique,
        )
        return int(changed)

    @_edge_within(None)  # bounded by its own timeout
    async def wait_for_mail(self, recipient_id: str, timeout: float) -> bool:
        """Sleep until a send to the recipient (True) or the timeout (False); costs nothing while idle."""
        return await self._bell().wait(recipient_id, timeout)

    @_edge
    async def get_message(self, message_id: str) -> Message | None:
        """A message within the retention window, pending or delivered, or None."""
        raw, recipient = await self._client().hmget(self._keys.message(message_id), "m", "rcpt")
        if raw is None or recipient is None:
            return None
        message = _message(_s(raw), _s(recipient))
        if message.sent_at < time.time() - self._retention:
            return None
        return message

    @_edge
    async def pending_counts(self) -> dict[str, int]:
        """Unread message count per recipient id (only recipients with mail)."""
        client = self._client()
        ids = [_s(x) for x in await client.zrange(self._keys.registry, 0, -1)]
        if not ids:
            return {}
        async with client.pipeline(transaction=False) as pipe:
            for peer_id in ids:
                pipe.xlen(self._keys.mailbox(peer_id))
            counts = await pipe.execute()
        return {peer_id: int(n) for peer_id, n in zip(ids, counts, strict=True) if int(n)}

    @_edge
    async def history(self, query: HistoryQuery) -> list[MessageRecord]:
        """Messages within retention, oldest first, with their delivery state."""
        if query.limit < 1:
            return []
        client = self._client()
        now = time.time()
        cutoff = now - self._retention
        since = query.since if query.since is not None else float("-inf")
        newest_first: list[MessageRecord] = []
        upper = "+"
        # The log is newest last: walk it backwards until `limit` matched or `since` passed.
        while len(newest_first) < query.limit:
            batch = _entries(
                await client.xrevrange(self._keys.log, upper, "-", count=_HISTORY_BATCH)
            )
            if not batch:
                break
            upper = f"({batch[-1][0]}"
            sends = [f for _, f in batch if f is not None and f.get("k") == "message"]
            async with client.pipeline(transaction=False) as pipe:
                for fields in sends:
                    pipe.hgetall(self._keys.message(fields.get("mid", "")))
                records = await pipe.execute()
            passed = False
            for fields, raw in zip(sends, records, strict=True):
                if float(fields.get("at") or 0.0) < since - _HISTORY_SKEW:
                    passed = True
                    break
                if not raw:
                    continue  # delivered and past retention, or collected
                stored = _text_map(raw)
                message = _message(stored["m"], stored["rcpt"])
                if message.sent_at < since:
                    continue
                if query.peer_id is not None and query.peer_id not in (
                    message.sender_id,
                    message.recipient_id,
                ):
                    continue
                acked_at = stored.get("acked_at")
                if acked_at is not None:
                    if message.sent_at < cutoff:
                        continue
                    state = DeliveryState.DELIVERED
                else:
                    state = (
                        DeliveryState.PENDING
                        if message.sent_at >= cutoff
                        else DeliveryState.EXPIRED
                    )
                newest_first.append(
                    MessageRecord(
                        message=message,
                        state=state,
                        acked_at=float(acked_at) if acked_at is not None else None,
                    )
                )
                if len(newest_first) >= query.limit:
                    break
            if passed or len(batch) < _HISTORY_BATCH:
                break
        # Commit order is the log's; present oldest first as the contract says.
        return list(reversed(newest_first))

    # -- events and upkeep -------------------------------------------------------

    def events(self) -> AsyncIterator[Event]:
        """Live join, leave, summary, rename and message events from now on, until closed."""
        # Positioned now, not at the first __anext__, so nothing between the call
        # and the first read is lost.
        return self._event_stream(time.time())

    async def _event_stream(self, since: float) -> AsyncIterator[Event]:
        # Live events come by pub/sub: every log() in a script publishes its entry.
        # Whenever the subscription is confirmed (first, and after each reconnect)
        # the log stream fills in what the channel did not carry: before the
        # subscription, or while it was down. The cursor is the last entry id
        # handled, so nothing is lost and nothing comes twice.
        since_ms = int(since * 1000)
        cursor = _stream_id(f"{max(0, since_ms - _EVENT_REPLAY_MS)}-0")
        client = self._rb
        if client is None:
            return  # transport closed
        pubsub = client.pubsub(ignore_subscribe_messages=False)
        silence = _Silence(self.pubsub_quiet)
        catch_up = False
        failures = 0
        try:
            while self._rb is not None:
                batch: list[tuple[str, dict[str, str] | None]] = []
                try:
                    if not pubsub.subscribed:
                        await pubsub.subscribe(self._keys.events_channel)
                    if catch_up:
                        batch = await self._log_after(client, cursor)
                        catch_up = False
                    else:
                        message = await silence.read(pubsub)
                        kind = _s(message.get("type")) if message else ""
                        if kind == "subscribe":
                            catch_up = True
                        elif kind == "message" and message is not None:
                            try:
                                published_id, flat = json.loads(_s(message["data"]))
                                published = dict(zip(flat[::2], flat[1::2], strict=True))
                                _stream_id(published_id)
                            except (ValueError, TypeError, AttributeError):
                                # Not ours (someone else published here): the log says what happened.
                                catch_up = True
                            else:
                                batch = [(published_id, published)]
                except (RedisConnectionError, RedisTimeoutError) as exc:
                    # The cursor makes a retry lossless; give up only on a long outage.
                    failures += 1
                    if failures > _EVENT_RETRIES:
                        raise self._convert(exc) from exc
                    _note("redis event stream interrupted; retrying", error=str(exc))
                    await asyncio.sleep(_retry_delay(failures))
                    continue
                except RedisError as exc:
                    raise self._convert(exc) from exc
                failures = 0
                for entry_id, fields in batch:
                    position = _stream_id(entry_id)
                    if position <= cursor:
                        continue  # seen already (by the log, then the channel, or back)
                    cursor = position
                    event = _event_from_log(fields) if fields is not None else None
                    if event is None:
                        continue
                    if _entry_ms(entry_id) <= since_ms + _EVENT_REPLAY_MS and event.at < since:
                        continue  # replayed from before the call
                    yield event
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _log_after(
        self, client: Redis, cursor: tuple[int, int]
    ) -> list[tuple[str, dict[str, str] | None]]:
        """Every log entry after ``cursor``, oldest first."""
        out: list[tuple[str, dict[str, str] | None]] = []
        start = f"({cursor[0]}-{cursor[1]}"
        while True:
            page = _entries(await client.xrange(self._keys.log, start, "+", count=_EVENT_BATCH))
            out += page
            if len(page) < _EVENT_BATCH:
                return out
            start = f"({page[-1][0]}"

    @_edge_within(c.REDIS_GC_DEADLINE_FACTOR)
    async def gc(self) -> GcReport:
        """Delete what outlived retention: offline peers, old mail, stale wake-up endpoints."""
        client = self._client()
        now = time.time()
        cutoff = now - self._retention
        pairs = await self._load_all()
        await self._reap(pairs)
        removed_messages: set[str] = set()
        peers_removed = 0

        # Old unacked mail, from every mailbox (they hold only unacked entries).
        margin_ms = int(_HISTORY_SKEW * 1000)
        for peer, _ in pairs:
            start = "-"
            while start:
                reply = await self._run(
                    "expire", self._keys.mailbox(peer.id), repr(cutoff), margin_ms, start,
                    _EXPIRE_PAGE,
                )  # fmt: skip
                start = _s(reply[0])
                removed_messages.update(_s(m) for m in reply[1:])

        # Offline peers past retention (reaped ones included: their last_seen is old).
        # The script re-checks each candidate and deletes it in one step: a send to
        # it may land up to that moment, and then it stays with that mail.
        for peer, _ in pairs:
            if peer.last_seen < cutoff and int(
                await self._run("collect", self._keys.peer(peer.id), peer.id, repr(cutoff))
            ):
                peers_removed += 1

        # The log (and so history) keeps only the retention window.
        cutoff_id = f"{int(cutoff * 1000)}-0"
        old_sends = {
            fields["mid"]
            for _, fields in _entries(await client.xrange(self._keys.log, "-", f"({cutoff_id}"))
            if fields is not None and fields.get("k") == "message" and fields.get("mid")
        }
        if old_sends:
            # Delivered records usually expired already (their TTL ends with retention).
            # Unread ones stay: their mailbox entry may have moved to a successor gc
            # did not look at, and the next gc expires entry and record together.
            # (A record read as delivered stays delivered, so reading first is safe.)
            ordered = sorted(old_sends)
            async with client.pipeline(transaction=False) as pipe:
                for mid in ordered:
                    pipe.hmget(self._keys.message(mid), "m", "acked_at")
                states = dict(zip(ordered, await pipe.execute(), strict=True))
            delivered = [mid for mid, (body, acked) in states.items() if body and acked]
            if delivered:
                await client.delete(*[self._keys.message(m) for m in delivered])
            # Gone now, whether this gc or the record's own TTL removed it.
            removed_messages.update(
                mid for mid, (body, acked) in states.items() if acked or not body
            )
        await client.xtrim(self._keys.log, minid=cutoff_id)
        # Doorbells are pub/sub channels: nothing stays behind to collect.
        return GcReport(peers_removed=peers_removed, messages_removed=len(removed_messages))


def _describe(client: Redis, settings: Settings) -> str:
    """Where a ready-made client points, for messages (password never shown)."""
    if type(client).__module__.split(".")[0] == "fakeredis":
        return "fakeredis"
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    if "host" in kwargs:
        return f"redis://{kwargs['host']}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
    return redact_url(settings.url)
