-- Give an identify bucket back after READY or failure, keeping it closed
-- for what is left of the spacing since the identify was sent.
-- KEYS[1] bucket lease; ARGV[1] token, ARGV[2] ms to stay closed
local v = redis.call('GET', KEYS[1])
if not v then
  return 0
end
local sep = string.find(v, ':', 1, true)
if not sep or string.sub(v, 1, sep - 1) ~= ARGV[1] then
  return 0
end
local left = tonumber(ARGV[2])
if left > 0 then
  redis.call('SET', KEYS[1], 'cooldown:0', 'PX', left)
else
  redis.call('DEL', KEYS[1])
end
return 1
