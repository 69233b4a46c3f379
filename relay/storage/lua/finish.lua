-- Record a final state and leave the chains in one step, if the lease still holds: a crash
-- between the two would leave a finished delivery heading its chains, and every later one for
-- the contact parked. The record is written last, so a failure before it leaves the delivery
-- to run again. (record.lua, chains.lua and release_chains.lua come first.)
-- The outcome is then handed to web requests waiting for it (relay/storage/answers.py), in
-- the same step: an answer is published exactly when the delivery is finished.
-- KEYS[1]: the record; KEYS[2]: the pending counts (hash by organization); KEYS[3]: the
-- dead-letter index; KEYS[4]: the lease holder's processing list; KEYS[5]: the leases hash;
-- KEYS[6]: the answer key; KEYS[7]: the organization's contacts hash; KEYS[8]: the pending
-- bytes (hash by organization); KEYS[9]: each pending delivery's bytes.
-- KEYS[10]: the delivery's RQ job hash; KEYS[11]: its queue's RQ FailedJobRegistry; KEYS[12]: its
-- RQ results stream.
-- ARGV[1]: the delivery id; ARGV[2]: the parked set; ARGV[3]: the key prefix; ARGV[4]: the
-- queue key prefix; ARGV[5]: the lease, or '' when no worker holds one (tools and tests);
-- ARGV[6]: the record's JSON; ARGV[7]: its TTL (s); ARGV[8]: the dead-letter score, or ''
-- when delivered; ARGV[9]: the outcome's JSON; ARGV[10]: its TTL (s); ARGV[11]: the answers
-- channel; ARGV[12]: the message to publish; ARGV[13]: the organization id; ARGV[14]: '' when
-- delivered (the RQ job goes), else JSON {fields = the dead job's fields and values, result = its
-- failure entry for the results stream} (relay/storage/rqjobs.py); ARGV[15..]: the fields of
-- the contact's chains (chains.lua).
-- Returns {1, woken ids...}; {1} when this very finish ran already (the client re-sent it
-- after losing the reply: the record stored is the one given); or {0, the lease held now, or
-- ''} when the lease is no longer held (nothing is written).
local id = ARGV[1]
local ctx = {parked = ARGV[2], prefix = ARGV[3], queue_prefix = ARGV[4]}
if ARGV[5] ~= '' then
  local held = redis.call('HGET', KEYS[5], id)
  if held ~= ARGV[5] then
    if not held and redis.call('GET', KEYS[1]) == ARGV[6] then return {1} end
    return {0, held or ''}
  end
  redis.call('HDEL', KEYS[5], id)
  redis.call('LREM', KEYS[4], 1, id)
end
-- Count it out once: a delivery finished twice (at-least-once) was stored final the first time.
local stored = redis.call('GET', KEYS[1])
if stored and not is_finished((read_record(stored))) then
  redis.call('HINCRBY', KEYS[2], ARGV[13], -1)
end
local size = redis.call('HGET', KEYS[9], id)
if size then
  redis.call('HDEL', KEYS[9], id)
  redis.call('HINCRBY', KEYS[8], ARGV[13], -tonumber(size))
end
if ARGV[8] ~= '' then redis.call('ZADD', KEYS[3], ARGV[8], id) end
local chains = {}
for i = 15, #ARGV do table.insert(chains, {KEYS[7], ARGV[i]}) end
local woken = release(id, chains, ctx)
redis.call('SET', KEYS[1], ARGV[6], 'EX', ARGV[7])
if ARGV[14] == '' then
  redis.call('DEL', KEYS[10], KEYS[12])
  redis.call('ZREM', KEYS[11], id)
else
  -- Dead: in RQ's failed list until the record expires, its reason as RQ's failure text.
  local rq = cjson.decode(ARGV[14])
  redis.call('HSET', KEYS[10], unpack(rq['fields']))
  redis.call('EXPIRE', KEYS[10], ARGV[7])
  redis.call('ZADD', KEYS[11], tonumber(ARGV[8]) + tonumber(ARGV[7]), id)
  redis.call('DEL', KEYS[12])
  redis.call('XADD', KEYS[12], '*', unpack(rq['result']))
  redis.call('EXPIRE', KEYS[12], ARGV[7])
end
redis.call('SET', KEYS[6], ARGV[9], 'EX', ARGV[10])
redis.call('PUBLISH', ARGV[11], ARGV[12])
return {1, unpack(woken)}
