-- Rule 6: extend leases still held. ARGV: lease seconds, then id, token pairs.
-- Returns the ids whose lease is no longer held.
return renew(tonumber(ARGV[1]), ARGV, 2)
