-- Rule 7: one bounded maintenance step. ARGV: retention seconds, failed retention
-- seconds, max_lost, limit. Returns { promoted, recovered, lost ids, pruned, repaired ids }.
local report = maintain(tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4]))
flush_wakes()
flush_counts()
return report
