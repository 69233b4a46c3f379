-- Find deliveries whose RQ job an RQ tool deleted while they were queued or retrying
-- (rq-dashboard's delete of a queued or scheduled job): the record still waits, on no queue,
-- and would hold its contact's later deliveries parked for ever. (record.lua comes first.)
-- KEYS[1]: the index by reception time; KEYS[2]: the leases hash.
-- ARGV[1]: the key prefix; ARGV[2]: the RQ job key prefix; ARGV[3]: the index rank to start
-- at; ARGV[4]: how many index entries to look at.
-- Returns {the rank to start at next (0 once the index is done), the ids found...}. One in
-- flight (a lease holds it) is left to its worker.
local start, count = tonumber(ARGV[3]), tonumber(ARGV[4])
local page = redis.call('ZRANGE', KEYS[1], start, start + count - 1)
local found = {#page < count and 0 or start + #page}
for _, id in ipairs(page) do
  local raw = redis.call('GET', ARGV[1] .. ':d:' .. id)
  if raw and redis.call('EXISTS', ARGV[2] .. id) == 0 and not redis.call('HGET', KEYS[2], id) then
    local state = read_record(raw) or 'queued'  -- a compact record leaves out the default
    if state == 'queued' or state == 'retrying' then table.insert(found, id) end
  end
end
return found
