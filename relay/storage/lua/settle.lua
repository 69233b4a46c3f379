-- Shared by the scripts that accept, pulse and take (prepended to them, not run alone).
-- After an outage, deliveries accepted since it began wait until every host's spool has had
-- time to drain, so a spooled delivery joins its contact's chain before a newer one is sent.
-- The settle hash (relay/storage/settle.py) holds, while deliveries settle, 'from' (the
-- smallest delivery id held back: an id starts with its acceptance time) and 'until' (ms by
-- Redis's clock); '<settle hash>:at' holds when a web process last reached Redis (ms: each
-- one pulses a few times a second, and every accept does). Writes go through pcall: a Redis
-- out of memory still accepts and takes.
-- settle_clock(): now, in ms by Redis's clock.
-- settle_state(key, now): {now, from or false, until} as the hash says.
-- settle_pulse(key, gap_ms, settle_ms, skew_ms): note that a web process reached Redis; after
-- a silence longer than gap_ms (no web process could: an outage), hold back what was accepted
-- since the silence began, less skew_ms, for settle_ms. A Redis without the mark (new, or
-- emptied) starts no settling. Returns the state, as settle_state.
-- settle_extend(key, state, id, settle_ms, skew_ms): a spooled delivery arrived: hold back
-- what was accepted from it on, less skew_ms, until settle_ms from now.
local SETTLE_DIGITS = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'

local function settle_id(ms)
  local digits, rest = {}, math.max(0, math.floor(ms))
  for i = 7, 1, -1 do
    local digit = rest % 62
    digits[i] = string.sub(SETTLE_DIGITS, digit + 1, digit + 1)
    rest = (rest - digit) / 62
  end
  return 'dlv_' .. table.concat(digits)
end

local function settle_id_ms(id)
  local ms = 0
  for i = 5, 11 do
    local digit = string.find(SETTLE_DIGITS, string.sub(id, i, i), 1, true)
    if not digit then return 0 end
    ms = ms * 62 + digit - 1
  end
  return ms
end

local function settle_text(ms)
  return string.format('%.0f', ms)
end

local function settle_clock()
  local clock = redis.call('TIME')
  return tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end

local function settle_state(key, now)
  local found = redis.call('HMGET', key, 'from', 'until')
  local from, hold_until = found[1], tonumber(found[2])
  if not (from and hold_until and hold_until > now) then from, hold_until = false, 0 end
  return {now, from, hold_until}
end

local function settle_pulse(key, gap_ms, settle_ms, skew_ms)
  local now = settle_clock()
  local last = redis.pcall('SET', key .. ':at', settle_text(now), 'GET')
  local at = type(last) == 'string' and tonumber(last)
  local state = settle_state(key, now)
  if not at or now - at <= gap_ms then return state end
  local began = settle_id(at - skew_ms)
  if state[2] and state[2] < began then began = state[2] end
  local hold_until = math.max(state[3], now + settle_ms)
  redis.pcall('HSET', key, 'from', began, 'until', settle_text(hold_until))
  return {now, began, hold_until}
end

local function settle_extend(key, state, id, settle_ms, skew_ms)
  local began = settle_id(settle_id_ms(id) - skew_ms)
  if state[2] and state[2] < began then began = state[2] end
  local hold_until = math.max(state[3], state[1] + settle_ms)
  redis.pcall('HSET', key, 'from', began, 'until', settle_text(hold_until))
end
