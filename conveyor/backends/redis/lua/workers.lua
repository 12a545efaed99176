-- Worker registry. ARGV: 'register', id, info, ttl | 'list'.
if ARGV[1] == 'register' then
  redis.call('HSET', P .. 'w:' .. ARGV[2], 'info', ARGV[3], 'seen', NOW)
  redis.call('ZADD', P .. 'workers', NOW + tonumber(ARGV[4]), ARGV[2])
  -- Distinct workers per minute, for the admin's chart: a HyperLogLog is 12 KB
  -- at most whatever the fleet, and exact for small counts.
  local minute = P .. 'wmin:' .. math.floor(NOW / 60)
  redis.call('PFADD', minute, ARGV[2])
  redis.call('EXPIRE', minute, 7500)
  return 1
end
local out = {}
for _, worker in ipairs(redis.call('ZRANGEBYSCORE', P .. 'workers', NOW, '+inf')) do
  local v = redis.call('HMGET', P .. 'w:' .. worker, 'info', 'seen')
  if v[1] then out[#out + 1] = { v[1], v[2] } end
end
return out
