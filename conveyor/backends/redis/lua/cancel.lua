-- Rules 3 and 12: cancel a job and its open family below. ARGV: id, reason.
-- Returns the job's fields afterwards.
local reply = cancel(ARGV[1], ARGV[2])
flush_wakes()
flush_counts()
return reply
