-- A web process says it reaches Redis (settle.lua comes first); run a few times a second.
-- KEYS[1]: the settle hash; ARGV[1..3]: the silence that means an outage, the settle period
-- and the clock skew allowed between hosts (ms).
-- Returns 1 if this pulse found an outage and started a settling, else 0.
if settle_pulse(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])) then
  return 1
end
return 0
