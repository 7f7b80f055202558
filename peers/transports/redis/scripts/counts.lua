-- Unread mail per recipient: every mailbox in the inbox index, counted for the
-- peer that reads it now (the end of its owner's successor chain). Mailboxes
-- found empty leave the index. KEYS[1]: the inbox set.
-- Returns a flat list: recipient id, count, ...
local totals, order = {}, {}
for _, owner in ipairs(redis.call('SMEMBERS', INBOX)) do
  local n = redis.call('XLEN', MBOX .. owner)
  if n == 0 then
    redis.call('SREM', INBOX, owner)
  else
    local rid = final(owner)
    if not totals[rid] then order[#order + 1] = rid; totals[rid] = 0 end
    totals[rid] = totals[rid] + n
  end
end
local out = {}
for _, rid in ipairs(order) do
  out[#out + 1] = rid
  out[#out + 1] = totals[rid]
end
return out
