-- Count one failed call of an organization against its circuit breaker, in one step.
-- KEYS[1]: the breakers hash (organization id -> state JSON); KEYS[2]: the organization's
-- count of consecutive transient failures; KEYS[3]: its probe lock.
-- ARGV[1]: the organization id; ARGV[2]: now (epoch s); ARGV[3]: '1' when DmTracker refused the
-- token (opens at once); ARGV[4]: failures that open the breaker; ARGV[5]: the window (s) they
-- must fall in; ARGV[6]: the first probe interval (s); ARGV[7]: the longest probe interval (s);
-- ARGV[8]: the reason ('transient' or 'auth'); ARGV[9]: '1' when the call was the probe;
-- ARGV[10]: the HTTP status or error of the call, for the operator.
-- Returns {'closed'} (still closed), {'opened', state} (opened by this call) or {'open', state}.
local org, now = ARGV[1], tonumber(ARGV[2])
local raw = redis.call('HGET', KEYS[1], org)
if raw then
  local state = cjson.decode(raw)
  if ARGV[3] == '1' and state['reason'] ~= 'auth' then state['reason'] = 'auth' end
  if ARGV[9] == '1' then
    state['interval'] = math.min(state['interval'] * 2, tonumber(ARGV[7]))
    state['next_probe_at'] = now + state['interval']
    state['probes'] = (state['probes'] or 0) + 1
    redis.call('DEL', KEYS[3])
  end
  state['last_error'] = ARGV[10]
  raw = cjson.encode(state)
  redis.call('HSET', KEYS[1], org, raw)
  return {'open', raw}
end
local count = redis.call('INCR', KEYS[2])
if count == 1 then redis.call('EXPIRE', KEYS[2], math.ceil(tonumber(ARGV[5]))) end
if ARGV[3] ~= '1' and count < tonumber(ARGV[4]) then return {'closed'} end
local interval = tonumber(ARGV[6])
local state = {
  reason = ARGV[8], opened_at = now, interval = interval, next_probe_at = now + interval,
  failures = count, probes = 0, last_error = ARGV[10],
}
raw = cjson.encode(state)
redis.call('HSET', KEYS[1], org, raw)
redis.call('DEL', KEYS[2])
return {'opened', raw}
