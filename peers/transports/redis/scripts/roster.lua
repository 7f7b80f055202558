-- The online registry for listing, after reaping one page of peers whose last
-- heartbeat is older than the cutoff and whose alive key is gone: they move to
-- the offline set, once, and never cost a listing again.
-- KEYS[1]: the registry. ARGV: now, cutoff (seconds), page, event data json.
-- Returns {more ('1' when a full page was looked at), reaped ids..., '', then
-- per online peer: id, alive ('1' | '0'), its hash as a flat list}.
local now, cutoff, page, data = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local stale = redis.call('ZRANGE', REGISTRY, '-inf', '(' .. cutoff, 'BYSCORE', 'LIMIT', 0, page)
local out = {#stale == page and '1' or '0'}
for _, id in ipairs(stale) do
  local peer = PEER .. id
  local online = redis.call('HGET', peer, 'online')
  if online ~= '1' then
    -- Offline (or gone) but still listed, as an older peers left it: file it away.
    redis.call('ZREM', REGISTRY, id)
    if online then redis.call('ZADD', OFFLINE, redis.call('HGET', peer, 'last_seen') or 0, id) end
  elseif redis.call('EXISTS', ALIVE .. id) == 0 then
    to_offline(id, peer)
    log('k', 'leave', 'p', id, 'n', redis.call('HGET', peer, 'name') or '', 'at', now, 'd', data)
    out[#out + 1] = id
  end
end
out[#out + 1] = ''
for _, id in ipairs(redis.call('ZRANGE', REGISTRY, 0, -1)) do
  local record = redis.call('HGETALL', PEER .. id)
  if #record > 0 then
    out[#out + 1] = id
    out[#out + 1] = tostring(redis.call('EXISTS', ALIVE .. id))
    out[#out + 1] = record
  end
end
return out
