-- Start a delivery only when it heads every contact chain it is in; otherwise park it.
-- KEYS: the delivery's contact chains.
-- ARGV[1]: delivery id; ARGV[2]: the parked set.
-- Returns 1 to start now, 0 when parked.
for _, chain in ipairs(KEYS) do
  if redis.call('LINDEX', chain, 0) ~= ARGV[1] then
    redis.call('SADD', ARGV[2], ARGV[1])
    return 0
  end
end
redis.call('SREM', ARGV[2], ARGV[1])  -- a requeued copy may still be marked parked
return 1
