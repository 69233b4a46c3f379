-- Delete one page of a contacts hash's entries past their expiry (dedup marks and aliases;
-- chains have none), and aliases made before a cutoff whose contact has no chain (nothing
-- of it is on its way): a link lives as long as the delivered history it belongs to.
-- See relay/storage/contacts.py for the fields.
-- KEYS[1]: the contacts hash. ARGV[1]: the HSCAN cursor; ARGV[2]: the page size; ARGV[3]: now
-- (epoch s); ARGV[4]: forget aliases made before this (epoch s), 0 = none; ARGV[5]: the
-- aliases' TTL (s), so expiry - TTL is when one was made.
-- Returns {next cursor, how many entries were deleted}.
local page = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local now, entries, gone = tonumber(ARGV[3]), page[2], {}
local made_before, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local function idle_alias(field, value, expiry)
  if made_before <= 0 or string.sub(field, 1, 2) ~= 'a:' or expiry - ttl >= made_before then
    return false
  end
  local username = string.match(value, '^(.*)|%d+$')
  if redis.call('HEXISTS', KEYS[1], 'q:m:' .. string.sub(field, 3)) == 1 then return false end
  return username == '' or redis.call('HEXISTS', KEYS[1], 'q:u:' .. username) == 0
end
for i = 1, #entries, 2 do
  local field, value = entries[i], entries[i + 1]
  local expiry = tonumber(string.match(value, '|(%d+)$'))
  if string.sub(field, 1, 2) ~= 'q:' and expiry and
      (expiry <= now or idle_alias(field, value, expiry)) then
    table.insert(gone, field)
  end
end
if #gone > 0 then redis.call('HDEL', KEYS[1], unpack(gone)) end
return {page[1], #gone}
