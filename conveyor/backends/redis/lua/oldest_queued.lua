-- Storage.oldest_queued: for each queue with queued jobs, the first queued job of
-- each of its priority lists (rule 10: a list is in ready order) and its ready time.
-- Returns queue, ready ms ('' where the id's creation time says it), id.
-- A cancelled job stays in its list until a claim skips it, so a list's head is
-- looked for among its first HEAD_SCAN entries.
local HEAD_SCAN = 100
local out = {}
local stats = redis.call('HGETALL', P .. 'stats')
for i = 1, #stats, 2 do
  local field = stats[i]
  if string.sub(field, 1, 7) == 'queued:' and tonumber(stats[i + 1]) > 0 then
    local queue = string.sub(field, 8)
    for _, pr in ipairs(redis.call('ZRANGE', P .. 'qp:' .. queue, 0, -1)) do
      local list = P .. 'q:' .. pr .. ':' .. queue
      for _, id in ipairs(redis.call('LRANGE', list, 0, HEAD_SCAN - 1)) do
        local v = redis.call('HMGET', jk(id), F.state, F.ready)
        if v[1] == CODE.queued then
          out[#out + 1] = { queue, v[2] or '', id }
          break
        end
      end
    end
  end
end
return out
