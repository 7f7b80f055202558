-- Take a peer offline. KEYS[1]: the peer hash. ARGV: id, mode, now, event data json.
-- Modes: 'unregister'; 'reap' (its TTL ran out: loses to a heartbeat that landed
-- since the caller looked); 'reap_pid' (its process is gone, whatever the TTL says).
-- Returns 0 (nothing changed), 1 (offline) or 2 (anonymous without mail: deleted).
local id, mode, now, data = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('HGET', KEYS[1], 'online') ~= '1' then return 0 end
if mode == 'reap' and redis.call('EXISTS', ALIVE .. id) == 1 then return 0 end
to_offline(id, KEYS[1])
local name = redis.call('HGET', KEYS[1], 'name') or ''
log('k', 'leave', 'p', id, 'n', name, 'at', now, 'd', data)
if name == '' then drop_claims(id) end
if mode == 'unregister' and name == '' and redis.call('XLEN', MBOX .. id) == 0
    and redis.call('SCARD', BACKLOG .. id) == 0 then
  -- Nothing can wait for an anonymous peer without mail: drop it.
  redis.call('DEL', KEYS[1], MBOX .. id)
  redis.call('ZREM', OFFLINE, id)
  return 2
end
return 1
