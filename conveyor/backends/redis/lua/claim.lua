-- Rules 6 and 10: claim up to `limit` jobs. ARGV: worker, lease seconds, limit,
-- offset, queue... (the queues are taken from `offset` on, rotating, so that no
-- queue starves). Returns { {id, fields}..., next scheduled time or '' }.
local worker, lease, limit, offset = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
promote_due(1000)
local queues = {}
local nq = #ARGV - 4
for i = 0, nq - 1 do queues[#queues + 1] = ARGV[5 + (i + offset) % nq] end
local claimed = claim(worker, lease, limit, queues)
flush_wakes()
local next_due = redis.call('ZRANGE', P .. 'sched', 0, 0, 'WITHSCORES')
return { claimed, next_due[2] or '' }
