-- The online registry for listing, reaping on the way (a page at most per call)
-- the peers whose alive key is gone: they move to the offline set, once, and never
-- cost a listing again, so a listing costs what the live peers cost.
-- KEYS[1]: the registry. ARGV: now, page, leave event data json.
-- Returns {more ('1' when expired peers were left for the next call), reaped ids...,
-- '', then per peer with an alive key: id, '1', its hash as a flat list}.
local now, page, data = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local reaped, listed, more = {}, {}, '0'
for _, id in ipairs(redis.call('ZRANGE', REGISTRY, 0, -1)) do
  local peer = PEER .. id
  local online = redis.call('HGET', peer, 'online')
  if online ~= '1' then
    -- Offline (or gone) but still listed, as an older peers left it: file it away.
    redis.call('ZREM', REGISTRY, id)
    if online then redis.call('ZADD', OFFLINE, redis.call('HGET', peer, 'last_seen') or 0, id) end
  elseif redis.call('EXISTS', ALIVE .. id) == 1 then
    listed[#listed + 1] = {id, '1'}
  elseif #reaped < page then
    to_offline(id, peer)
    local name = redis.call('HGET', peer, 'name') or ''
    log('k', 'leave', 'p', id, 'n', name, 'at', now, 'd', data)
    if name == '' then drop_claims(id) end
    reaped[#reaped + 1] = id
  else
    more = '1'  -- expired, left for the next call (not listed: it is not live)
  end
end
local out = {more}
for _, id in ipairs(reaped) do out[#out + 1] = id end
out[#out + 1] = ''
for _, item in ipairs(listed) do
  out[#out + 1] = item[1]
  out[#out + 1] = item[2]
  out[#out + 1] = redis.call('HGETALL', PEER .. item[1])
end
return out
