-- KEYS: the log of sends in the window, the next free wake-up slot.
-- ARGV: window, limit, reserved (1 if the caller was given a slot), member (new for each call).
-- Time comes from Redis itself, so workers on machines with skewed clocks agree.
-- Returns 0 to go now, or the seconds to wait: the caller's reserved slot, spaced so that
-- waiters wake one by one instead of all at once. A permit given is given again to the same
-- call run twice (the client re-sent it after losing the reply), not refused as one too many.
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then return '0' end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local window, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local reserved = ARGV[3] == '1'
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local cursor = tonumber(redis.call('GET', KEYS[2]) or '0')
if count < limit and (reserved or cursor <= now) then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
  return '0'
end
local free_at = now
if count >= limit then
  free_at = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]) + window
end
local wake = math.max(free_at, cursor)
local spacing = window / limit
local keep_ms = math.ceil((wake + spacing - now + window) * 1000)
redis.call('SET', KEYS[2], tostring(wake + spacing), 'PX', keep_ms)
return tostring(wake - now)
