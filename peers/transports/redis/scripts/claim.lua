-- Register a peer and claim its name.
-- KEYS[1]: the peer hash. ARGV: id, name ('' = none), expected holder ('' = none),
-- record json, now, ttl ms, join event data json, then the updatable fields as
-- field, value pairs (see update.lua).
-- Returns {'ok'} | {'raced', holder} | {'taken', holder}.
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
redis.call('ZREM', OFFLINE, id)
take_name(id, name, holder)
log('k', 'join', 'p', id, 'n', name, 'at', now, 'd', data)
return {'ok'}
