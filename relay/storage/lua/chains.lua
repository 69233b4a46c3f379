-- Shared by the scripts that touch contact chains (prepended to them, not run alone).
-- A contact's chain is one field of its organization's contacts hash (relay/storage/contacts.py),
-- 'q:<name>', holding the ids of its unfinished deliveries in acceptance order, separated by
-- spaces; a chain is named here by {hash key, field}. One hash field rather than a list key per
-- contact: a contact with one message waiting costs about 80 bytes of Redis instead of 240.
-- A change rewrites the field: cheap, since a chain is as long as its contact's unfinished
-- deliveries (at most the organization's pending quota, and in practice a handful).
-- chain_head(chain): the first id, or false. chain_remove(chain, id): take id out of it.
-- chain_joined(line, id): the field's value with id added at the end (line may be false).
-- chain_ensure(chain, id): add id at the end unless it is in the chain; true if added.
-- chain_placed(line, id, leases): the field's value with id placed by acceptance time (an id
-- starts with it), never ahead of a first id a worker has taken (its lease is in `leases`).
local function chain_head(chain)
  local line = redis.call('HGET', chain[1], chain[2])
  if not line then return false end
  return string.match(line, '^[^ ]+') or false
end

local function chain_remove(chain, id)
  local line = redis.call('HGET', chain[1], chain[2])
  if not line then return end
  local kept = {}
  for entry in string.gmatch(line, '[^ ]+') do
    if entry ~= id then table.insert(kept, entry) end
  end
  if #kept == 0 then
    redis.call('HDEL', chain[1], chain[2])
  else
    redis.call('HSET', chain[1], chain[2], table.concat(kept, ' '))
  end
end

local function chain_joined(line, id)
  if line then return line .. ' ' .. id end
  return id
end

local function chain_ensure(chain, id)
  local line = redis.call('HGET', chain[1], chain[2])
  if line then
    for entry in string.gmatch(line, '[^ ]+') do
      if entry == id then return false end
    end
  end
  redis.call('HSET', chain[1], chain[2], chain_joined(line, id))
  return true
end

local function chain_placed(line, id, leases)
  if not line then return id end
  local ids = {}
  for entry in string.gmatch(line, '[^ ]+') do table.insert(ids, entry) end
  -- 'dlv_' and the time: ids of one millisecond keep the order they came in.
  local stamp, at = string.sub(id, 1, 11), #ids + 1
  while at > 1 and string.sub(ids[at - 1], 1, 11) > stamp do
    if at - 1 == 1 and redis.call('HEXISTS', leases, ids[1]) == 1 then break end
    at = at - 1
  end
  table.insert(ids, at, id)
  return table.concat(ids, ' ')
end
