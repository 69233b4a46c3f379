-- Record a final state and leave the chains in one step: a crash between the two would leave
-- a finished delivery heading its chains, and every later one for the contact parked forever.
-- The record is written last, so a failure before it leaves the delivery to run again.
-- KEYS[1]: the record; KEYS[2]: the pending counts (hash by organization); KEYS[3]: RQ's job
-- hash; KEYS[4]: the dead letter index; KEYS[5..]: the contact chains.
-- ARGV[1..4]: as release_chains.lua; ARGV[5]: the record's JSON; ARGV[6]: its TTL (s);
-- ARGV[7]: the job hash's TTL (s); ARGV[8]: the dead-letter score, or '' when delivered;
-- ARGV[9]: the organization id.
-- Returns the ids of the successors woken.
local record, pending, job, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
-- Count it out once: a delivery finished twice (at-least-once) was stored final the first time.
local stored = redis.call('GET', record)
local state = stored and cjson.decode(stored)['state']
if stored and state ~= 'delivered' and state ~= 'dead' then
  redis.call('HINCRBY', pending, ARGV[9], -1)
end
redis.call('EXPIRE', job, ARGV[7])
if ARGV[8] ~= '' then redis.call('ZADD', dead, ARGV[8], id) end
local woken = release({unpack(KEYS, 5)})
redis.call('SET', record, ARGV[5], 'EX', ARGV[6])
return woken
