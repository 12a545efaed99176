-- Queue a failed or cancelled job with no family ties again, with fresh attempts.
-- ARGV: id. Returns the job's fields afterwards.
local id = ARGV[1]
local key = jk(id)
local v = redis.call('HMGET', key, 's', 'par', 'pred')
v[1] = NAME[v[1]]
if not v[1] then return redis.error_reply('CONVEYOR_NOT_FOUND ' .. id) end
if v[1] ~= 'failed' and v[1] ~= 'cancelled' then
  return redis.error_reply('CONVEYOR_STATE ' .. v[1] .. ' only failed or cancelled jobs')
end
if v[2] or v[3] or redis.call('EXISTS', P .. 'kids:' .. id) == 1
    or redis.call('EXISTS', P .. 'heirs:' .. id) == 1 then
  return redis.error_reply('CONVEYOR_STATE ' .. v[1]
    .. ' it belongs to a family; family repair is not supported yet')
end
redis.call('HDEL', key, 'fin', 'why', 'fc', 'fids', 'ra', 'lost')
redis.call('HSET', key, 'a', 0)
release(id, v[1])
flush_wakes()
return redis.call('HGETALL', key)
