-- Take the next delivery for a worker in one round trip: move its id from a queue to the
-- worker's processing list and decide, in the same step, what to do with it.
-- (record.lua, chains.lua, leases.lua, release_chains.lua, settle.lua and rq_job.lua come first.)
-- KEYS[1]: the worker's processing list; KEYS[2]: the leases hash; KEYS[3]: the parked set;
-- KEYS[4]: the settle hash; KEYS[5]: what an organization id is added to, to name its
-- schedule (RQ's ScheduledJobRegistry of its queue).
-- ARGV[1]: the lease to give this take ('holder token'); ARGV[2]: the key prefix; ARGV[3]: the
-- queue key prefix; ARGV[4..]: the organization ids whose queues to try, in turn.
-- Safe to run twice with the same lease. Returns {} when every queue tried is empty, else
-- {verdict, id, organization id, endpoint, ...} (the endpoint is '' when unknown):
--   start    it heads its contact's chains: the lease is taken; the record's JSON follows
--   parked   an earlier delivery of its contact is unfinished: parked until woken
--   settling accepted since an outage began, while spools may still hold older ones of its
--            contact: scheduled for when the settling ends
--   held     a live lease holds it already: this was a stray copy, dropped
--   finished delivered or dead already (a stale copy): chains released; woken ids follow
--   gone     its record has vanished
local processing, leases, parked = KEYS[1], KEYS[2], KEYS[3]
local lease, prefix = ARGV[1], ARGV[2]
local ctx = {parked = parked, prefix = prefix, queue_prefix = ARGV[3]}
local settle = settle_state(KEYS[4], settle_clock())

local function drop(id)
  redis.call('LREM', processing, -1, id)  -- the entry just added, at the end
end

local function judge(id, org_id)
  local held = redis.call('HGET', leases, id)
  if lease_live(prefix, held) then
    drop(id)
    return {'held', id, org_id, ''}
  end
  local raw = redis.call('GET', prefix .. ':d:' .. id)
  if not raw then
    drop(id)
    redis.call('HDEL', leases, id)
    return {'gone', id, org_id, ''}
  end
  local state, record_org, record = read_record(raw)
  local endpoint = record['e']
  if is_finished(state) then
    drop(id)
    redis.call('HDEL', leases, id)
    local woken = release(id, chains_of(record, record_org, prefix), ctx)
    return {'finished', id, record_org, endpoint, unpack(woken)}
  end
  if settle[2] and id >= settle[2] then
    drop(id)
    redis.call('HDEL', leases, id)
    redis.call('SREM', parked, id)
    redis.call('ZADD', KEYS[5] .. record_org, settle[3] / 1000, id)
    local job = RQ_JOB_PREFIX .. id
    if redis.call('EXISTS', job) == 1 then redis.call('HSET', job, 'status', 'scheduled') end
    return {'settling', id, record_org, endpoint}
  end
  for _, chain in ipairs(chains_of(record, record_org, prefix)) do
    if chain_head(chain) ~= id then
      redis.call('SADD', parked, id)
      drop(id)
      redis.call('HDEL', leases, id)
      return {'parked', id, record_org, endpoint}
    end
  end
  redis.call('SREM', parked, id)  -- a requeued copy may still be marked parked
  redis.call('HSET', leases, id, lease)
  return {'start', id, record_org, endpoint, raw}
end

-- The same take run again (the client re-sent it after losing the first reply): the first run
-- left the id it started at the end of the list under this lease. Its answer again, not a
-- second delivery the worker would never hear of. (The other verdicts left nothing to lose.)
local last = redis.call('LINDEX', processing, -1)
if last and redis.call('HGET', leases, last) == lease then
  local raw = redis.call('GET', prefix .. ':d:' .. last)
  if raw then
    local _, record_org, record = read_record(raw)
    return {'start', last, record_org, record['e'], raw}
  end
end
for i = 4, #ARGV do
  local id = redis.call('LMOVE', ctx.queue_prefix .. ARGV[i], processing, 'LEFT', 'RIGHT')
  if id then return judge(id, ARGV[i]) end
end
return {}
