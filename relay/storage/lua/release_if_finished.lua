-- Release a delivery found finished, unless it is no longer: a replay may have just put it
-- back at the end of its chains, and that entry must stay.
-- KEYS: the delivery's contact chains. ARGV: as release_chains.lua.
-- Returns the ids of the successors woken.
local raw = redis.call('GET', prefix .. ':d:' .. id)
if raw then
  local state = cjson.decode(raw)['state']
  if state ~= 'delivered' and state ~= 'dead' then return {} end
end
return release(KEYS)
