-- Store messages for their recipients, following successor pointers, and ring
-- them: one call carries every send that queued up meanwhile (see batching.py),
-- each handled on its own (one's failure leaves the others standing).
-- KEYS[1]: any key of the namespace. ARGV: now, max unread, retention seconds,
-- expiry page, then one value per message: recipient id, message id, sender id,
-- sender name, broadcast ('1' | '0'), sent_at and the message json, joined by NUL
-- (which none of them holds: JSON escapes it, the rest are checked). One value
-- rather than seven: the client packs each value separately.
-- Returns one line per message: the final recipient's id, or '!nopeer',
-- '!conflict' or '!error <reply>' (one string: the client parses it in one piece).
local now, cap, retention, page = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}

-- The oldest mail past the cap leaves the mailbox (the inherited ones included),
-- a page per send at most; its record stays until its retention ends, marked
-- expired, and one EXPIRED event names it.
local function enforce_cap(rid)
  local owners, total = boxes(rid), 0
  for _, owner in ipairs(owners) do total = total + redis.call('XLEN', MBOX .. owner) end
  local excess = math.min(total - cap, page)
  if excess <= 0 then return end
  local dropped = {}
  for _ = 1, excess do
    local oldest, from = nil, nil
    for _, owner in ipairs(owners) do
      local head = redis.call('XRANGE', MBOX .. owner, '-', '+', 'COUNT', 1)[1]
      if head and (not oldest or before(order_of(head), order_of(oldest))) then
        oldest, from = head, owner
      end
    end
    if not oldest then break end
    redis.call('XACK', MBOX .. from, GROUP, oldest[1])
    redis.call('XDEL', MBOX .. from, oldest[1])
    local mid = field(oldest, 'id')
    if mid then
      local key = MSG .. mid
      redis.call('HSET', key, 'expired', now)
      local sent = tonumber(redis.call('HGET', key, 't') or now) or tonumber(now)
      redis.call('PEXPIRE', key, math.max(math.floor((sent + retention - tonumber(now)) * 1000), 1))
      dropped[#dropped + 1] = mid
    end
    tidy(from, rid)
  end
  log('k', 'expired', 'p', rid, 'n', '', 'at', now, 'd',
      cjson.encode({ids = dropped, recipient_id = rid, reason = 'mailbox full'}))
end

local function send(rid, mid, sender, sender_name, broadcast, sent_at, body)
  local stored = redis.call('HMGET', MSG .. mid, 'rcpt', 'm', 'acked_at', 'expired')
  if stored[1] then
    -- Already stored: a retry whose first reply was lost is not a second message.
    if stored[2] ~= body then return '!conflict' end
    if stored[3] or stored[4] then return stored[1] end  -- read (or dropped): it stays put
    return final(stored[1])  -- unread: whoever reads that mailbox now
  end
  if redis.call('EXISTS', PEER .. rid) == 0 then return '!nopeer' end
  rid = final(rid)
  local entry = redis.call('XADD', MBOX .. rid, '*', 'id', mid, 'm', body)
  redis.call('SADD', INBOX, rid)
  redis.call('HSET', MSG .. mid, 'm', body, 'rcpt', rid, 'entry', entry, 't', sent_at)
  redis.call('XADD', HISTORY, '*', 'mid', mid)
  log('k', 'message', 'p', sender, 'n', sender_name, 'at', now, 'mid', mid, 'r', rid,
      'b', broadcast)
  enforce_cap(rid)
  -- One ring until the recipient fetches: a pending ring already makes it read this too.
  if redis.call('SET', RING .. rid, '1', 'NX', 'PX', RING_TTL) then
    redis.call('PUBLISH', WAKE .. rid, '')
  end
  return rid
end

for i = 5, #ARGV do
  local packed, f, at = ARGV[i], {}, 1
  for k = 1, 6 do
    local nul = string.find(packed, '\0', at, true)
    f[k] = string.sub(packed, at, nul - 1)
    at = nul + 1
  end
  -- An error reply (a key of the wrong type...) fails this message only.
  local ok, result = pcall(send, f[1], f[2], f[3], f[4], f[5], f[6], string.sub(packed, at))
  if not ok then
    local why = type(result) == 'table' and (result.err or '?') or tostring(result)
    result = '!error ' .. string.gsub(why, '[\r\n]', ' ')
  end
  out[#out + 1] = result
end
return table.concat(out, '\n')
