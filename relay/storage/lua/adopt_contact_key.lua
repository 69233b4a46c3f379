-- Move one key of an earlier version's layout (a key per contact) into the contacts hash, once
-- at upgrade: a chain list into its field (its ids first: they were accepted before any id
-- the field holds), an alias string into its field with the time it had left.
-- KEYS[1]: the old key; KEYS[2]: the contacts hash. ARGV[1]: 'q:' (a chain) or 'a:' (an
-- alias); ARGV[2]: the field; ARGV[3]: now (epoch s). Returns 1 if anything was moved.
local old, contacts, field = KEYS[1], KEYS[2], ARGV[2]
local moved = 0
if ARGV[1] == 'q:' then
  local ids = redis.call('LRANGE', old, 0, -1)
  if #ids > 0 then
    local line = table.concat(ids, ' ')
    local current = redis.call('HGET', contacts, field)
    if current then line = line .. ' ' .. current end
    redis.call('HSET', contacts, field, line)
    moved = 1
  end
else
  local username, ttl = redis.call('GET', old), redis.call('TTL', old)
  local current = redis.call('HGET', contacts, field)
  -- A link written since the upgrade wins, unless it only says the manychat_id was used alone.
  local replace = not current or (string.sub(current, 1, 1) == '|' and username ~= '')
  if username and ttl > 0 and replace then
    redis.call('HSET', contacts, field, username .. '|' .. math.floor(tonumber(ARGV[3]) + ttl))
    moved = 1
  end
end
redis.call('DEL', old)
return moved
