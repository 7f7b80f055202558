-- Message records for reading back (get_message, history): for each id, the
-- message json, its recipient (for unread mail the peer that reads it now: the
-- end of the successor chain from the mailbox that holds it; delivered mail did
-- not move), acked_at and expired ('' when unset); all four '' for a record that
-- is gone. KEYS[1]: any key of the namespace. ARGV: message ids.
local out = {}
for i = 1, #ARGV do
  local r = redis.call('HMGET', MSG .. ARGV[i], 'm', 'rcpt', 'acked_at', 'expired')
  if r[1] and r[2] then
    local rcpt = (r[3] or r[4]) and r[2] or final(r[2])
    out[#out + 1] = {r[1], rcpt, r[3] or '', r[4] or ''}
  else
    out[#out + 1] = {'', '', '', ''}
  end
end
return out
