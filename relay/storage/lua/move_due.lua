-- Move due scheduled deliveries onto their queues; atomic, so several workers never double.
-- (rq_job.lua comes first: each moved job's RQ status becomes 'queued'.)
-- KEYS[i]: an organization's schedule; ARGV[1]: now (epoch s); ARGV[i + 1]: its queue key.
-- Returns how many moved (at most 500 per schedule per call).
local moved = 0
for i, scheduled in ipairs(KEYS) do
  local due = redis.call('ZRANGEBYSCORE', scheduled, '-inf', ARGV[1], 'LIMIT', 0, 500)
  for _, id in ipairs(due) do
    redis.call('ZREM', scheduled, id)
    redis.call('RPUSH', ARGV[i + 1], id)
    local job = RQ_JOB_PREFIX .. id
    if redis.call('EXISTS', job) == 1 then redis.call('HSET', job, 'status', 'queued') end
    moved = moved + 1
  end
end
return moved
