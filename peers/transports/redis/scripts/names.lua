-- Name claims, shared by claim.lua and update.lua (concatenated before them).

-- Whom a claim of `name` by `id` displaces: false (nobody) or the previous
-- holder's id; or, as a second value, the reply that refuses the claim. The
-- caller looked first and names the holder it expects (`expected`, '' = none).
local function displaced(id, name, expected)
  if name == '' then return false end
  local holder = redis.call('GET', NAME .. name)
  if not holder or holder == id then return false end
  if holder ~= expected then return false, {'raced', holder} end
  if redis.call('HGET', PEER .. holder, 'online') == '1'
      and redis.call('EXISTS', ALIVE .. holder) == 1 then
    return false, {'taken', holder}
  end
  return holder
end

-- Give `id` the name (releasing its old one), and take the previous holder's
-- place: its successor pointer names `id`, and its mailbox (with those it had
-- inherited itself) joins `id`'s backlog. No mail moves: fetch reads the backlog
-- with the own mailbox, so this step costs the same for any number of messages.
local function take_name(id, name, holder)
  local peer = PEER .. id
  local old = redis.call('HGET', peer, 'name')
  if old and old ~= '' and old ~= name and redis.call('GET', NAME .. old) == id then
    redis.call('DEL', NAME .. old)
  end
  redis.call('HSET', peer, 'name', name)
  make_group(MBOX .. id)
  if name ~= '' then
    redis.call('SET', NAME .. name, id)
  end
  if holder then
    redis.call('HSET', PEER .. holder, 'name', '', 'successor', id)
    for _, owner in ipairs(boxes(holder)) do
      if owner ~= id and redis.call('XLEN', MBOX .. owner) > 0 then
        redis.call('SADD', BACKLOG .. id, owner)
      end
    end
    redis.call('DEL', BACKLOG .. holder)
    -- Its file claims too, like its mail (a claim of its own on a path wins).
    local inherited = redis.call('HGETALL', CLAIMS .. holder)
    if #inherited > 0 then
      for i = 1, #inherited, 2 do
        redis.call('HSETNX', CLAIMS .. id, inherited[i], inherited[i + 1])
      end
      redis.call('SADD', CLAIMANTS, id)
      drop_claims(holder)
    end
  end
end
