-- Rule 8: queue a failed or cancelled job again. ARGV: id. Returns its fields afterwards.
local reply = retry(ARGV[1])
flush_wakes()
flush_counts()
return reply
