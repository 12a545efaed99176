-- Rule 9: create top-level jobs, queued or scheduled. ARGV: n, then n job specs.
local n = tonumber(ARGV[1])
for i = 0, n - 1 do enqueue(ARGV, 2 + i * SPEC_FIELDS) end
flush_wakes()
return n
