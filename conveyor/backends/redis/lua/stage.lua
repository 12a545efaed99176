-- Store held declarations of a running attempt. ARGV: id, token, n, specs...
if not holds(ARGV[1], ARGV[2]) then return redis.error_reply('CONVEYOR_LEASE_LOST') end
insert_held(ARGV[1], ARGV, 4, tonumber(ARGV[3]))
return 1
