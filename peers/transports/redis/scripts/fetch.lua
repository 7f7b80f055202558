-- Read a peer's mail without consuming it: its inherited mailboxes and its own,
-- each the consumer's pending entries (read before, not acked), then new ones,
-- merged in commit order (on the same millisecond, inherited mail first: it was
-- committed before the claim). The ring marker goes first, so a send after this
-- point rings again. Entries read past the limit stay pending and come first
-- next time. Empty inherited mailboxes leave the backlog.
-- Messages whose id is skipped are left out, and do not count against the limit
-- (the caller has them already: they are not shipped, nor decoded twice).
-- KEYS[1]: the peer's own mailbox. ARGV: recipient id, limit, message ids to skip...
-- Returns the messages' JSON, oldest first (NOGROUP on the own mailbox is an error reply).
local rid, limit = ARGV[1], tonumber(ARGV[2])
local skip = {}
for i = 3, #ARGV do skip[ARGV[i]] = true end
local count = limit + #ARGV - 2
redis.call('DEL', RING .. rid)
-- A peer whose name passed on has no mail of its own left: its successor reads it.
local successor = redis.call('HGET', PEER .. rid, 'successor')
if successor and successor ~= '' then return {} end
local found = {}
local function read(stream, own)
  for _, start in ipairs({'0', '>'}) do
    local reply
    if own then
      reply = redis.call('XREADGROUP', 'GROUP', GROUP, CONSUMER, 'COUNT', count,
                         'STREAMS', stream, start)
    else
      reply = redis.pcall('XREADGROUP', 'GROUP', GROUP, CONSUMER, 'COUNT', count,
                          'STREAMS', stream, start)
      if type(reply) == 'table' and reply.err then return end
    end
    -- Redis answers {{stream, entries}} or nil; fakeredis {stream, entries}.
    local entries = reply and (type(reply[1]) == 'table' and reply[1][2] or reply[2]) or {}
    for _, entry in ipairs(entries or {}) do
      local body = field(entry, 'm')  -- nil for an entry deleted while pending
      if body and not skip[field(entry, 'id')] then
        local ms, seq = string.match(order_of(entry), '^(%d+)-(%d+)$')
        found[#found + 1] = {tonumber(ms), own and 1 or 0, tonumber(seq), body}
      end
    end
  end
end
for _, owner in ipairs(redis.call('SMEMBERS', BACKLOG .. rid)) do
  if owner ~= rid then
    make_group(MBOX .. owner)  -- lost with the data of a restart: the mail is still there
    read(MBOX .. owner, false)
    tidy(owner, rid)
  end
end
read(KEYS[1], true)
table.sort(found, function(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] end
  if a[2] ~= b[2] then return a[2] < b[2] end
  return a[3] < b[3]
end)
local out = {}
for i = 1, math.min(#found, limit) do out[i] = found[i][4] end
return out
