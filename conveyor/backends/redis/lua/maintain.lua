-- Promote due jobs, recover expired leases, prune settled jobs past retention,
-- forget silent workers; each bounded by `limit` per call.
-- ARGV: retention seconds, max_lost, limit. Returns {promoted, recovered, lost ids, pruned}.
local retention, max_lost, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local promoted = promote_due(limit)

local recovered, lost_ids = 0, {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', NOW, 'LIMIT', 0, limit)) do
  local key = jk(id)
  if redis.call('HGET', key, 's') == CODE.running then
    local lost = redis.call('HINCRBY', key, 'lost', 1)
    if lost > max_lost then
      clear_lease(id)
      lost_ids[#lost_ids + 1] = id
      fail(id, 'worker lost: lease expired ' .. lost .. ' times')
    else
      recovered = recovered + 1
      requeue(id)
    end
  else
    redis.call('ZREM', P .. 'leases', id)
  end
end

local old = redis.call('ZRANGEBYSCORE', P .. 'finished', '-inf', NOW - retention, 'LIMIT', 0, limit)
for _, id in ipairs(old) do forget(id) end

for _, worker in ipairs(redis.call('ZRANGEBYSCORE', P .. 'workers', '-inf', NOW)) do
  redis.call('DEL', P .. 'w:' .. worker)
end
redis.call('ZREMRANGEBYSCORE', P .. 'workers', '-inf', NOW)
flush_wakes()
return { promoted, recovered, lost_ids, #old }
