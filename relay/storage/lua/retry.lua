-- Put a delivery aside for a later attempt in one step, if the lease still holds: store its
-- record, schedule it, give up the lease, and log the failed attempt if there was one.
-- KEYS[1]: the record; KEYS[2]: the organization's schedule; KEYS[3]: the lease holder's
-- processing list; KEYS[4]: the leases hash; KEYS[5]: the log of the latest failed attempts;
-- KEYS[6]: the delivery's RQ job hash (relay/storage/rqjobs.py), whose schedule KEYS[2] is.
-- ARGV[1]: the delivery id; ARGV[2]: the lease, or '' when no worker holds one (tools and
-- tests); ARGV[3]: the record's JSON; ARGV[4]: when it is due (epoch s); ARGV[5]: the failed
-- attempt to log (JSON), or ''; ARGV[6]: how many entries the log keeps; ARGV[7..]: the RQ
-- job's fields and values, for HSET.
-- Returns {1} (also when this very step ran already: the client re-sent it after losing the
-- reply, and the record stored is the one given), or {0, the lease held now, or ''} when the
-- lease is no longer held (nothing is written).
local id = ARGV[1]
if ARGV[2] ~= '' then
  local held = redis.call('HGET', KEYS[4], id)
  if held ~= ARGV[2] then
    if not held and redis.call('GET', KEYS[1]) == ARGV[3] then return {1} end
    return {0, held or ''}
  end
  redis.call('HDEL', KEYS[4], id)
  redis.call('LREM', KEYS[3], 1, id)
end
redis.call('SET', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], id)
redis.call('HSET', KEYS[6], unpack(ARGV, 7))
if ARGV[5] ~= '' then
  redis.call('LPUSH', KEYS[5], ARGV[5])
  redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[6]) - 1)
end
return {1}
