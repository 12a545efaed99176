-- Rule 1: store held declarations of a running attempt. ARGV: id, token, n, specs...
local staged = stage(ARGV[1], ARGV[2], ARGV, 4, tonumber(ARGV[3]))
flush_counts()
if not staged then return redis.error_reply(ERR.lease_lost .. ' ' .. ARGV[1]) end
return 1
