-- heartbeat.lua: a replica says it is alive and using Redis.
--
-- Replicas seen within the last 3 s are live; those last seen 3-60 s ago
-- are stale (cut off from Redis and maybe running on their local share, or
-- dead) and acquire.lua reserves their share of the global limit for them.
--
-- A replica coming back from local limits passes the peers it last saw.
-- If Redis lost them (a restart without persistence), they are put back
-- as stale: they may still be on their local shares, and without the
-- entry nothing would reserve those shares. A peer that is alive
-- overwrites its entry with its own next heartbeat; a dead one ages out.
--
-- KEYS 1 replica heartbeats (ZSET replica -> last seen ms)
-- ARGV 1 replica id
-- ARGV 2.. peers to restore as stale when missing
-- Reply: {replicas known (live + stale), live, {replica ids (first 64)}}

if redis.replicate_commands then redis.replicate_commands() end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'NX', now - 3001, ARGV[i])
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], 120000)
local total = redis.call('ZCARD', KEYS[1])
local live = redis.call('ZCOUNT', KEYS[1], now - 3000, '+inf')
return {total, live, redis.call('ZRANGE', KEYS[1], 0, 63)}
