-- Let one worker probe an organization whose breaker is open, once its probe is due.
-- KEYS[1]: the breakers hash; KEYS[2]: the organization's probe lock.
-- ARGV[1]: the organization id; ARGV[2]: now (epoch s); ARGV[3]: the holder's name;
-- ARGV[4]: how long the lock lasts at most (ms), should the prober die.
-- Returns 1 when this caller may send one delivery of the organization, else 0.
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local state = cjson.decode(raw)
local now = tonumber(ARGV[2])
if now < tonumber(state['next_probe_at']) then return 0 end
if not redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4]) then return 0 end
-- Spaced even when the probe finds nothing queued and reports nothing.
state['next_probe_at'] = now + state['interval']
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(state))
return 1
