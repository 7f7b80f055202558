-- Read file claims with what decides whether they count.
-- KEYS[1]: the claimants set. ARGV[1]: one holder id ('' = every claimant).
-- Returns {version, then per holder: id, online ('1'/'0'), alive ('1'/'0'),
-- record json ('' if gone), {field, claim json, ...}}.
local out = {redis.call('GET', CLAIMS_VERSION) or '0'}
local ids
if ARGV[1] ~= '' then ids = {ARGV[1]} else ids = redis.call('SMEMBERS', KEYS[1]) end
for _, id in ipairs(ids) do
  local claims = redis.call('HGETALL', CLAIMS .. id)
  if #claims > 0 then
    out[#out + 1] = id
    out[#out + 1] = redis.call('HGET', PEER .. id, 'online') or '0'
    out[#out + 1] = tostring(redis.call('EXISTS', ALIVE .. id))
    out[#out + 1] = redis.call('HGET', PEER .. id, 'data') or ''
    out[#out + 1] = claims
  end
end
return out
