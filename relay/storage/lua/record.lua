-- Shared by the scripts that read delivery records (prepended to them, not run alone).
-- A record is JSON whose first key is "v", its format: 2 for a delivery on its way, under
-- short keys (relay/core/record.py), 1 for the summary kept for a delivered message, whose
-- state goes without saying (relay/core/summary.py).
-- read_record(raw): return the record's state, its organization id, and the decoded table.
-- is_finished(state): true for delivered, dead and held (never queued).
local function read_record(raw)
  local record = cjson.decode(raw)
  if record['v'] == 1 then return 'delivered', record['o'], record end
  return record['s'], record['o'], record
end

local function is_finished(state)
  return state == 'delivered' or state == 'dead' or state == 'held'
end

-- chains_of(record, org_id, prefix): the chains a queued record waits in, as {hash key,
-- field} pairs (chains.lua): field 'q:<name>' of its organization's contacts hash for each name
-- the record lists, u:<username>, m:<manychat_id> or c:<contact_id> (accept.lua).
local function chains_of(record, org_id, prefix)
  local contacts, chains = prefix .. ':contacts:' .. org_id, {}
  local names = record['k']
  if not names then
    -- A compact record leaves out the chains it names by default: its username's.
    local username = record['b'] and record['b']['username']
    names = (type(username) == 'string' and username ~= '') and {'u:' .. username} or {}
  end
  for _, name in ipairs(names) do
    table.insert(chains, {contacts, 'q:' .. name})
  end
  return chains
end
