-- Put a delivery at the end of its contact's chains again (a replayed dead letter).
-- (chains.lua comes first.)
-- KEYS[1]: the organization's contacts hash. ARGV[1]: the delivery id; ARGV[2..]: the fields
-- of its chains. Returns how many chains it joined.
for i = 2, #ARGV do
  local line = redis.call('HGET', KEYS[1], ARGV[i])
  redis.call('HSET', KEYS[1], ARGV[i], chain_joined(line, ARGV[1]))
end
return #ARGV - 1
