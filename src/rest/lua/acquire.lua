-- acquire.lua: one attempt to take a permit for one Discord request.
--
-- Every key carries the same {hash tag}, so the script touches one Redis
-- Cluster slot. Time comes from the server's TIME (scripts are replicated
-- by effects since Redis 5), never from the callers. See src/rest/limiter.rs
-- for the model; in short: a permit is an entry in a sliding log (bucket and
-- global) that ages out by itself, or a discovery lease with a PX expiry;
-- waiters hold FIFO tickets that expire unless refreshed by polling.
--
-- KEYS
--  1 route map (HASH: h hash, l limit, w window ms, cyc, nl no-limit-until)
--  2 bucket log (ZSET permit -> grant ms) or, for discovery, the lease (STRING)
--  3 bucket queue (ZSET ticket -> arrival ms)
--  4 bucket queue expiries (ZSET ticket -> expiry ms)
--  5 bucket block (STRING, PX)
--  6 global log (ZSET permit -> grant ms)
--  7 global queue
--  8 global queue expiries
--  9 global block (STRING, PX)
-- 10 shared-resource block for the major (STRING, PX)
-- 11 token-invalid flag (STRING, PX)
-- 12 invalid-request counters (HASH: 10-second slot -> count)
-- 13 replica heartbeats (ZSET replica -> last seen ms)
-- 14 dead-webhook flag for the major (STRING, PX)
-- 15 discovery lease of (route, major): a probe still in flight counts in
--    the learned bucket too (another resource's probe may have taught the
--    route's hash meanwhile)
--
-- ARGV
--  1 bucket id the caller expects: '' discovery, '-' no limit, '~' cycling,
--    'h:<hash>' learned
--  2 permit id (unique per attempt)
--  3 ticket id (stable across one request's attempts)
--  4 '1' when the request counts toward the global limit
--  5 '1' when the request is sent with the bot token
--  6 class: 0 interaction, 1 normal, 2 background
--  7 budget: ms left before the caller's deadline
--  8 lease ms: how long an unanswered permit may stay in flight
--  9 global limit per window
-- 10 global window ms (1000 + margin)
-- 11 bucket window margin ms
-- 12 invalid-request limit (10000 per 10 min)
-- 13 local fraction (share of the global limit all replicas together may
--    use when cut off from Redis)
-- 14 queue cap per queue
--
-- Reply: {1, now} granted; {2, ms, reason} wait and call again;
--        {3, ms, reason} rejected (cannot go within the budget);
--        {4, bucket id, limit, window} the route maps elsewhere: call again
--        with those keys. Numbers that may exceed 2^31 or carry fractions
--        are returned as strings.

if redis.replicate_commands then redis.replicate_commands() end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local expected = ARGV[1]
local permit = ARGV[2]
local ticket = ARGV[3]
local counted = ARGV[4] == '1'
local botauth = ARGV[5] == '1'
local class = tonumber(ARGV[6])
local budget = tonumber(ARGV[7])
local lease = tonumber(ARGV[8])
local glimit = tonumber(ARGV[9])
local gwin = tonumber(ARGV[10])
local margin = tonumber(ARGV[11])
local invlimit = tonumber(ARGV[12])
local fraction = tonumber(ARGV[13])
local qcap = tonumber(ARGV[14])

local TICKET_TTL = 3000

local function pttl(key)
  local v = redis.call('PTTL', key)
  if v > 0 then return v end
  return 0
end

local function drop_tickets()
  redis.call('ZREM', KEYS[3], ticket)
  redis.call('ZREM', KEYS[4], ticket)
  redis.call('ZREM', KEYS[7], ticket)
  redis.call('ZREM', KEYS[8], ticket)
end

local function reject(ms, why)
  drop_tickets()
  return {3, tostring(math.ceil(ms)), why}
end

-- Wait `ms`, or reject when that is past the caller's deadline.
local function wait(ms, why)
  if ms > budget then return reject(ms, why) end
  return {2, tostring(math.ceil(ms)), why}
end

-- 1. Hard stops.
if botauth and pttl(KEYS[11]) > 0 then return reject(pttl(KEYS[11]), 'token_invalid') end
local dead = pttl(KEYS[14])
if dead > 0 then return reject(dead, 'webhook_dead') end

-- 2. Invalid-request breaker over the last 10 minutes (10 s slots).
local slot = math.floor(now / 10000)
local invalid, oldest = 0, slot
local counters = redis.call('HGETALL', KEYS[12])
for i = 1, #counters, 2 do
  local s = tonumber(counters[i])
  if s > slot - 60 then
    invalid = invalid + tonumber(counters[i + 1])
    if s < oldest then oldest = s end
  end
end
local share = invalid / invlimit
if share >= 0.75 or (share >= 0.5 and class ~= 0) or (share >= 0.25 and class == 2) then
  return reject((oldest + 61) * 10000 - now, 'breaker')
end

-- 3. Blocks set by 429s.
if counted then
  local b = pttl(KEYS[9])
  if b > 0 then return wait(b, 'global_block') end
end
local s = pttl(KEYS[10])
if s > 0 then return wait(s, 'shared') end

-- 4. Which bucket the route uses now.
local rm = redis.call('HMGET', KEYS[1], 'h', 'l', 'w', 'cyc', 'nl')
local actual = ''
if rm[5] and tonumber(rm[5]) > now then
  actual = '-'
elseif rm[4] == '1' then
  actual = '~'
elseif rm[1] then
  actual = 'h:' .. rm[1]
end
if actual ~= expected then
  return {4, actual, rm[2] or '', rm[3] or ''}
end

local function purge_queue(q, qx)
  local gone = redis.call('ZRANGEBYSCORE', qx, '-inf', now)
  for _, id in ipairs(gone) do
    redis.call('ZREM', q, id)
    redis.call('ZREM', qx, id)
  end
end

local function position(q)
  local r = redis.call('ZRANK', q, ticket)
  if r then return r end
  return redis.call('ZCARD', q)
end

local function take_ticket(q, qx)
  redis.call('ZADD', q, 'NX', now, ticket)
  redis.call('ZADD', qx, now + math.min(TICKET_TTL, budget), ticket)
  redis.call('PEXPIRE', q, TICKET_TTL * 2)
  redis.call('PEXPIRE', qx, TICKET_TTL * 2)
end

-- When will `need` more slots of a sliding log be free? Entries still in
-- flight carry their lease end; for the estimate they are assumed to be
-- answered within IN_FLIGHT_GUESS.
local IN_FLIGHT_GUESS = 500
local function eta(log, win, limit, count, need)
  count = math.min(count, redis.call('ZCARD', log))
  if need <= count then
    local e = redis.call('ZRANGE', log, need - 1, need - 1, 'WITHSCORES')
    local at = math.min(tonumber(e[2]), now + IN_FLIGHT_GUESS)
    return math.max(1, at + win - now)
  end
  return win * math.ceil(need / limit) + IN_FLIGHT_GUESS
end

-- 5. The bucket.
local bucket_ok, bucket_wait, bucket_why = true, 0, ''
local bwin = 0
if actual == '' then
  -- Discovery: one request in flight per (route, major) until the
  -- response names the bucket. Waiters poll; it lasts one round trip.
  -- The lease's TTL only bounds a dead holder; the expected wait is the
  -- probe's round trip, so waiters poll and their own deadline ends it.
  local holder = redis.call('GET', KEYS[2])
  if holder then
    bucket_ok, bucket_wait, bucket_why = false, math.min(pttl(KEYS[2]), 50), 'discovery'
  end
elseif actual ~= '-' then
  local limit = tonumber(rm[2]) or 1
  bwin = (tonumber(rm[3]) or 1000) + margin
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - bwin)
  purge_queue(KEYS[3], KEYS[4])
  local count = redis.call('ZCARD', KEYS[2]) + redis.call('EXISTS', KEYS[15])
  local pos = position(KEYS[3])
  if pos >= qcap then return reject(bwin, 'queue_full') end
  local blk = pttl(KEYS[5])
  local cap = limit - count
  if blk > 0 then
    bucket_ok, bucket_wait, bucket_why = false, blk + bwin * math.floor(pos / limit), 'bucket_block'
  elseif pos >= cap then
    bucket_ok, bucket_why = false, 'bucket'
    bucket_wait = eta(KEYS[2], bwin, limit, count, pos - cap + 1)
  end
  if not bucket_ok then take_ticket(KEYS[3], KEYS[4]) end
end

-- 6. The global limit (sliding log of grants), with a reserve for replicas
-- whose heartbeat is stale: they may be running on their local share.
local global_ok, global_wait = true, 0
if counted and bucket_ok then
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - gwin)
  purge_queue(KEYS[7], KEYS[8])
  redis.call('ZREMRANGEBYSCORE', KEYS[13], '-inf', now - 60000)
  local replicas = redis.call('ZCARD', KEYS[13])
  local stale = redis.call('ZCOUNT', KEYS[13], '-inf', now - 3000)
  local each = math.max(1, math.floor(glimit * fraction / math.max(replicas, 1)))
  local limit = math.max(1, glimit - stale * each)
  local count = redis.call('ZCARD', KEYS[6])
  local pos = position(KEYS[7])
  if pos >= qcap then return reject(gwin, 'queue_full') end
  local cap = limit - count
  if pos >= cap then
    global_ok = false
    global_wait = eta(KEYS[6], gwin, limit, count, pos - cap + 1)
    take_ticket(KEYS[7], KEYS[8])
  end
