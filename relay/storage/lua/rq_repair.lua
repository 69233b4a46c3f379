-- Put back at the head of their queue the jobs a stock `rq worker` failed: it takes a job off the
-- queue, refuses to run it and stops (workers/rqtask.py), and RQ then files the job as failed
-- though the delivery was never tried. (record.lua comes first.)
-- KEYS[1]: the queue's RQ FailedJobRegistry; KEYS[2]: the queue.
-- ARGV[1]: the key prefix; ARGV[2]: the RQ job key prefix; ARGV[3]: the RQ results key prefix.
-- Only queued or retrying deliveries go back: a dead letter (the relay's own failed job) stays.
-- Returns how many were put back.
local count = 0
-- Latest refused first: each goes to the head, so the earliest ends up first, as it was.
for _, id in ipairs(redis.call('ZREVRANGE', KEYS[1], 0, -1)) do
  local raw = redis.call('GET', ARGV[1] .. ':d:' .. id)
  local state = raw and (read_record(raw) or 'queued')  -- a compact record leaves out the default
  if state == 'queued' or state == 'retrying' then
    local job = ARGV[2] .. id
    redis.call('ZREM', KEYS[1], id)
    redis.call('LPUSH', KEYS[2], id)
    redis.call('HSET', job, 'status', 'queued')
    redis.call('HDEL', job, 'exc_info', 'ended_at', 'started_at', 'worker_name')
    redis.call('PERSIST', job)
    redis.call('DEL', ARGV[3] .. id)
    count = count + 1
  end
end
return count
