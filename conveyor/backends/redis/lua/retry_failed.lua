-- Rule 8: repair every member of a family whose own handler failed. ARGV: root id.
-- Returns the ids queued again.
local reply = retry_failed(ARGV[1])
flush_wakes()
flush_counts()
return reply
