-- Apply attempt outcomes, each fenced by its lease token. ARGV: count, then
-- per outcome: kind (ok|retry|fail|release), id, token, error, retry_at, n, n specs.
-- Returns 1 (applied) or 0 (stale lease: nothing changed) per outcome.

-- Rule 1: the attempt's children are released with its success; heirs stay held.
local function succeed(id, first, n)
  insert_held(id, ARGV, first, n)
  local staged = P .. 'staged:' .. id
  local released = 0
  for _, d in ipairs(redis.call('LRANGE', staged, 0, -1)) do
    if redis.call('HGET', jk(d), 'pred') == id then
      redis.call('RPUSH', P .. 'heirs:' .. id, d)
    else
      redis.call('RPUSH', P .. 'kids:' .. id, d)
      release(d, 'held')
      released = released + 1
    end
  end
  redis.call('DEL', staged)
  clear_lease(id)
  local open = redis.call('HINCRBY', jk(id), 'open', released)
  if open == 0 then
    settle(id, 'succeeded')
  else
    local jtype, queue = info(id)
    set_state(id, jtype, queue, 'running', 'waiting')
  end
end

local results = {}
local at = 2
for i = 1, tonumber(ARGV[1]) do
  local kind, id, token, err, retry_at = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4]
  local n = tonumber(ARGV[at + 5])
  local first = at + 6
  at = first + n * SPEC_FIELDS
  if holds(id, token) then
    results[i] = 1
    if kind == 'ok' then
      succeed(id, first, n)
    elseif kind == 'retry' then
      discard_staged(id)
      clear_lease(id)
      local jtype, queue = info(id)
      redis.call('HSET', jk(id), 'e', err, 'ra', retry_at)
      count(jtype, queue, 'r')
      release(id, 'running')
    elseif kind == 'fail' then
      fail(id, err)
    else
      requeue(id)
    end
  else
    results[i] = 0
  end
end
flush_wakes()
return results
