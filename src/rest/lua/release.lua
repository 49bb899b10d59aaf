-- release.lua: what one Discord response (or a failure to get one) teaches
-- the limiter. Called once per attempt, including on timeouts and errors.
--
-- Durations come from Reset-After / Retry-After (relative seconds) and are
-- anchored on the server's TIME when the response is applied; Discord's
-- absolute X-RateLimit-Reset and the callers' clocks are never used.
-- Remaining is only ever lowered (min-merge): permits granted in this
-- window already cover requests still in flight.
--
-- KEYS
--  1 route map (HASH)
--  2 discovery lease of (route, major) (STRING)
--  3 bucket log of the response's bucket (ZSET) (or of the acquired one)
--  4 that bucket's block (STRING)
--  5 route-scoped log used once the route's hash cycles (ZSET)
--  6 its block (STRING)
--  7 global block (STRING)
--  8 shared-resource block for the major (STRING)
--  9 token-invalid flag (STRING)
-- 10 invalid-request counters (HASH)
-- 11 dead-webhook flag for the major (STRING)
-- 12 global log (ZSET)
-- 13 log of the bucket the permit was granted in (ZSET)
--
-- ARGV
--  1 ticket id (discovery lease holder)
--  2 HTTP status, 0 when no response arrived
--  3 X-RateLimit-Bucket ('' when absent)
--  4 X-RateLimit-Limit ('' when absent)
--  5 X-RateLimit-Remaining
--  6 X-RateLimit-Reset-After in ms
--  7 Retry-After in ms (429 only)
--  8 429 scope: global, shared, user, cloudflare, or ''
--  9 '1' when sent with the bot token
-- 10 '1' for a webhook-token route
-- 11 margin ms added to every wait learned here
-- 12 permit id: its log entries, scored at their lease end while in
--    flight, are re-scored at now (the answer is in: the request arrived
--    at Discord before now)
--
-- Reply: {invalid requests in the last 10 minutes, flags} where flags is a
-- string of letters: c = the route's hash changed, y = the route is now
-- treated as cycling, n = the route was marked as sending no headers.

if redis.replicate_commands then redis.replicate_commands() end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local ticket = ARGV[1]
local status = tonumber(ARGV[2])
local hash = ARGV[3]
local limit = tonumber(ARGV[4])
local remaining = tonumber(ARGV[5])
local reset_after = tonumber(ARGV[6])
local retry_after = tonumber(ARGV[7]) or 0
local scope = ARGV[8]
local botauth = ARGV[9] == '1'
local webhook = ARGV[10] == '1'
local margin = tonumber(ARGV[11])

local DAY = 86400000
local flags = ''

local permit = ARGV[12]
if permit ~= '' then
  redis.call('ZADD', KEYS[12], 'XX', now, permit)
  redis.call('ZADD', KEYS[13], 'XX', now, permit)
  -- Its copy in the response's bucket, if a hash change carried it over.
  redis.call('ZADD', KEYS[3], 'XX', now, permit)
end

-- The discovery lease, if this request held it. The probe was a real
-- send in the current window: it moves into the bucket's log below.
local probe = redis.call('GET', KEYS[2]) == ticket
if probe then redis.call('DEL', KEYS[2]) end

-- Invalid requests (401, 403, and 429 except shared) in 10 s slots.
local slot = math.floor(now / 10000)
local function invalid_count()
  local total = 0
  local counters = redis.call('HGETALL', KEYS[10])
  for i = 1, #counters, 2 do
    local s = tonumber(counters[i])
    if s > slot - 60 then
      total = total + tonumber(counters[i + 1])
    else
      redis.call('HDEL', KEYS[10], counters[i])
    end
  end
  return total
end

if status == 0 then return {invalid_count(), flags} end

if status == 401 or status == 403 or (status == 429 and scope ~= 'shared') then
  redis.call('HINCRBY', KEYS[10], slot, 1)
  redis.call('PEXPIRE', KEYS[10], 660000)
end
if status == 401 and botauth then
  redis.call('SET', KEYS[9], '1', 'PX', 60000)
end
if status == 404 and webhook then
  redis.call('SET', KEYS[11], '1', 'PX', 3600000)
end

local rm = redis.call('HMGET', KEYS[1], 'h', 'l', 'w', 'cyc', 'flips', 'flipped')
local cycling = rm[4] == '1'

