-- Create top-level jobs, queued or scheduled. ARGV: n, then n job specs.
-- Ids that already exist are skipped, so a call retried after a lost reply
-- creates nothing twice.
local n = tonumber(ARGV[1])
for i = 0, n - 1 do
  local at = 2 + i * SPEC_FIELDS
  local id = ARGV[at]
  if redis.call('EXISTS', jk(id)) == 0 then
    create(ARGV, at, 'held', nil)
    release(id, 'held')
  end
end
flush_wakes()
return n
