-- Shared by requeue_processing.lua and requeue_orphans.lua (prepended to them, not run alone;
-- record.lua and leases.lua come first).
-- ARGV[1]: the key prefix; ARGV[2]: the queue key prefix; ARGV[3]: the schedule key prefix;
-- ARGV[4]: the parked set.
-- requeue_if_lost(id): put a delivery taken from a processing list back on its queue, unless
-- something else will run it: finished, parked behind its predecessor, scheduled, or already
-- queued again. Returns 1 if requeued.
-- hand_back(id, held, worker, leases): drop the lease `held` if `worker` holds it, then
-- requeue_if_lost(id) unless a live lease still holds it. Returns 1 if requeued.
local prefix, queue_prefix, scheduled_prefix, parked = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local function requeue_if_lost(id)
  local raw = redis.call('GET', prefix .. ':d:' .. id)
  if not raw then return 0 end
  local state, org_id = read_record(raw)
  if is_finished(state) then return 0 end
  local queue = queue_prefix .. org_id
  if redis.call('SISMEMBER', parked, id) == 1
    or redis.call('ZSCORE', scheduled_prefix .. org_id, id)
    or redis.call('LPOS', queue, id) then  -- O(queue length), but only when reclaiming
    return 0
  end
  redis.call('RPUSH', queue, id)
  return 1
end

local function hand_back(id, held, worker, leases)
  if held and lease_holder(held) == worker then
    redis.call('HDEL', leases, id)
    held = false
  end
  if lease_live(prefix, held) then return 0 end
  return requeue_if_lost(id)
end