if hash ~= '' and limit then
  if not rm[1] then
    redis.call('HSET', KEYS[1], 'h', hash, 'l', limit)
  elseif rm[1] ~= hash then
    -- The route answered from another bucket than last time. Once is a
    -- remap (the route moved); twice within 10 minutes is the cycling of
    -- api-docs #1295: from then on the route gets its own bucket with the
    -- smallest limit and the longest window seen.
    flags = flags .. 'c'
    -- Permits granted under the old hash (answered, or in flight and
    -- scored at their lease end) are not in the new hash's log, yet under
    -- api-docs #1295's cycling both hashes are one Discord bucket: without
    -- them the new log would let a second window's worth go at once.
    -- Carry them over. After a genuine remap this over-counts for one
    -- window at most.
    if KEYS[13] ~= KEYS[3] then
      redis.call('ZUNIONSTORE', KEYS[3], 2, KEYS[3], KEYS[13], 'AGGREGATE', 'MAX')
      local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
      if last[2] then
        local win = math.max(tonumber(rm[3]) or 0, math.ceil(reset_after or 1000)) + margin
        redis.call('PEXPIRE', KEYS[3], math.max(tonumber(last[2]) - now, 0) + win + 1000)
      end
    end
    local flips = 1
    if rm[6] and now - tonumber(rm[6]) < 600000 then flips = (tonumber(rm[5]) or 0) + 1 end
    redis.call('HSET', KEYS[1], 'h', hash, 'flips', flips, 'flipped', now)
    if flips >= 2 and not cycling then
      cycling = true
      flags = flags .. 'y'
      redis.call('HSET', KEYS[1], 'cyc', '1')
      -- Grants made under the old hashes are not in the new bucket: start
      -- it full, for one window.
      local lim = math.min(limit, tonumber(rm[2]) or limit)
      local win = math.max(tonumber(rm[3]) or 0, math.ceil(reset_after or 1000)) + margin
      for i = 1, lim do
        redis.call('ZADD', KEYS[5], now, 'cyc:' .. ticket .. ':' .. i)
      end
      redis.call('PEXPIRE', KEYS[5], win + 1000)
    end
    if cycling then
      redis.call('HSET', KEYS[1], 'l', math.min(limit, tonumber(rm[2]) or limit))
    else
      redis.call('HSET', KEYS[1], 'l', limit)
    end
  elseif cycling then
    redis.call('HSET', KEYS[1], 'l', math.min(limit, tonumber(rm[2]) or limit))
  else
    redis.call('HSET', KEYS[1], 'l', limit)
  end
  -- The window: the longest Reset-After seen outside a 429 (under a fixed
  -- window the first request of a window reports the whole period; under
  -- a sliding one, the time until the oldest slot frees).
  if status ~= 429 and reset_after then
    local w = math.max(tonumber(rm[3]) or 0, math.ceil(reset_after))
    redis.call('HSET', KEYS[1], 'w', w)
  elseif not rm[3] then
    redis.call('HSET', KEYS[1], 'w', math.max(1000, math.ceil(reset_after or 1000)))
  end
  redis.call('HDEL', KEYS[1], 'nl', 'n')
  redis.call('PEXPIRE', KEYS[1], DAY)

  -- Reconcile: the log must hold at least limit - remaining entries.
  local log, blk = KEYS[3], KEYS[4]
  if cycling then log, blk = KEYS[5], KEYS[6] end
  local lim = tonumber(redis.call('HGET', KEYS[1], 'l'))
  local win = tonumber(redis.call('HGET', KEYS[1], 'w')) + margin
  if probe then
    redis.call('ZADD', log, now, 'probe:' .. ticket)
    redis.call('PEXPIRE', log, win + 1000)
  end
  if remaining then
    redis.call('ZREMRANGEBYSCORE', log, '-inf', now - win)
    local missing = math.min(lim, limit - remaining) - redis.call('ZCARD', log)
    for i = 1, missing do
      redis.call('ZADD', log, now, 'seen:' .. ticket .. ':' .. now .. ':' .. i)
    end
    if missing > 0 then redis.call('PEXPIRE', log, win + 1000) end
    if remaining <= 0 and status ~= 429 and reset_after then
      redis.call('SET', blk, '1', 'PX', math.ceil(reset_after) + margin)
    end
  end
  if status == 429 and scope ~= 'global' and scope ~= 'shared' and scope ~= 'cloudflare' then
    redis.call('SET', blk, '1', 'PX', math.ceil(retry_after) + margin)
  end
elseif status == 429 and scope ~= 'global' and scope ~= 'shared' and scope ~= 'cloudflare' then
  local blk = KEYS[4]
  if cycling then blk = KEYS[6] end
  redis.call('SET', blk, '1', 'PX', math.ceil(retry_after) + margin)
elseif status ~= 429 and status < 500 then
  -- No bucket headers. After three such answers in a row the route is
  -- treated as having no per-route limit for an hour (it still counts
  -- toward the global limit), so it is no longer serialised.
  local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
  if n >= 3 and not rm[1] then
    redis.call('HSET', KEYS[1], 'nl', now + 3600000)
    flags = flags .. 'n'
  end
  redis.call('PEXPIRE', KEYS[1], DAY)
end

if status == 429 then
  if scope == 'global' then
    redis.call('SET', KEYS[7], '1', 'PX', math.ceil(retry_after) + margin)
  elseif scope == 'cloudflare' then
    redis.call('SET', KEYS[7], '1', 'PX', math.max(60000, math.ceil(retry_after)))
  elseif scope == 'shared' then
    redis.call('SET', KEYS[8], '1', 'PX', math.ceil(retry_after) + margin)
  end
end

return {invalid_count(), flags}
