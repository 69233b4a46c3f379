-- Give a worker's in-flight deliveries back to their queues and unregister it: a dead worker's
-- (its heartbeat expired), or a worker's own when it stops or finds itself declared dead.
-- A delivery another live worker holds a lease on is left to that worker; the leases of the
-- worker handed back are dropped, so its threads still running can no longer record a result.
-- KEYS[1]: the worker's processing list; KEYS[2]: the worker registry; KEYS[3]: the leases hash.
-- ARGV[1..4]: as requeue_if_lost.lua; ARGV[5]: the worker's name.
-- Returns how many were requeued.
local worker, leases = ARGV[5], KEYS[3]
local count = 0
while true do
  local id = redis.call('LPOP', KEYS[1])
  if not id then break end
  count = count + hand_back(id, redis.call('HGET', leases, id), worker, leases)
end
redis.call('SREM', KEYS[2], worker)
return count
