-- Spend one of today's session starts, shared by every process.
-- KEYS[1] remaining count (expires when Discord's period resets)
-- ARGV[1] remaining per /gateway/bot, ARGV[2] ms until reset
-- Returns {1, left after this one} or {0, ms until reset}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', math.max(tonumber(ARGV[2]), 1000))
end
local left = tonumber(redis.call('GET', KEYS[1]))
if left <= 0 then
  return {0, redis.call('PTTL', KEYS[1])}
end
redis.call('DECR', KEYS[1])
return {1, left - 1}
