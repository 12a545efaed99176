-- Rule 6: store a running attempt's progress. ARGV: id, token, fraction, note ('' for none).
if not progress(ARGV[1], ARGV[2], ARGV[3], ARGV[4]) then
  return redis.error_reply(ERR.lease_lost .. ' ' .. ARGV[1])
end
return 1
