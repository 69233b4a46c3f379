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
