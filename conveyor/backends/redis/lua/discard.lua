-- Delete a settled job and its family below it (all settled too: a job settles
-- only after its children and their heirs). ARGV: id. Returns the job's fields
-- as they were.
local id = ARGV[1]
local fields = redis.call('HGETALL', jk(id))
if #fields == 0 then return redis.error_reply('CONVEYOR_NOT_FOUND ' .. id) end
local _, _, state = info(id)
if not SETTLED[state] then
  return redis.error_reply('CONVEYOR_STATE ' .. state .. ' it has not settled')
end
local doomed = { id }
local i = 1
while i <= #doomed do
  for _, kid in ipairs(redis.call('LRANGE', P .. 'kids:' .. doomed[i], 0, -1)) do
    doomed[#doomed + 1] = kid
  end
  i = i + 1
end
for _, member in ipairs(doomed) do forget(member) end
return fields
