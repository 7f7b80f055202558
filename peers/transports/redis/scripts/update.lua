-- Update a live peer: set the given fields, claim a new name, log SUMMARY and
-- RENAME. Only the given fields are written, each in its own hash field
-- ('summary', 'files' as a JSON list, 'mode', 'push', 'hooks_at'; 'data' keeps
-- the record as registered and these win over it), so concurrent updates of
-- different fields both stand, and a record deleted meanwhile is not written back.
-- KEYS[1]: the peer hash. ARGV: id, now, new name ('' = unchanged), its expected
-- holder ('' = none), then field, value pairs.
-- Returns {'ok', hash fields and values...} | {'gone'} | {'raced', holder} | {'taken', holder}.
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
