-- Bring peers of an older key layout (version 1: every peer ever seen in the
-- registry, no inbox index, history only in the capped log) to version 2, a page
-- of registry ids per call. Safe to run twice and alongside other writers.
-- KEYS[1]: the meta hash. ARGV: version, done ('1' on the last call), ids...
for i = 3, #ARGV do
  local id = ARGV[i]
  local online = redis.call('HGET', PEER .. id, 'online')
  if online ~= '1' then
    redis.call('ZREM', REGISTRY, id)
    if online then redis.call('ZADD', OFFLINE, redis.call('HGET', PEER .. id, 'last_seen') or 0, id) end
  end
  if redis.call('EXISTS', MBOX .. id) == 1 and redis.call('XLEN', MBOX .. id) > 0 then
    redis.call('SADD', INBOX, id)
  end
end
if ARGV[2] == '1' then
  -- Sends the old log still holds become history entries, under their log ids.
  if redis.call('EXISTS', HISTORY) == 0 then
    for _, entry in ipairs(redis.call('XRANGE', LOG, '-', '+')) do
      local mid = field(entry, 'mid')
      if field(entry, 'k') == 'message' and mid then
        redis.pcall('XADD', HISTORY, entry[1], 'mid', mid)
      end
    end
  end
  redis.call('HSET', KEYS[1], 'version', ARGV[1])
end
return 1
