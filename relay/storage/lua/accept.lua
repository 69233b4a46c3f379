-- Accept one request in one step: deduplicate, check the quotas, store the record, index it,
-- chain it behind the contact's earlier deliveries, and push its id on its RQ queue.
-- A delivery id already stored is left alone, so draining a spool twice stores it once.
-- KEYS[1]: the record; KEYS[2]: the organization's RQ queue; KEYS[3]: the index by reception
-- time; KEYS[4]: the pending counts (hash by organization); KEYS[5]: the Idempotency-Key's key,
-- or ''; KEYS[6]: the organization's contacts hash; KEYS[7]: RQ's set of queues.
-- ARGV[1]: delivery id; ARGV[2]: the record's JSON without its closing brace; ARGV[3]: org id;
-- ARGV[4]: reception time (epoch s); ARGV[5..7]: username, manychat_id, contact_id, or '';
-- ARGV[8]: now (epoch s); ARGV[9]: the endpoint;
-- ARGV[10]: the request's fingerprint; ARGV[11]: dedup window (s), 0 = off;
-- ARGV[12]: Idempotency-Key TTL (s); ARGV[13]: alias TTL (s);
-- ARGV[14]: the organization's pending quota, 0 = none; ARGV[15]: the global limit, 0 = none;
-- ARGV[16]: the other organizations' pending count as last seen, or '' to count them now;
-- ARGV[17]: '1' to add the queue to RQ's set of queues.
-- KEYS[8]: the pending bytes (hash by organization); KEYS[9]: each pending delivery's bytes;
-- ARGV[18]: the organization's byte budget for undelivered records, 0 = none.
-- KEYS[10]: the settle hash (settle.lua); KEYS[11]: the leases hash.
-- ARGV[19]: '1' for a delivery drained from a spool: it takes its place in its contact's
-- chains by acceptance time (its id), and newer deliveries settle until its spool has drained;
-- ARGV[20..22]: the silence that means an outage, the settle period, the clock skew (ms).
-- KEYS[12]: the delivery's RQ job hash (relay/storage/rqjobs.py); ARGV[23..]: its fields and
-- values, for HSET.
-- The contacts hash (relay/storage/contacts.py) holds, per contact: its chains 'q:<name>'
-- (chains.lua), its latest request per endpoint 'd:<endpoint>:<name>' = fingerprint|id|expiry,
-- and the username each manychat_id goes with 'a:<manychat_id>' = username|expiry ('' when a
-- manychat_id was used alone). An entry past its expiry (epoch s) counts as absent; the
-- worker's upkeep deletes it. Everything about the contact is read in one HMGET and written
-- in one HSET.
-- Returns {outcome, delivery id, the organization's pending count, counts read or {},
-- the chains joined, 1 if it settles: workers hold it back after an outage (settle.lua)}:
-- outcome 'accepted', 'duplicate' (the id is the first one's), 'known' (stored before),
-- 'org_full', 'org_bytes_full' or 'full' (over a quota: nothing stored).
local id, head, org = ARGV[1], ARGV[2], ARGV[3]
local username, manychat, contact = ARGV[5], ARGV[6], ARGV[7]
local now, endpoint, window = tonumber(ARGV[8]), ARGV[9], tonumber(ARGV[11])
local record_key, queue, index, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local idem_key, contacts, queues = KEYS[5], KEYS[6], KEYS[7]
local spooled, skew_ms = ARGV[19] == '1', tonumber(ARGV[22])
local settle = settle_pulse(KEYS[10], tonumber(ARGV[20]), tonumber(ARGV[21]), skew_ms)

if idem_key ~= '' then
  local first = redis.call('GET', idem_key)
  if first then return {'duplicate', first, 0, {}} end
end

-- The contact's entries, read once: fetch() reads the fields likely needed in one HMGET,
-- entry() any other on demand.
local cache = {}
local function fetch(names)
  if #names == 0 then return end
  local found = redis.call('HMGET', contacts, unpack(names))
  for i, name in ipairs(names) do cache[name] = found[i] end
end
local function entry(name)
  if cache[name] == nil then cache[name] = redis.call('HGET', contacts, name) end
  return cache[name]
end
local function unexpired(value)
  if not value then return false end
  local body, expiry = string.match(value, '^(.*)|(%d+)$')
  if body and tonumber(expiry) > now then return body end
  return false
end
local function mark_field(name) return 'd:' .. endpoint .. ':' .. name end

-- The contact's name for deduplication: its username, else the username its manychat_id
-- is linked to, else the manychat_id; plus its contact_id, which nothing links.
local primary = nil
if username ~= '' then primary = 'u:' .. username
elseif manychat ~= '' then primary = 'm:' .. manychat end
local marks = {}
if window > 0 then
  table.insert(marks, primary or '-')
  if contact ~= '' then table.insert(marks, 'c:' .. contact) end
end

local likely = {}
if manychat ~= '' then table.insert(likely, 'a:' .. manychat) end
for _, name in ipairs(marks) do table.insert(likely, mark_field(name)) end
if username ~= '' then table.insert(likely, 'q:u:' .. username) end
if manychat ~= '' then table.insert(likely, 'q:m:' .. manychat) end
if contact ~= '' then table.insert(likely, 'q:c:' .. contact) end
fetch(likely)

local alias = false
if manychat ~= '' then alias = unexpired(entry('a:' .. manychat)) end
if username == '' and alias and alias ~= '' and window > 0 then
  -- A manychat_id linked to a username: the contact is the username's.
  marks[1] = 'u:' .. alias
end
local seen = {}
for i, name in ipairs(marks) do seen[i] = unexpired(entry(mark_field(name))) end

-- A duplicate only if it equals the contact's latest request on this endpoint.
local fingerprint = ARGV[10]
if #marks > 0 then
  local repeated = true
  for i = 1, #marks do
    local mark = seen[i]
    if not mark or string.sub(mark, 1, #fingerprint + 1) ~= fingerprint .. '|' then
      repeated = false
    end
  end
  if repeated then return {'duplicate', string.sub(seen[1], #fingerprint + 2), 0, {}} end
end

-- The chains to wait in. Every earlier delivery of the contact is in its username's chain
-- (or its manychat_id's, before a username is known): that one is enough, except when a
-- manychat_id is first linked to a username or moves to another one.
local chains, joined = {}, {}
local function join(name)
  if not joined[name] then
    joined[name] = true
    table.insert(chains, name)
  end
end
local new_alias = nil
if username ~= '' then
  join('u:' .. username)
  if manychat ~= '' and alias ~= username then
    -- false: no earlier delivery used the manychat_id alone; '': some did; else the username
    if alias then join('m:' .. manychat) end
    if alias and alias ~= '' then join('u:' .. alias) end
    new_alias = username
  end
elseif manychat ~= '' then
  if alias and alias ~= '' then join('u:' .. alias) else join('m:' .. manychat) end
  if not alias then new_alias = '' end
end
if contact ~= '' then join('c:' .. contact) end

-- The record names its chains, unless they are the one it names by default: its username's
-- (relay/core/record.py, record.lua's chains_of).
local record = head
if #chains > 0 and not (#chains == 1 and chains[1] == 'u:' .. username) then
  record = record .. ',"k":' .. cjson.encode(chains)
end
if not redis.call('SET', record_key, record .. '}', 'NX') then return {'known', id, 0, {}} end

-- Quotas: this organization's count is exact; the others' may be up to a second old.
local count = redis.call('HINCRBY', pending, org, 1)
local counts, others = {}, tonumber(ARGV[16])
if not others then
  counts = redis.call('HGETALL', pending)
  others = 0
  for i = 1, #counts, 2 do
    if counts[i] ~= org then others = others + tonumber(counts[i + 1]) end
  end
end
-- Bytes: the record as stored; one record alone always fits, however large.
local size = #record + 1
local bytes = redis.call('HINCRBY', KEYS[8], org, size)
local quota, limit, byte_budget = tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[18])
local refusal = nil
if quota > 0 and count > quota then refusal = 'org_full'
elseif byte_budget > 0 and bytes > byte_budget and bytes > size then refusal = 'org_bytes_full'
elseif limit > 0 and count + others > limit then refusal = 'full' end
if refusal then
  redis.call('HINCRBY', pending, org, -1)
  redis.call('HINCRBY', KEYS[8], org, -size)
  redis.call('DEL', record_key)
  return {refusal, id, count - 1, counts}
end
redis.call('HSET', KEYS[9], id, size)

redis.call('ZADD', index, ARGV[4], id)
if spooled then settle_extend(KEYS[10], settle, id, tonumber(ARGV[21]), skew_ms) end
local updates = {}
local function update(name, value)
  table.insert(updates, name)
  table.insert(updates, value)
end
for _, name in ipairs(chains) do
  local line = entry('q:' .. name)
  if spooled then
    update('q:' .. name, chain_placed(line, id, KEYS[11]))
  else
    update('q:' .. name, chain_joined(line, id))
  end
end
if new_alias then
  update('a:' .. manychat, new_alias .. '|' .. math.ceil(now + tonumber(ARGV[13])))
end
for _, name in ipairs(marks) do
  update(mark_field(name), fingerprint .. '|' .. id .. '|' .. math.ceil(now + window))
end
if #updates > 0 then redis.call('HSET', contacts, unpack(updates)) end
if idem_key ~= '' then redis.call('SET', idem_key, id, 'EX', ARGV[12]) end
redis.call('RPUSH', queue, id)
redis.call('HSET', KEYS[12], unpack(ARGV, 23))
if ARGV[17] == '1' then redis.call('SADD', queues, queue) end
local held = settle[2] and id >= settle[2]
return {'accepted', id, count, counts, chains, held and 1 or 0}
