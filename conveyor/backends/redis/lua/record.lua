-- Rule 6: record attempt outcomes, each fenced by its lease token. ARGV: count,
-- then per outcome: kind, id, token, error, run_at, result, result_type, n, and n specs
-- (layout.OUTCOME_ARGS). Returns 1 (applied) or 0 (stale lease) per outcome.
local results = record(ARGV)
flush_wakes()
flush_counts()
return results
