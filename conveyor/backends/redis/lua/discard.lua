-- Rule 12: delete a settled job and its family below it. ARGV: id.
-- Returns the job's fields as they were.
local reply = discard(ARGV[1])
flush_counts()
return reply
