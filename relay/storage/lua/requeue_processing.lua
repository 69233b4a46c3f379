-- Give a dead worker's in-flight deliveries back to their queues and unregister it.
-- KEYS[1]: the worker's processing list; KEYS[2]: the worker registry.
-- ARGV[1..4]: as requeue_if_lost.lua; ARGV[5]: the worker's name.
-- Returns how many were requeued.
local count = 0
while true do
  local id = redis.call('LPOP', KEYS[1])
  if not id then break end
  count = count + requeue_if_lost(id)
end
redis.call('SREM', KEYS[2], ARGV[5])
return count
