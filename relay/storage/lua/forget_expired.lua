-- Delete one page of a contacts hash's entries past their expiry (dedup marks and aliases;
-- chains have none). See relay/storage/contacts.py for the fields.
-- KEYS[1]: the contacts hash. ARGV[1]: the HSCAN cursor; ARGV[2]: the page size; ARGV[3]: now
-- (epoch s). Returns {next cursor, how many entries were deleted}.
local page = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local now, entries, gone = tonumber(ARGV[3]), page[2], {}
for i = 1, #entries, 2 do
  local expiry = string.match(entries[i + 1], '|(%d+)$')
  if string.sub(entries[i], 1, 2) ~= 'q:' and expiry and tonumber(expiry) <= now then
    table.insert(gone, entries[i])
  end
end
if #gone > 0 then redis.call('HDEL', KEYS[1], unpack(gone)) end
return {page[1], #gone}
