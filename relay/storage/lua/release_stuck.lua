-- Free contacts whose chain is headed by a delivery that will never finish: its record has
-- vanished (expired, evicted, deleted by hand), or it is finished yet still heads it. Only parked deliveries wait on a head, so this looks at one
-- page of the parked set, and wakes those that head all their chains afterwards.
-- (record.lua, chains.lua and release_chains.lua come first.)
-- KEYS[1]: the parked set. ARGV[1]: the key prefix; ARGV[2]: the queue key prefix;
-- ARGV[3]: the SSCAN cursor; ARGV[4]: the page size.
-- A parked delivery missing from one of its chains joins its end.
-- Returns {next cursor, released entries ('id hash field')..., '', woken ids..., '', rejoined
-- entries ('id hash field')...}.
local parked = KEYS[1]
local ctx = {parked = parked, prefix = ARGV[1], queue_prefix = ARGV[2]}

local function stuck(head)
  local raw = redis.call('GET', ctx.prefix .. ':d:' .. head)
  return not raw or is_finished((read_record(raw)))
end

local page = redis.call('SSCAN', parked, ARGV[3], 'COUNT', ARGV[4])
local released, woken, rejoined = {}, {}, {}
for _, id in ipairs(page[2]) do
  local raw = redis.call('GET', ctx.prefix .. ':d:' .. id)
  if not raw then
    redis.call('SREM', parked, id)  -- vanished itself: freed from its chains once it heads them
  else
    local state, org_id, record = read_record(raw)
    for _, chain in ipairs(chains_of(record, org_id, ctx.prefix)) do
      -- Missing from its own chain (a replay whose join failed): it joins the end rather
      -- than wait forever.
      if not is_finished(state) and chain_ensure(chain, id) then
        table.insert(rejoined, id .. ' ' .. chain[1] .. ' ' .. chain[2])
      end
      local head = chain_head(chain)
      while head and head ~= id and stuck(head) do  -- each turn shortens the chain
        chain_remove(chain, head)
        table.insert(released, head .. ' ' .. chain[1] .. ' ' .. chain[2])
        head = chain_head(chain)
      end
    end
    if wake_if_ready(id, ctx) then table.insert(woken, id) end
  end
end
local result = {page[1]}
for _, entry in ipairs(released) do table.insert(result, entry) end
table.insert(result, '')
for _, id in ipairs(woken) do table.insert(result, id) end
table.insert(result, '')
for _, entry in ipairs(rejoined) do table.insert(result, entry) end
return result
