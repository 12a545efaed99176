-- Read only: one page of the jobs that count against a job, in the order they
-- joined it. ARGV: id, offset, limit, open_only ('1' or ''). Scans at most
-- 5,000 of them per call. Returns { next offset or '', { id, fields, ... }, total }.
local id, offset, limit, open_only = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1'
local key = P .. 'kids:' .. id
local total = redis.call('LLEN', key)
local out, found, position = {}, 0, offset
local stop = math.min(total, offset + 5000)
while position < stop and found < limit do
  for _, kid in ipairs(redis.call('LRANGE', key, position, math.min(position + 199, stop - 1))) do
    position = position + 1
    local state = NAME[redis.call('HGET', jk(kid), F.state)]
    if state and not (open_only and SETTLED[state]) then
      out[#out + 1] = kid
      out[#out + 1] = redis.call('HGETALL', jk(kid))
      found = found + 1
      if found >= limit then break end
    end
  end
end
return { position < total and tostring(position) or '', out, total }
