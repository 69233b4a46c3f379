-- Shared by the scripts that look at leases (prepended to them, not run alone).
-- Each take of a delivery is given a lease, 'holder token', in the leases hash under the
-- delivery's id. A lease is live while its holder's heartbeat key exists.
-- lease_holder(lease): the worker named in a lease.
-- lease_live(prefix, lease): true if the lease exists and its holder is alive.
local function lease_holder(lease)
  return string.match(lease, '^(%S+)')
end

local function lease_live(prefix, lease)
  return lease and redis.call('EXISTS', prefix .. ':worker:' .. lease_holder(lease)) == 1
end
