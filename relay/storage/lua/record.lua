-- Shared by the scripts that read delivery records (prepended to them, not run alone).
-- A record is JSON: the full Delivery, or the summary kept for a delivered message, whose
-- first key is "v" (its format), whose keys are short and whose state goes without saying
-- (relay/core/summary.py).
-- read_record(raw): return the record's state, its organization id, and the decoded table.
-- is_finished(state): true for delivered and dead.
local function read_record(raw)
  local record = cjson.decode(raw)
  if record['v'] then return 'delivered', record['o'], record end
  return record['state'], record['org_id'], record
end

local function is_finished(state)
  return state == 'delivered' or state == 'dead'
end

-- chains_of(record, org_id, prefix): the keys of the chains a queued record waits in. Records
-- name them u:<username>, m:<manychat_id> or c:<contact_id> (accept.lua); records stored
-- before that hold the keys themselves.
local function chains_of(record, org_id, prefix)
  local root, keys = prefix .. ':chain:', {}
  for _, name in ipairs(record['contact_keys'] or {}) do
    if string.sub(name, 1, #root) == root then
      table.insert(keys, name)
    else
      table.insert(keys, root .. org_id .. ':' .. name)
    end
  end
  return keys
end
