-- Rules 9 and 15: create top-level jobs, queued or scheduled. ARGV: n, then n job
-- specs. Returns { index (from 0), holder id }... for each spec whose key was held:
-- only those, so that a large batch's reply stays small.
local n = tonumber(ARGV[1])
local held = {}
for i = 0, n - 1 do
  local at = 2 + i * SPEC_FIELDS
  local id = enqueue(ARGV, at)
  if id ~= ARGV[at + SPEC.id] then
    held[#held + 1] = i
    held[#held + 1] = id
  end
end
flush_wakes()
flush_counts()
return held