elseif counted then
  -- Waiting for the bucket: hold no place in the global queue, so
  -- requests whose bucket is ready are not stuck behind this one.
  redis.call('ZREM', KEYS[7], ticket)
  redis.call('ZREM', KEYS[8], ticket)
end

if not bucket_ok then return wait(bucket_wait, bucket_why) end
if not global_ok then return wait(global_wait, 'global') end

-- 7. Granted: commit everything at once. Log entries are scored at the
-- lease end while the request is in flight; release.lua re-scores them at
-- the response time, so each counts from grant until one window after its
-- answer: every arrival at Discord lies in between, whatever the jitter.
if actual == '' then
  redis.call('SET', KEYS[2], ticket, 'PX', lease)
elseif actual ~= '-' then
  redis.call('ZADD', KEYS[2], now + lease, permit)
  redis.call('PEXPIRE', KEYS[2], lease + bwin + 1000)
  redis.call('ZREM', KEYS[3], ticket)
  redis.call('ZREM', KEYS[4], ticket)
end
if counted then
  redis.call('ZADD', KEYS[6], now + lease, permit)
  redis.call('PEXPIRE', KEYS[6], lease + gwin + 1000)
  redis.call('ZREM', KEYS[7], ticket)
  redis.call('ZREM', KEYS[8], ticket)
end
return {1, tostring(now)}
