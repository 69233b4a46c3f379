-- A web process says it reaches Redis (settle.lua comes first); run a few times a second.
-- KEYS[1]: the settle hash; ARGV[1..3]: the silence that means an outage, the settle period
-- and the clock skew allowed between hosts (ms).
-- Returns how long deliveries still settle (ms; 0 when they do not).
local state = settle_pulse(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
if not state[2] then return 0 end
return math.floor(state[3] - state[1])
