-- Ack a recipient's own pending messages (in its mailbox or one it inherited):
-- XACK + XDEL, and the message record then lives until the end of its
-- retention window.
-- KEYS[1]: the recipient's mailbox. ARGV: recipient id, now, retention seconds, message ids...
local rid, now, retention = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local n = 0
local successor = redis.call('HGET', PEER .. rid, 'successor')
if successor and successor ~= '' then return 0 end  -- its mail is its successor's now
for i = 4, #ARGV do
  local key = MSG .. ARGV[i]
  local m = redis.call('HMGET', key, 'rcpt', 'entry', 'acked_at', 't', 'expired')
  local owner = m[1]
  local mine = owner == rid or (owner and redis.call('SISMEMBER', BACKLOG .. rid, owner) == 1)
  if mine and m[2] and not m[3] and not m[5] then
    redis.call('XACK', MBOX .. owner, GROUP, m[2])
    if redis.call('XDEL', MBOX .. owner, m[2]) == 1 then
      redis.call('HSET', key, 'acked_at', ARGV[2])
      local left = math.floor((tonumber(m[4]) + retention - now) * 1000)
      redis.call('PEXPIRE', key, math.max(left, 1))
      n = n + 1
    end
    tidy(owner, rid)
  end
end
return n
