-- Read only: a job and every job reachable from it through children (kids) and
-- heirs: the root first, then the oldest, at most `limit`. ARGV: root id, limit.
-- The walk stops at 100,000 jobs. Returns { id, fields, id, fields, ... }.
local root, limit = ARGV[1], tonumber(ARGV[2])
if redis.call('EXISTS', jk(root)) == 0 then return redis.error_reply(ERR.not_found .. ' ' .. root) end
local found, seen = { root }, { [root] = true }
local i = 1
while i <= #found and #found < 100000 do
  for _, kind in ipairs({ 'kids:', 'heirs:' }) do
    for _, below in ipairs(redis.call('LRANGE', P .. kind .. found[i], 0, -1)) do
      if not seen[below] and redis.call('EXISTS', jk(below)) == 1 then
        seen[below] = true
        found[#found + 1] = below
      end
    end
  end
  i = i + 1
end
table.remove(found, 1)
table.sort(found)
table.insert(found, 1, root)
return with_fields(found, limit)
