-- Extend leases still held. ARGV: lease seconds, then id, token pairs.
-- Returns the ids whose lease is no longer held.
local expiry = NOW + tonumber(ARGV[1])
local lost = {}
for i = 2, #ARGV, 2 do
  if holds(ARGV[i], ARGV[i + 1]) then
    redis.call('ZADD', P .. 'leases', 'XX', expiry, ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
