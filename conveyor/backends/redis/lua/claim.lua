-- Rules 6, 10 and 14: claim up to `limit` jobs. ARGV: worker, lease seconds, limit,
-- offset, queue... (the queues are taken from `offset` on, rotating, so that no
-- queue starves). Returns { {id, fields}..., when to look again or '' }: the next
-- scheduled time, or sooner when a queue's limits hold back ready jobs.
local worker, lease, limit, offset = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
promote_due(1000)
local queues = {}
local nq = #ARGV - 4
for i = 0, nq - 1 do queues[#queues + 1] = ARGV[5 + (i + offset) % nq] end
local claimed, look_again = claim(worker, lease, limit, queues)
flush_wakes()
flush_counts()
local next_due = tonumber(redis.call('ZRANGE', P .. 'sched', 0, 0, 'WITHSCORES')[2])
if look_again and (not next_due or look_again < next_due) then next_due = look_again end
return { claimed, next_due and string.format('%.17g', next_due) or '' }
