-- Remove a mailbox's mail sent before the cutoff, entries and message records
-- together. One page of entries per call, so a huge mailbox never blocks the
-- server for long; a mailbox is in commit order, so the scan stops at the first
-- entry committed well after the cutoff (the margin covers clock skew between
-- the server and the senders, whose sent_at decides). An emptied mailbox leaves
-- the inbox index.
-- KEYS[1]: the mailbox. ARGV: owner id, cutoff (seconds since the epoch), margin
-- (ms), start (exclusive entry id, or '-'), page size.
-- Returns {next start or '' when done, removed ids...}.
local owner, cutoff, margin, start = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
if start ~= '-' then start = '(' .. start end
local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', ARGV[5])
local out = {''}
local function done()
  if redis.call('XLEN', KEYS[1]) == 0 then redis.call('SREM', INBOX, owner) end
  return out
end
for _, entry in ipairs(entries) do
  local committed = tonumber(string.match(order_of(entry), '^(%d+)'))
  if committed > cutoff * 1000 + margin then return done() end
  local mid, body = field(entry, 'id'), field(entry, 'm')
  if mid and body then
    local ok, message = pcall(cjson.decode, body)
    local sent = ok and type(message) == 'table' and tonumber(message['sent_at'])
    if sent and sent < cutoff then
      redis.call('XACK', KEYS[1], GROUP, entry[1])
      redis.call('XDEL', KEYS[1], entry[1])
      redis.call('DEL', MSG .. mid)
      out[#out + 1] = mid
    end
  end
end
if #entries == tonumber(ARGV[5]) then out[1] = entries[#entries][1] end
return done()
