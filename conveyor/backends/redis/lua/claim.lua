-- Claim up to `limit` queued jobs: highest priority first, then oldest, over
-- the given queues (starting at a rotating offset, so that no queue starves).
-- ARGV: worker, lease seconds, limit, offset, queue...
-- Returns { {id, fields...}..., next scheduled time or '' }.
local worker, lease, limit, offset = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
promote_due(1000)

local queues = {}
local nq = #ARGV - 4
for i = 0, nq - 1 do queues[#queues + 1] = ARGV[5 + (i + offset) % nq] end

local levels = {}
for qi, queue in ipairs(queues) do
  for _, pr in ipairs(redis.call('ZRANGE', P .. 'qp:' .. queue, 0, -1)) do
    levels[#levels + 1] = { tonumber(pr), qi, queue, pr }
  end
end
table.sort(levels, function(a, b)
  if a[1] ~= b[1] then return a[1] > b[1] end
  return a[2] < b[2]
end)

local claimed = {}
local taken = {}
for _, level in ipairs(levels) do
  if #claimed >= limit then break end
  local queue, pr = level[3], level[4]
  local list = P .. 'q:' .. pr .. ':' .. queue
  while #claimed < limit do
    local ids = redis.call('LPOP', list, limit - #claimed)
    if not ids then
      redis.call('ZREM', P .. 'qp:' .. queue, pr)
      break
    end
    for _, id in ipairs(ids) do
      local key = jk(id)
      local v = redis.call('HMGET', key, 's', 't', 'q', 'a')
      if v[1] == CODE.queued and not (v[2] and tonumber(v[4] or '0')) then
        -- Not a hash Conveyor wrote whole (no type, or an attempt count that is not a
        -- number): the steps below would stop this script half-way, after the LPOP,
        -- stranding the jobs popped with it. Fail it instead, with the fields every
        -- script reads filled in.
        redis.call('HSET', key, 't', v[2] or '', 'q', v[3] or queue, 'a', 0)
        fail(id, 'stored job is not a valid Conveyor job: '
          .. (v[2] and 'its attempt count is not a number' or 'it has no type'))
      elseif v[1] == CODE.queued then -- cancelled jobs are left in the list and skipped here
        local token = redis.call('INCR', P .. 'token')
        redis.call('HINCRBY', key, 'a', 1)
        redis.call('HSET', key, 'tok', token, 'wid', worker, 'st', NOW)
        redis.call('ZADD', P .. 'leases', NOW + lease, id)
        set_state(id, v[2], v[3] or v[2], 'queued', 'running')
        claimed[#claimed + 1] = { id, redis.call('HGETALL', key) }
        taken[queue] = (taken[queue] or 0) + 1
      end
    end
  end
end

-- Wake tokens: consume one per job taken; with nothing left ready, any left are stale.
for _, queue in ipairs(queues) do
  local wake = P .. 'wake:' .. queue
  if redis.call('EXISTS', P .. 'qp:' .. queue) == 0 then
    redis.call('DEL', wake)
  elseif taken[queue] then
    redis.call('LPOP', wake, taken[queue])
  end
end
flush_wakes()

local next_due = redis.call('ZRANGE', P .. 'sched', 0, 0, 'WITHSCORES')
return { claimed, next_due[2] or '' }
