-- Shared by take.lua, finish.lua and release_stuck.lua (prepended to them, not run alone;
-- record.lua and chains.lua come first). ctx: {parked = the parked set, prefix = the key prefix,
-- queue_prefix = what an organization id is added to, to name its queue}.
-- wake_if_ready(id, ctx): if a parked delivery now heads every chain it is in, unpark it and
-- push it on its organization's queue; return true if woken.
-- release(id, chains, ctx): leave every chain; wake each parked successor that now heads all
-- of its chains; return the woken ids.
local function wake_if_ready(id, ctx)
  if redis.call('SISMEMBER', ctx.parked, id) == 0 then return false end
  local raw = redis.call('GET', ctx.prefix .. ':d:' .. id)
  if not raw then return false end
  local _, org_id, record = read_record(raw)
  for _, chain in ipairs(chains_of(record, org_id, ctx.prefix)) do
    if chain_head(chain) ~= id then return false end
  end
  redis.call('SREM', ctx.parked, id)
  redis.call('RPUSH', ctx.queue_prefix .. org_id, id)
  return true
end

local function release(id, chains, ctx)
  local woken = {}
  for _, chain in ipairs(chains) do chain_remove(chain, id) end
  for _, chain in ipairs(chains) do
    local head = chain_head(chain)
    if head and wake_if_ready(head, ctx) then table.insert(woken, head) end
  end
  return woken
end
