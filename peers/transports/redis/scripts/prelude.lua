-- Shared by every script (the Python side puts the namespace's key stems and
-- constants before it: PEER, ALIVE, MBOX, MSG, NAME, RING, WAKE, BACKLOG,
-- REGISTRY, OFFLINE, INBOX, HISTORY, LOG, EVENTS, CLAIMS, CLAIMANTS,
-- CLAIMS_VERSION, GROUP, CONSUMER, MAXLEN, RING_TTL, HOPS).

-- Append an event to the log and publish it, entry id included, for live readers.
local function log(...)
  local id = redis.call('XADD', LOG, 'MAXLEN', '~', MAXLEN, '*', ...)
  redis.call('PUBLISH', EVENTS, cjson.encode({id, {...}}))
  return id
end
-- A stream entry's field (entries are {id, {field, value, ...}}).
local function field(entry, name)
  local f = entry[2]
  if not f then return nil end
  for i = 1, #f, 2 do
    if f[i] == name then return f[i + 1] end
  end
  return nil
end
-- An entry's place in commit order: its stream id, or the 'o' field of an entry
-- that an older peers copied between mailboxes.
local function order_of(entry)
  return field(entry, 'o') or entry[1]
end
local function make_group(stream)
  -- MKSTREAM at 0: mail already in the stream is read too. BUSYGROUP is fine.
  redis.pcall('XGROUP', 'CREATE', stream, GROUP, '0', 'MKSTREAM')
end
-- Take a peer from the online registry to the offline one.
local function to_offline(id, peer)
  redis.call('DEL', ALIVE .. id)
  redis.call('HSET', peer, 'online', '0')
  redis.call('ZREM', REGISTRY, id)
  redis.call('ZADD', OFFLINE, tonumber(redis.call('HGET', peer, 'last_seen') or '0') or 0, id)
end
-- The peer that gets `id`'s mail now: the end of its successor chain (bounded).
local function final(id)
  for _ = 1, HOPS do
    local nxt = redis.call('HGET', PEER .. id, 'successor')
    if not nxt or nxt == '' or redis.call('EXISTS', PEER .. nxt) == 0 then break end
    id = nxt
  end
  return id
end
-- A peer's mailboxes: the inherited ones, then its own (ids of their owners).
local function boxes(id)
  local all = redis.call('SMEMBERS', BACKLOG .. id)
  all[#all + 1] = id
  return all
end
-- Drop a mailbox from the indexes once it is empty.
local function tidy(owner, reader)
  if redis.call('XLEN', MBOX .. owner) == 0 then
    redis.call('SREM', INBOX, owner)
    if owner ~= reader then redis.call('SREM', BACKLOG .. reader, owner) end
  end
end
-- Whether stream id a comes before b (milliseconds, then sequence).
local function before(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if tonumber(am) ~= tonumber(bm) then return tonumber(am) < tonumber(bm) end
  return tonumber(as) < tonumber(bs)
end
-- A peer's file claims end with it (an anonymous one's: nobody takes them over).
local function drop_claims(id)
  if redis.call('DEL', CLAIMS .. id) == 1 then
    redis.call('SREM', CLAIMANTS, id)
    redis.call('INCR', CLAIMS_VERSION)
  end
end
