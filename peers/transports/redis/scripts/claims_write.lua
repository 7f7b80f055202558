-- Store a holder's claims as decided on a read, unless another claims write came
-- in between (then the caller reads again and decides again).
-- KEYS[1]: the holder's claims hash. ARGV: holder id, expected version ('' = any),
-- require live ('1'/'0'), count of fields to delete, those fields, then field,
-- claim json pairs to set. Returns {'ok'} | {'raced'} | {'gone'} (holder not live).
local id, expected, live = ARGV[1], ARGV[2], ARGV[3]
if live == '1' and (redis.call('HGET', PEER .. id, 'online') ~= '1'
    or redis.call('EXISTS', ALIVE .. id) == 0) then
  return {'gone'}
end
if expected ~= '' and (redis.call('GET', CLAIMS_VERSION) or '0') ~= expected then
  return {'raced'}
end
local ndel = tonumber(ARGV[4])
for i = 5, 4 + ndel do
  redis.call('HDEL', KEYS[1], ARGV[i])
end
for i = 5 + ndel, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SADD', CLAIMANTS, id)
else
  redis.call('SREM', CLAIMANTS, id)
end
redis.call('INCR', CLAIMS_VERSION)
return {'ok'}
