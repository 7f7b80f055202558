-- Heartbeat: refresh a live peer. KEYS[1]: the peer hash. ARGV: id, now, ttl ms.
-- Returns 0 if offline or unknown.
local id, now = ARGV[1], ARGV[2]
if redis.call('HGET', KEYS[1], 'online') ~= '1' then return 0 end
redis.call('HSET', KEYS[1], 'last_seen', now)
redis.call('SET', ALIVE .. id, '1', 'PX', ARGV[3])
redis.call('ZADD', REGISTRY, now, id)
return 1
