-- Shared by release_if_finished.lua and finish.lua (prepended to them, not run alone).
-- ARGV[1]: delivery id; ARGV[2]: the parked set; ARGV[3]: the key prefix; ARGV[4]: the
-- queue key prefix an organization id is added to.
-- release(chains): leave every chain; wake each parked successor that now heads all of its
-- chains by pushing it on its organization's queue; return the woken ids.
local id, parked, prefix, queue_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local chain_root = prefix .. ':chain:'
-- A record names its chains u:<username>, m:<manychat_id>, c:<contact_id>; records stored
-- before that hold the chain keys themselves.
local function chain_key(org_id, name)
  if string.sub(name, 1, #chain_root) == chain_root then return name end
  return chain_root .. org_id .. ':' .. name
end
local function release(chains)
  local woken = {}
  for _, chain in ipairs(chains) do redis.call('LREM', chain, 1, id) end
  for _, chain in ipairs(chains) do
    local head = redis.call('LINDEX', chain, 0)
    if head and redis.call('SISMEMBER', parked, head) == 1 then
      local raw = redis.call('GET', prefix .. ':d:' .. head)
      local ready = raw ~= false
      if ready then
        local next = cjson.decode(raw)
        for _, other in ipairs(next['contact_keys'] or {}) do
          if redis.call('LINDEX', chain_key(next['org_id'], other), 0) ~= head then
            ready = false
          end
        end
        if ready then
          redis.call('SREM', parked, head)
          redis.call('RPUSH', queue_prefix .. next['org_id'], head)
          table.insert(woken, head)
        end
      end
    end
  end
  return woken
end
