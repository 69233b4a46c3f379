-- Give back deliveries of a live worker's own processing list that none of its threads works
-- on any more (a thread that could not record its result, e.g. Redis was down). The worker
-- takes nothing while this runs, so every lease it holds in flight is among ARGV[6..].
-- KEYS[1]: the worker's processing list; KEYS[2]: the leases hash.
-- ARGV[1..4]: as requeue_if_lost.lua; ARGV[5]: the worker's name; ARGV[6..]: the leases
-- ('holder token') its threads work on now.
-- Returns how many were requeued.
local list, leases, worker = KEYS[1], KEYS[2], ARGV[5]
local working = {}
for i = 6, #ARGV do working[ARGV[i]] = true end
local count = 0
for _, id in ipairs(redis.call('LRANGE', list, 0, -1)) do
  local held = redis.call('HGET', leases, id)
  if not (held and working[held]) then
    redis.call('LREM', list, 1, id)
    count = count + hand_back(id, held, worker, leases)
  end
end
return count
