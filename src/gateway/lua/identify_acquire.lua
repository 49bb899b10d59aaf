-- Take an identify bucket, in shard order, across every ingestor process.
-- KEYS[1] bucket lease ("<token>:<granted_ms>" while held, "cooldown:0"
--         until 5 s after the last identify; absent when free)
-- KEYS[2] waiters: hash shard id -> ms until which the waiter counts as alive
-- ARGV[1] shard id, ARGV[2] token, ARGV[3] lease ms, ARGV[4] waiter ttl ms
-- Returns {1, 0} when granted, {0, ms to wait} otherwise.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local shard = tonumber(ARGV[1])
local waiter_ttl = tonumber(ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], now + waiter_ttl)
redis.call('PEXPIRE', KEYS[2], waiter_ttl * 4)
local first = nil
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local id = tonumber(all[i])
  if tonumber(all[i + 1]) < now then
    redis.call('HDEL', KEYS[2], all[i])
  elseif first == nil or id < first then
    first = id
  end
end
if first ~= shard then
  return {0, 100}
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  return {0, ttl}
end
redis.call('SET', KEYS[1], ARGV[2] .. ':' .. now, 'PX', tonumber(ARGV[3]))
redis.call('HDEL', KEYS[2], ARGV[1])
return {1, 0}
