-- Cancel an unsettled job and its unsettled descendants. ARGV: id, reason.
-- Returns the job's fields afterwards.
local id = ARGV[1]
local key = jk(id)
local v = redis.call('HMGET', key, 's', 'd', 'pred', 't', 'q')
local state = NAME[v[1]]
if not state then return redis.error_reply('CONVEYOR_NOT_FOUND ' .. id) end
if SETTLED[state] then
  return redis.error_reply('CONVEYOR_STATE ' .. state .. ' it has already settled')
end
if state == 'held' then
  local declarer_state = v[2] and redis.call('HGET', jk(v[2]), 's')
  if not v[3] or declarer_state == CODE.running then
    return redis.error_reply('CONVEYOR_STATE held it is a declaration of an attempt still running; '
      .. 'cancel the job that declared it')
  end
  -- A held heir counts in no parent yet: it settles on its own.
  redis.call('HSET', key, 'fin', NOW, 'why', ARGV[2])
  set_state(id, v[4], v[5] or v[4], 'held', 'cancelled')
  return redis.call('HGETALL', key)
end

-- Below the job: its children and, below them, their heirs too (the job's own
-- heirs are settled by its settling).
local stack = { id }
while #stack > 0 do
  local node = table.remove(stack)
  local members = redis.call('LRANGE', P .. 'kids:' .. node, 0, -1)
  if node ~= id then
    for _, h in ipairs(redis.call('LRANGE', P .. 'heirs:' .. node, 0, -1)) do members[#members + 1] = h end
  end
  for _, m in ipairs(members) do
    local mv = redis.call('HMGET', jk(m), 's', 't', 'q')
    local member_state = NAME[mv[1]]
    if member_state and not SETTLED[member_state] then
      redis.call('HSET', jk(m), 'fin', NOW, 'why', 'ancestor ' .. id .. ' cancelled')
      clear_lease(m)
      discard_staged(m)
      redis.call('ZREM', P .. 'sched', m)
      set_state(m, mv[2], mv[3] or mv[2], member_state, 'cancelled')
      stack[#stack + 1] = m
    end
  end
end
discard_staged(id)
redis.call('ZREM', P .. 'sched', id)
redis.call('HSET', key, 'why', ARGV[2])
settle(id, 'cancelled')
flush_wakes()
return redis.call('HGETALL', key)
