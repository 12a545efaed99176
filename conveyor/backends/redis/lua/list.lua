-- Read only: one page of a listing, the ids and their hashes in one atomic step.
-- Read apart, a job could move between two indexes in between, and a lister
-- would see a settled parent without the heir its settle released.
-- ARGV: upper, lower (ZRANGE BYLEX bounds, greatest first), n, then the states.
-- Returns id, fields, id, fields, ... for the n greatest ids.
local upper, lower, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ids, seen = {}, {}
for i = 4, #ARGV do
  local got = redis.call('ZRANGE', P .. 'idx:' .. ARGV[i], upper, lower, 'BYLEX', 'REV',
    'LIMIT', 0, n)
  for _, id in ipairs(got) do
    if not seen[id] then seen[id] = true; ids[#ids + 1] = id end
  end
end
-- Ids are UUIDv7 text (lowercase hex, dashes at fixed places), so Lua's string
-- order agrees with ZRANGE BYLEX's byte order here.
table.sort(ids, function(a, b) return a > b end)
return with_fields(ids, n)
