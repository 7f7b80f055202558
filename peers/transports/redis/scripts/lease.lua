-- Take or renew a lease. KEYS[1]: the lease key. ARGV: holder, ttl ms.
-- Returns 1 when the holder has it now, 0 while another's lease runs.
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
