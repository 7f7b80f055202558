-- Collect an offline peer past retention with no unread mail (that mail waits for
-- the name's next holder): record, mailbox, liveness, doorbell and backlog keys,
-- index entries, and the name if it still points here. The checks and the
-- delete are one step, so a send cannot land in between and be deleted.
-- KEYS[1]: the peer hash. ARGV: id, cutoff (last_seen before it is past retention).
-- Returns 1 if collected.
local id = ARGV[1]
local p = redis.call('HMGET', KEYS[1], 'online', 'last_seen', 'name')
if not p[2] or p[1] == '1' or tonumber(p[2]) >= tonumber(ARGV[2]) then return 0 end
if redis.call('XLEN', MBOX .. id) > 0 or redis.call('SCARD', BACKLOG .. id) > 0 then return 0 end
redis.call('DEL', KEYS[1], MBOX .. id, ALIVE .. id, RING .. id, BACKLOG .. id)
redis.call('ZREM', OFFLINE, id)
redis.call('ZREM', REGISTRY, id)
redis.call('SREM', INBOX, id)
if p[3] and p[3] ~= '' and redis.call('GET', NAME .. p[3]) == id then
  redis.call('DEL', NAME .. p[3])
end
return 1
