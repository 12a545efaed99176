-- Rule 14: pause, resume or limit one queue. ARGV: 'pause', queue, '1' or '0'; or
-- 'limit', queue, max_running, rate, per ('' for no limit).
local op, queue = ARGV[1], ARGV[2]
if op == 'pause' then
  pause_queue(queue, ARGV[3] == '1')
else
  limit_queue(queue, tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
end
flush_wakes()
return 1
