-- wrk script: each request a valid default-reply of a contact of its own, never a repeat.
-- The organization token comes from the TOKEN environment variable.
local threads = 0

function setup(thread)
  -- Runs in wrk's main state: give each thread a tag of its own, unique across runs.
  threads = threads + 1
  thread:set("tag", string.format("%d%d", os.time(), threads))
end

local counter = 0

request = function()
  counter = counter + 1
  local body = string.format(
    '{"username": "lead_%s_%d", "manychat_id": "%s%d", "message_content": "Reply %d: how much is the coaching?"}',
    tag, counter, tag, counter, counter)
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["x-org-auth-token"] = os.getenv("TOKEN")
  return wrk.format("POST", nil, headers, body)
end
