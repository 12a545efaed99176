-- The rulebook (docs/rules.md) carried out in Redis. Prepended, after the
-- generated constants.lua, to every script; each script is one atomic step.
-- The transitions below have the names, and come in the order, of the memory
-- (memory/transitions.py) and SQL (sql/transitions.py) executors.
--
-- KEYS[1] is the namespace prefix "{ns}:". Every key a script touches starts
-- with it, so all of one installation's keys hash to one Redis Cluster slot
-- and every transition stays a single-slot atomic script.

local P = KEYS[1]
local TIME = redis.call('TIME')
local NOW = tonumber(TIME[1]) + tonumber(TIME[2]) / 1000000
local WAKE_TOKENS = 64
local wakes = {}
-- Counter increments of this call by key and field, written once each when it ends
-- (flush_counts): a batch of 64 claims or settles in one queue makes two HINCRBYs
-- of the queue's counts, not 128. The call is atomic, so no one sees them late.
-- `expiring`: the per-minute counter hashes among them, which live a day (count).
local counts, expiring = {}, {}
-- Defined further down, used before.
local fail, settle, release_heirs, close_child, rearm_heirs

local SETTLED = { succeeded = true, failed = true, cancelled = true }

local function jk(id) return P .. 'job:' .. id end

local function bump(key, field, by)
  local fields = counts[key]
  if not fields then
    fields = {}
    counts[key] = fields
  end
  fields[field] = (fields[field] or 0) + by
end

-- A count as this call has left it: what is stored, and what it has yet to write.
local function stored_count(key, field)
  local fields = counts[key]
  return tonumber(redis.call('HGET', key, field) or '0') + (fields and fields[field] or 0)
end

-- Called once at the end of a script that counts (tests/redis/test_lua_rules.py checks
-- that every such script does).
local function flush_counts()
  for key, fields in pairs(counts) do
    for field, by in pairs(fields) do
      if by ~= 0 then redis.call('HINCRBY', key, field, by) end
    end
  end
  for key in pairs(expiring) do redis.call('EXPIRE', key, 90000) end
  counts, expiring = {}, {}
end

-- --- the rulebook's decisions (conveyor/core/rules.py) -------------------------

local function heir_runs(when, predecessor_state)
  return when == 'settled' or predecessor_state == 'succeeded'
end

local function fails_parent(state, optional)
  return state ~= 'succeeded' and not optional
end

local function settles_as(failing_child)
  return failing_child and 'failed' or 'succeeded'
end

local function lease_loss_fails(lost, max_lost)
  return lost > max_lost
end

local function released_heir(when, predecessor_state)
  return predecessor_state and heir_runs(when, predecessor_state) or false
end

local function cancelled_by_condition(when, predecessor_state)
  return predecessor_state and not heir_runs(when, predecessor_state) or false
end

local function reopens(open, failing)
  return open > 0 and failing == 0
end

local function count_ids(list)
  if not list or list == '' then return 0 end
  local _, commas = string.gsub(list, ',', ',')
  return commas + 1
end

-- Rule 11: `existing` followed by `more` (comma-separated), cut to MAX_FAILED_IDS ids.
local function merge_failed_ids(existing, more)
  existing = existing or ''
  if not more or more == '' then return existing end
  local room = MAX_FAILED_IDS - count_ids(existing)
  if room <= 0 then return existing end
  local parts = {}
  if existing ~= '' then parts[1] = existing end
  for id in string.gmatch(more, '[^,]+') do
    if room == 0 then break end
    parts[#parts + 1] = id
    room = room - 1
  end
  return table.concat(parts, ',')
end

-- --- plumbing: indexes, counters, events, wake-ups -----------------------------

-- Settled jobs by when they settled, for retention (rule 12): failed ones apart,
-- as they are kept longer.
local function finished_key(state)
  return state == 'failed' and P .. 'failed_at' or P .. 'finished'
end

-- A queued job's ready time (Storage.oldest_queued) is its id's creation time, a
-- UUIDv7's first 48 bits, unless that is further than this from when it became
-- queued: a fresh enqueue stores none, 16 bytes less per queued job.
local READY_FROM_ID_MS = 50

local function id_ms(id)
  return tonumber(string.sub(id, 1, 8) .. string.sub(id, 10, 13), 16)
end

-- The ready time to store for a job that becomes queued now, or nil when its id
-- tells it closely enough. Integer milliseconds: they pack small in the hash.
local function ready_to_store(id)
  local ready = math.floor(NOW * 1000)
  if math.abs(ready - (id_ms(id) or 0)) > READY_FROM_ID_MS then return ready end
  return nil
end

-- The events channel's line for a state change; JobEvent.to_line's format:
-- id|state|at|type|queue (the queue may hold '|').
local function publish_event(id, state, jtype, queue)
  redis.call('PUBLISH', P .. 'events', id .. '|' .. state .. '|' .. NOW .. '|' .. jtype .. '|' .. queue)
end

-- Move a job between states; the state index, per-queue counts and event
-- stream change with it, so they can never disagree with the job. A job that
-- settles is stamped finished now, in the same HSET as its state. `no_ready`: the
-- caller read the hash and it stores no ready time, so leaving 'queued' deletes none.
local function set_state(id, jtype, queue, old, new, no_ready)
  local ready = new == 'queued' and ready_to_store(id) or nil
  if ready then
    redis.call('HSET', jk(id), F.state, CODE[new], F.ready, ready)
  elseif SETTLED[new] then
    redis.call('HSET', jk(id), F.state, CODE[new], F.finished, NOW)
  else
    redis.call('HSET', jk(id), F.state, CODE[new])
  end
  if old == 'queued' and not no_ready then redis.call('HDEL', jk(id), F.ready) end
  if old then
    redis.call('ZREM', P .. 'idx:' .. old, id)
    bump(P .. 'stats', old .. ':' .. queue, -1)
    if SETTLED[old] then -- both: a job that failed before failed_at existed is in finished
      redis.call('ZREM', P .. 'finished', id)
      redis.call('ZREM', P .. 'failed_at', id)
    end
  end
  redis.call('ZADD', P .. 'idx:' .. new, 0, id)
  bump(P .. 'stats', new .. ':' .. queue, 1)
  if SETTLED[new] then redis.call('ZADD', finished_key(new), NOW, id) end
  publish_event(id, new, jtype, queue)
end

-- Read replies: each id followed by its fields, for the first `n` of `ids`.
local function with_fields(ids, n)
  local out = {}
  for i = 1, math.min(n, #ids) do
    out[#out + 1] = ids[i]
    out[#out + 1] = redis.call('HGETALL', jk(ids[i]))
  end
  return out
end

local function info(id)
  local v = redis.call('HMGET', jk(id), F.type, F.queue, F.state)
  return v[1], v[2] or v[1], NAME[v[3]]
end

-- Rule 15: the key naming a queue's unique key ('uk:<queue length>:<queue>:<key>', so
-- that no queue and key pair can spell another's).
local function unique_key(queue, key)
  return P .. 'uk:' .. #queue .. ':' .. queue .. ':' .. key
end

-- Delete a settled job and its indexes (retention, or discard from the admin).
local function forget(id)
  local _, queue, state = info(id)
  local key = redis.call('HGET', jk(id), F.key)
  if key and redis.call('GET', unique_key(queue, key)) == id then
    redis.call('DEL', unique_key(queue, key)) -- rule 15: a pruned holder frees its key
  end
  if state then
    redis.call('ZREM', P .. 'idx:' .. state, id)
    bump(P .. 'stats', state .. ':' .. queue, -1)
  end
  redis.call('DEL', jk(id), P .. 'kids:' .. id, P .. 'heirs:' .. id, P .. 'staged:' .. id)
  redis.call('ZREM', P .. 'finished', id)
  redis.call('ZREM', P .. 'failed_at', id)
end

-- Per-minute counters: the total (column), per type (column:type) and per
-- queue (column@queue); columns s(ucceeded), r(etried), f(ailed).
local function count(jtype, queue, column)
  local key = P .. 'cnt:' .. math.floor(NOW / 60)
  expiring[key] = true
  bump(key, column, 1)
  bump(key, column .. ':' .. jtype, 1)
  bump(key, column .. '@' .. queue, 1)
end

-- Rule 10: a queue is one list per priority; a job joins the back of its list.
local function push_ready(id, queue, priority)
  redis.call('RPUSH', P .. 'q:' .. priority .. ':' .. queue, id)
  redis.call('ZADD', P .. 'qp:' .. queue, -tonumber(priority), priority)
  wakes[queue] = (wakes[queue] or 0) + 1
end

-- Wake blocked workers: one token per released job, a few per queue at most
-- (a woken worker claims a batch). Called once at the end of a script.
local function flush_wakes()
  for queue, n in pairs(wakes) do
    local key = P .. 'wake:' .. queue
    for _ = 1, math.min(n, WAKE_TOKENS) do redis.call('RPUSH', key, 1) end
    redis.call('LTRIM', key, -4 * WAKE_TOKENS, -1)
  end
end

local function clear_lease(id)
  redis.call('ZREM', P .. 'leases', id)
  redis.call('HDEL', jk(id), F.worker)
end

-- Redis keeps a small hash as a compact listpack only while every value fits
-- hash-max-listpack-value (64 bytes by default). A payload up to 64 chunks long
-- is stored in 64-byte pieces p, p1, p2, ... so a typical job stays compact
-- (about 40% less memory); a larger one is stored whole.
local CHUNK, MAX_CHUNKS = 64, 64

-- Results (rule 1) are kept the same way.
local function chunked_fields(f, name, value)
  local n = math.ceil(#value / CHUNK)
  if n <= 1 or n > MAX_CHUNKS then
    f[#f + 1] = name; f[#f + 1] = value
    return
  end
  for i = 0, n - 1 do
    f[#f + 1] = i == 0 and name or (name .. i)
    f[#f + 1] = string.sub(value, i * CHUNK + 1, (i + 1) * CHUNK)
  end
end

-- Delete a value stored in pieces (a result being forgotten).
local function del_chunked(key, name)
  redis.call('HDEL', key, name)
  local i = 1
  while redis.call('HDEL', key, name .. i) == 1 do i = i + 1 end
end

-- Spec arguments stored only when they differ from the default ('' or '0').
local OPTIONAL_SPEC_FIELDS = { 'run_at', 'timeout', 'priority', 'headers', 'parent',
  'predecessor', 'when', 'optional', 'backoff', 'key', 'key_ttl', 'plan', 'root' }

-- Write a job's hash from the spec at ARGV-like `args[at]`, in `state`.
local function create(args, at, state, declarer)
  local id, jtype, queue = args[at + SPEC.id], args[at + SPEC.type], args[at + SPEC.queue]
  local f = { F.type, jtype, F.state, CODE[state] }
  chunked_fields(f, F.payload, args[at + SPEC.payload])
  local max_attempts = args[at + SPEC.max_attempts]
  if max_attempts ~= tostring(DEFAULT_MAX_ATTEMPTS) then
    f[#f + 1] = F.max_attempts; f[#f + 1] = max_attempts
  end
  if queue ~= jtype then f[#f + 1] = F.queue; f[#f + 1] = queue end
  for _, name in ipairs(OPTIONAL_SPEC_FIELDS) do
    local value = args[at + SPEC[name]]
    if value ~= '' and value ~= '0' then f[#f + 1] = F[name]; f[#f + 1] = value end
  end
  if declarer then f[#f + 1] = F.declared_by; f[#f + 1] = declarer end
  local ready = state == 'queued' and ready_to_store(id) or nil
  if ready then f[#f + 1] = F.ready; f[#f + 1] = ready end
  redis.call('HSET', jk(id), unpack(f))
  redis.call('ZADD', P .. 'idx:' .. state, 0, id)
  bump(P .. 'stats', state .. ':' .. queue, 1)
  return id
end

-- Store a running attempt's declarations, held; a call sent again adds nothing.
local function insert_held(declarer, args, first, n)
  local staged = P .. 'staged:' .. declarer
  for i = 0, n - 1 do
    local at = first + i * SPEC_FIELDS
    if redis.call('EXISTS', jk(args[at + SPEC.id])) == 0 then
      create(args, at, 'held', declarer)
      redis.call('RPUSH', staged, args[at + SPEC.id])
    end
  end
end

local function state_error(id, verb, state, why)
  return redis.error_reply(ERR.state .. ' ' .. id .. ' ' .. verb .. ' ' .. state .. ' ' .. why)
end

-- --- the transitions -------------------------------------------------------------

-- Rules 1 and 10: the state of a job made runnable now: scheduled while its
-- run_at (a number or nil) is still ahead, else queued.
local function runnable_state(run_at)
  return (run_at and run_at > NOW) and 'scheduled' or 'queued'
end

-- Put a job made runnable where its state says: the schedule at run_at, or the
-- back of its queue's list for its priority.
local function place(id, queue, state, priority, run_at)
  if state == 'scheduled' then
    redis.call('ZADD', P .. 'sched', run_at, id)
  else
    push_ready(id, queue, priority)
  end
end

-- Rules 1 and 10: make a held (or returned) job runnable.
local function release(id, old)
  local v = redis.call('HMGET', jk(id), F.type, F.queue, F.priority, F.run_at)
  local jtype, queue = v[1], v[2] or v[1]
  local run_at = tonumber(v[4])
  local state = runnable_state(run_at)
  place(id, queue, state, v[3] or '0', run_at)
  set_state(id, jtype, queue, old, state)
end

-- Rule 6: a lease is held when the job runs under exactly this fencing token.
local function holds(id, token)
  local v = redis.call('HMGET', jk(id), F.state, F.token)
  return v[1] == CODE.running and v[2] == token
end

-- Rule 2: declarations of an attempt that did not succeed never run.
local function discard_declarations(id)
  local key = P .. 'staged:' .. id
  for _, d in ipairs(redis.call('LRANGE', key, 0, -1)) do
    local _, queue, state = info(d)
    if state then
      redis.call('DEL', jk(d))
      redis.call('ZREM', P .. 'idx:' .. state, d)
      bump(P .. 'stats', state .. ':' .. queue, -1)
    end
  end
  redis.call('DEL', key)
end

-- Rule 15: the id of the job holding `key` in `queue`; `id`'s own when it takes it.
local function take_key(queue, key, id)
  local name = unique_key(queue, key)
  local holder = redis.call('GET', name)
  if holder and redis.call('EXISTS', jk(holder)) == 1 then return holder end
  redis.call('SET', name, id)
  return id
end

-- Rule 15: a holder that settles keeps its key `key_ttl` longer, then frees it.
local function free_key(id, queue, key, key_ttl)
  if not key then return end
  local name = unique_key(queue, key)
  if redis.call('GET', name) ~= id then return end
  local ttl = tonumber(key_ttl or '0')
  if ttl > 0 then
    redis.call('PEXPIRE', name, math.max(1, math.floor(ttl * 1000)))
  else
    redis.call('DEL', name)
  end
end

-- Rules 9 and 15: create the top-level job at `args[at]`; an id that exists is
-- skipped, and so is a job whose key another holds. Returns the id standing for it.
local function enqueue(args, at)
  local id = args[at + SPEC.id]
  if redis.call('EXISTS', jk(id)) == 1 then return id end
  local key = args[at + SPEC.key]
  if key ~= '' then
    local holder = take_key(args[at + SPEC.queue], key, id)
    if holder ~= id then return holder end
  end
  -- Written in the state release() would give it, rather than held and then
  -- released: one HSET instead of four writes more.
  local run_at = tonumber(args[at + SPEC.run_at])
  local state = runnable_state(run_at)
  local queue, priority = args[at + SPEC.queue], args[at + SPEC.priority]
  create(args, at, state, nil)
  place(id, queue, state, priority == '' and '0' or priority, run_at)
  publish_event(id, state, args[at + SPEC.type], queue)
  return id
end

-- Rule 14: a queue's controls, stored in the ctl hash as 'paused|max_running|rate|per'
-- (paused '1' or '0'; '' for no limit), and its bucket as 'tokens|refilled at'.
local function read_controls(text)
  local paused, max_running, rate, per = string.match(text or '0|||', '^([01])|(%d*)|(%d*)|([^|]*)$')
  return paused == '1', tonumber(max_running), tonumber(rate), tonumber(per)
end

local function write_controls(queue, paused, max_running, rate, per)
  if not paused and not max_running and not rate then
    redis.call('HDEL', P .. 'ctl', queue)
  else
    redis.call('HSET', P .. 'ctl', queue, table.concat({ paused and '1' or '0',
      max_running or '', rate or '', per or '' }, '|'))
  end
end

-- The bucket's tokens now, and its clock (never set back).
local function bucket_tokens(queue, rate, per)
  local b = redis.call('HGET', P .. 'bucket', queue)
  if not b then return rate, NOW end
  local tokens, at = string.match(b, '^([^|]*)|(.*)$')
  at = tonumber(at)
  return math.min(rate, tonumber(tokens) + math.max(0, NOW - at) * rate / per), math.max(NOW, at)
end

-- Rule 14: per queue, how many jobs a claim may take (false: no limit), the tokens
-- each rate-limited queue holds now, and when to look again at a queue whose
-- limits hold back ready jobs (nil: none).
local function allowance(queues)
  local allowed, tokens_of, clock_of, look_again = {}, {}, {}, nil
  local stored = redis.call('HMGET', P .. 'ctl', unpack(queues))
  for i, queue in ipairs(queues) do
    allowed[queue] = false
    if stored[i] then
      local paused, max_running, rate, per = read_controls(stored[i])
      local n = false
      if paused then
        n = 0
      else
        if max_running then
          local running = stored_count(P .. 'stats', 'running:' .. queue)
          n = math.max(0, max_running - running)
        end
        if rate then
          tokens_of[queue], clock_of[queue] = bucket_tokens(queue, rate, per)
          local whole = math.floor(tokens_of[queue] + 1e-9)
          if n == false or whole < n then n = whole end
        end
      end
      allowed[queue] = n
      if n == 0 and not paused and redis.call('EXISTS', P .. 'qp:' .. queue) == 1 then
        local wait = LIMIT_POLL
        local tokens = tokens_of[queue]
        if tokens and tokens < 1 then wait = (1 - tokens) * per / rate end
        if not look_again or NOW + wait < look_again then look_again = NOW + wait end
      end
    end
  end
  return allowed, tokens_of, clock_of, look_again
end

-- Rules 6, 10 and 14: up to `limit` queued jobs, highest priority first, then the
-- order they became ready, over `queues` (the caller rotates them, so that no
-- queue starves), within each queue's limits. Returns { {id, fields}... } and
-- when to look again at a queue its limits hold back (nil: none).
local function claim(worker, lease, limit, queues)
  local allowed, tokens_of, clock_of, look_again = allowance(queues)
  local levels = {}
  for qi, queue in ipairs(queues) do
    for _, pr in ipairs(redis.call('ZRANGE', P .. 'qp:' .. queue, 0, -1)) do
      levels[#levels + 1] = { tonumber(pr), qi, queue, pr }
    end
  end
  table.sort(levels, function(a, b)
    if a[1] ~= b[1] then return a[1] > b[1] end
    return a[2] < b[2]
  end)
  local claimed, taken = {}, {}
  for _, level in ipairs(levels) do
    if #claimed >= limit then break end
    local queue, pr = level[3], level[4]
    local room = allowed[queue]
    local list = P .. 'q:' .. pr .. ':' .. queue
    while #claimed < limit and (not room or (taken[queue] or 0) < room) do
      local want = limit - #claimed
      if room then want = math.min(want, room - (taken[queue] or 0)) end
      local ids = redis.call('LPOP', list, want)
      if not ids then
        redis.call('ZREM', P .. 'qp:' .. queue, pr)
        break
      end
      -- Fencing tokens for the popped jobs, taken in one INCRBY: unique and rising
      -- like one INCR each (a skipped job leaves its token unused).
      local next_token = redis.call('INCRBY', P .. 'token', #ids) - #ids
      for _, id in ipairs(ids) do
        local key = jk(id)
        next_token = next_token + 1
        local v = redis.call('HMGET', key, F.state, F.type, F.queue, F.attempt, F.ready)
        if v[1] == CODE.queued and not (v[2] and string.match(v[4] or '0', '^%d+$')) then
          -- Not a hash Conveyor wrote whole (no type, or an attempt count that is not
          -- a whole number in digits: tonumber would take '0x10', ' 1' or 'inf'): the
          -- steps below would stop this script half-way, after the LPOP, or count its
          -- attempts wrong. Fail it instead, with the fields every script reads filled in.
          redis.call('HSET', key, F.type, v[2] or '', F.queue, v[3] or queue, F.attempt, 0)
          fail(id, 'stored job is not a valid Conveyor job: '
            .. (v[2] and 'its attempt count is not a number' or 'it has no type'))
        elseif v[1] == CODE.queued then -- cancelled jobs are left in the list and skipped here
          redis.call('HSET', key, F.attempt, tonumber(v[4] or '0') + 1, F.token, next_token,
            F.worker, worker, F.started, NOW)
          redis.call('ZADD', P .. 'leases', NOW + lease, id)
          set_state(id, v[2], v[3] or v[2], 'queued', 'running', not v[5])
          claimed[#claimed + 1] = { id, redis.call('HGETALL', key) }
          taken[queue] = (taken[queue] or 0) + 1
        end
      end
    end
  end
  for queue, tokens in pairs(tokens_of) do
    if taken[queue] then
      -- %.17g: `..` keeps 14 digits, which would round NOW off by up to 50 µs a claim
      redis.call('HSET', P .. 'bucket', queue,
        string.format('%.17g|%.17g', tokens - taken[queue], clock_of[queue]))
    end
  end
  -- Wake tokens: consume one per job taken; with nothing left ready, any left are
  -- stale, and a queue its limits hold back is looked at again at `look_again`.
  for _, queue in ipairs(queues) do
    local wake = P .. 'wake:' .. queue
    if redis.call('EXISTS', P .. 'qp:' .. queue) == 0 or allowed[queue] == 0 then
      redis.call('DEL', wake)
    elseif taken[queue] then
      redis.call('LPOP', wake, taken[queue])
    end
  end
  return claimed, look_again
end

-- Rule 1: store a running attempt's declarations, held. False: the lease is gone.
local function stage(id, token, args, first, n)
  if not holds(id, token) then return false end
  insert_held(id, args, first, n)
  return true
end

-- Rule 6: extend the leases still held (`args` from `first`: id, token pairs);
-- returns the ids whose lease is no longer held.
local function renew(seconds, args, first)
  local expiry = NOW + seconds
  local lost = {}
  for i = first, #args, 2 do
    if holds(args[i], args[i + 1]) then
      redis.call('ZADD', P .. 'leases', 'XX', expiry, args[i])
    else
      lost[#lost + 1] = args[i]
    end
  end
  return lost
end

-- Rule 6: store a running attempt's progress under its lease ('fraction|attempt|at|note').
local function progress(id, token, fraction, note)
  if not holds(id, token) then return false end
  local attempt = redis.call('HGET', jk(id), F.attempt) or '0'
  local text = fraction .. '|' .. attempt .. '|' .. string.format('%.6f', NOW) .. '|' .. note
  redis.call('HSET', jk(id), F.progress, text)
  return true
end

-- Rule 15: a declaration being released takes its key; if another job holds it, the
-- declaration settles cancelled as an optional duplicate instead (returns false).
local function takes_key(id)
  local v = redis.call('HMGET', jk(id), F.key, F.queue, F.type)
  if not v[1] then return true end
  local queue = v[2] or v[3]
  local holder = take_key(queue, v[1], id)
  if holder == id then return true end
  redis.call('HSET', jk(id), F.optional, '1', F.reason, string.format(DUPLICATE_REASON, v[1], holder))
  set_state(id, v[3], queue, 'held', 'cancelled')
  return false
end

-- Rule 1: release the attempt's children with its success; heirs stay held.
-- `result_type` '' means the handler returned nothing.
local function succeed(id, args, first, n, result, result_type)
  insert_held(id, args, first, n)
  if result_type ~= '' then
    local f = { F.result_type, result_type }
    chunked_fields(f, F.result, result)
    redis.call('HSET', jk(id), unpack(f))
  end
  local staged = P .. 'staged:' .. id
  local declared = redis.call('LRANGE', staged, 0, -1)
  local released = 0
  for _, d in ipairs(declared) do
    if redis.call('HGET', jk(d), F.predecessor) == id then
      redis.call('RPUSH', P .. 'heirs:' .. id, d)
    else
      redis.call('RPUSH', P .. 'kids:' .. id, d)
      if takes_key(d) then
        release(d, 'held')
        released = released + 1
      end
    end
  end
  if #declared > 0 then redis.call('DEL', staged) end
  local open = redis.call('HINCRBY', jk(id), F.open, released)
  if open == 0 then
    settle(id, 'succeeded') -- which clears the lease
  else
    clear_lease(id)
    local jtype, queue = info(id)
    set_state(id, jtype, queue, 'running', 'waiting')
  end
end

-- Rule 2: the attempt failed and another is due at `retry_at`.
local function retry_later(id, err, retry_at)
  discard_declarations(id)
  clear_lease(id)
  local jtype, queue = info(id)
  redis.call('HSET', jk(id), F.error, err, F.run_at, retry_at)
  count(jtype, queue, 'r')
  release(id, 'running')
end

-- Rule 3: the handler failed for good.
function fail(id, err)
  discard_declarations(id)
  local key = jk(id)
  redis.call('HSET', key, F.error, err)
  redis.call('HSET', key, F.failed_ids, merge_failed_ids(redis.call('HGET', key, F.failed_ids), id))
  settle(id, 'failed')
end

-- Rule 6: back unrun, the attempt not counted: queued, or scheduled at `run_at`
-- (a snooze) when that is given and not '' (or nil).
local function hand_back(id, run_at)
  discard_declarations(id)
  clear_lease(id)
  local key = jk(id)
  if tonumber(redis.call('HGET', key, F.attempt) or '0') > 0 then
    redis.call('HINCRBY', key, F.attempt, -1)
  end
  if run_at and run_at ~= '' then
    redis.call('HSET', key, F.run_at, run_at)
  else
    redis.call('HDEL', key, F.run_at)
  end
  release(id, 'running')
end

-- Rule 6: the lease expired; returns true if the job failed for good ("worker lost").
local function lose_lease(id, max_lost)
  local lost = redis.call('HINCRBY', jk(id), F.lost, 1)
  if lease_loss_fails(lost, max_lost) then
    fail(id, string.format(WORKER_LOST, lost)) -- its settle clears the lease (running)
    return true
  end
  hand_back(id)
  return false
end

-- Apply each outcome of `args` (count, then per outcome OUTCOME_FIELDS
-- arguments and n specs) whose lease is still held. Returns 1 (applied) or 0
-- (stale lease: nothing changed) per outcome.
local function record(args)
  local results = {}
  local at = 2
  for i = 1, tonumber(args[1]) do
    local kind, id = args[at + OUTCOME.kind], args[at + OUTCOME.id]
    local n = tonumber(args[at + OUTCOME.n])
    local first = at + OUTCOME_FIELDS
    if holds(id, args[at + OUTCOME.token]) then
      results[i] = 1
      if kind == KIND.success then
        succeed(id, args, first, n, args[at + OUTCOME.result], args[at + OUTCOME.result_type])
      elseif kind == KIND.retry then
        retry_later(id, args[at + OUTCOME.error], args[at + OUTCOME.run_at])
      elseif kind == KIND.failure then
        fail(id, args[at + OUTCOME.error])
      else
        hand_back(id, args[at + OUTCOME.run_at])
      end
    else
      results[i] = 0
    end
    at = first + n * SPEC_FIELDS
  end
  return results
end

-- Rules 3-5: settle a job, release or cancel its heirs, and walk up its
-- parents, settling each whose last open member this was.
function settle(id, state)
  local cur = id
  while cur do
    local key = jk(cur)
    local v = redis.call('HMGET', key, F.type, F.queue, F.state, F.parent, F.optional, F.failed_ids,
      F.key, F.key_ttl)
    local jtype, queue, old, parent, optional, fids = v[1], v[2] or v[1], NAME[v[3]], v[4], v[5], v[6]
    -- Only a running attempt holds a lease: a waiting parent settling has none to clear.
    if old == 'running' then clear_lease(cur) end
    set_state(cur, jtype, queue, old, state)
    free_key(cur, queue, v[7], v[8])
    if state == 'succeeded' then count(jtype, queue, 's')
    elseif state == 'failed' then count(jtype, queue, 'f') end
    release_heirs(cur, state, parent, optional, fids)
    if not parent then return end
    local next_state = close_child(parent, cur, state, optional, fids)
    if not next_state then return end
    cur, state = parent, next_state
  end
end

-- Rule 4: `id` settled as `state`; each held heir runs or is cancelled. A
-- released heir takes `parent`, whose open count rises here, before
-- close_child lowers it for `id`.
function release_heirs(id, state, parent, optional, fids)
  for _, h in ipairs(redis.call('LRANGE', P .. 'heirs:' .. id, 0, -1)) do
    local hk = jk(h)
    local hv = redis.call('HMGET', hk, F.state, F.when, F.type, F.queue)
    if hv[1] == CODE.held then
      redis.call('HSET', hk, F.predecessor_state, state)
      if fids then redis.call('HSET', hk, F.predecessor_failed_ids, fids) end
      if heir_runs(hv[2], state) then
        if takes_key(h) then -- else: it settled as a duplicate (rule 15)
          if parent then
            redis.call('HSET', hk, F.parent, parent)
            redis.call('RPUSH', P .. 'kids:' .. parent, h)
            -- A parent that stays failed after a repair (rule 8) counts nothing open.
            if not SETTLED[NAME[redis.call('HGET', jk(parent), F.state)] or 'failed'] then
              redis.call('HINCRBY', jk(parent), F.open, 1)
            end
          end
          if optional then redis.call('HSET', hk, F.optional, '1') end
          release(h, 'held')
        end
      else
        redis.call('HSET', hk, F.reason, string.format(PREDECESSOR_REASON, id, state))
        set_state(h, hv[3], hv[4] or hv[3], 'held', 'cancelled')
      end
    end
  end
end

-- Rule 5: `child` settled as `state`; returns how `parent` settles now, if it does.
function close_child(parent, child, state, optional, fids)
  local pk = jk(parent)
  local pv = redis.call('HMGET', pk, F.state, F.failing_child, F.failed_ids)
  local parent_state = NAME[pv[1]]
  if not parent_state or SETTLED[parent_state] then return nil end
  local open = redis.call('HINCRBY', pk, F.open, -1)
  if fids and fids ~= '' then
    redis.call('HSET', pk, F.failed_ids, merge_failed_ids(pv[3], fids))
  end
  local failing = pv[2]
  if fails_parent(state, optional) and not failing then
    failing = child
    redis.call('HSET', pk, F.failing_child, child, F.reason, string.format(CHILD_REASON, child, state))
  end
  if parent_state ~= 'waiting' or open > 0 then return nil end
  return settles_as(failing)
end

-- Rules 3 and 12: cancel an open job and every open member below it. Returns
-- the job's fields afterwards.
-- Rule 12: tell the worker of a running attempt that was cancelled, at once.
local function interrupt(id)
  redis.call('PUBLISH', P .. 'cancels', id .. ' ' .. redis.call('HGET', jk(id), F.token))
end

local function cancel(id, reason)
  local key = jk(id)
  local v = redis.call('HMGET', key, F.state, F.declared_by, F.predecessor, F.type, F.queue)
  local state = NAME[v[1]]
  if not state then return redis.error_reply(ERR.not_found .. ' ' .. id) end
  if SETTLED[state] then return state_error(id, 'cancel', state, 'it has already settled') end
  if state == 'held' then
    local declarer_state = v[2] and redis.call('HGET', jk(v[2]), F.state)
    if not v[3] or declarer_state == CODE.running then
      return state_error(id, 'cancel', state, 'it is a declaration of an attempt still running; '
        .. 'cancel the job that declared it')
    end
    -- A held heir counts in no parent yet: it settles on its own.
    redis.call('HSET', key, F.reason, reason)
    set_state(id, v[4], v[5] or v[4], 'held', 'cancelled')
    return redis.call('HGETALL', key)
  end
  -- Below the job: its children and, below them, their heirs too (the job's own
  -- heirs are settled by its settling).
  local stack = { id }
  while #stack > 0 do
    local node = table.remove(stack)
    local members = redis.call('LRANGE', P .. 'kids:' .. node, 0, -1)
    if node ~= id then
      for _, h in ipairs(redis.call('LRANGE', P .. 'heirs:' .. node, 0, -1)) do
        members[#members + 1] = h
      end
    end
    for _, m in ipairs(members) do
      local mv = redis.call('HMGET', jk(m), F.state, F.type, F.queue)
      local member_state = NAME[mv[1]]
      if member_state and not SETTLED[member_state] then
        if member_state == 'running' then interrupt(m) end
        redis.call('HSET', jk(m), F.reason, string.format(ANCESTOR_CANCELLED, id))
        clear_lease(m)
        discard_declarations(m)
        redis.call('ZREM', P .. 'sched', m)
        set_state(m, mv[2], mv[3] or mv[2], member_state, 'cancelled')
        stack[#stack + 1] = m
      end
    end
  end
  if state == 'running' then interrupt(id) end
  discard_declarations(id)
  redis.call('ZREM', P .. 'sched', id)
  redis.call('HSET', key, F.reason, reason)
  settle(id, 'cancelled')
  return redis.call('HGETALL', key)
end

-- Rule 8: why `id` cannot be repaired, or nil.
local function unrepairable(id, state)
  if state ~= 'failed' and state ~= 'cancelled' then return NOT_FAILED end
  if redis.call('EXISTS', P .. 'kids:' .. id) == 1 then
    return string.format(FAILED_BY_FAMILY, state)
  end
  local v = redis.call('HMGET', jk(id), F.predecessor, F.when, F.predecessor_state, F.parent)
  if v[1] and not released_heir(v[2], v[3]) then return NEVER_RELEASED end
  local parent = v[4]
  while parent do
    local pv = redis.call('HMGET', jk(parent), F.state, F.parent)
    local parent_state = NAME[pv[1]]
    if not parent_state then return string.format(FAMILY_PRUNED, parent) end
    if parent_state == 'waiting' then return nil end
    if parent_state ~= 'failed' then
      return string.format(ANCESTOR_SETTLED, parent, parent_state)
    end
    parent = pv[2]
  end
  return nil
end

-- Rule 8: re-count `parent` from its children (in id order); true if it went
-- back to waiting.
local function recount(parent)
  local pk = jk(parent)
  local ids = redis.call('LRANGE', P .. 'kids:' .. parent, 0, -1)
  table.sort(ids)
  local open, failing, first, first_state = 0, 0, nil, nil
  local failed, nf = {}, 0
  for _, k in ipairs(ids) do
    local kv = redis.call('HMGET', jk(k), F.state, F.optional, F.failed_ids)
    local ks = NAME[kv[1]]
    if ks and not SETTLED[ks] then
      open = open + 1
    elseif ks then
      -- rules.merge_failed_ids, kid after kid, counting as it goes
      if kv[3] and nf < MAX_FAILED_IDS then
        for fid in string.gmatch(kv[3], '[^,]+') do
          if nf >= MAX_FAILED_IDS then break end
          nf = nf + 1
          failed[nf] = fid
        end
      end
      if fails_parent(ks, kv[2]) then
        failing = failing + 1
        if not first then first, first_state = k, ks end
      end
    end
  end
  if nf > 0 then
    redis.call('HSET', pk, F.failed_ids, table.concat(failed, ','))
  else
    redis.call('HDEL', pk, F.failed_ids)
  end
  if first then
    redis.call('HSET', pk, F.failing_child, first, F.reason,
      string.format(CHILD_REASON, first, first_state))
  else
    redis.call('HDEL', pk, F.failing_child, F.reason)
  end
  local pv = redis.call('HMGET', pk, F.state, F.type, F.queue)
  local parent_state = NAME[pv[1]]
  if parent_state == 'waiting' then redis.call('HSET', pk, F.open, open) end
  -- One that stays failed keeps the count it settled with: none open.
  if parent_state ~= 'failed' or not reopens(open, failing) then return false end
  redis.call('HSET', pk, F.open, open)
  redis.call('HDEL', pk, F.finished)
  set_state(parent, pv[2], pv[3] or pv[2], 'failed', 'waiting')
  rearm_heirs(parent)
  return true
end

-- Rule 8: queue these failed members again and re-count their families upward.
-- With `strict`, the first member rule 8 refuses is returned as an error reply
-- (second value) before anything changes; otherwise such members are left out.
-- Returns the ids queued again.
local function repair(ids, strict)
  local chosen, seen = {}, {}
  for _, id in ipairs(ids) do
    if not seen[id] then
      seen[id] = true
      local state = NAME[redis.call('HGET', jk(id), F.state)]
      if not state then
        if strict then return nil, redis.error_reply(ERR.not_found .. ' ' .. id) end
      else
        local why = unrepairable(id, state)
        if not why then
          chosen[#chosen + 1] = id
        elseif strict then
          return nil, state_error(id, 'retry', state, why)
        end
      end
    end
  end
  local frontier = {}
  for _, id in ipairs(chosen) do
    local key = jk(id)
    local v = redis.call('HMGET', key, F.state, F.parent)
    redis.call('HDEL', key, F.finished, F.reason, F.failing_child, F.failed_ids, F.run_at, F.lost,
      F.result_type)
    del_chunked(key, F.result)
    redis.call('HSET', key, F.attempt, 0)
    release(id, NAME[v[1]])
    if v[2] then frontier[v[2]] = true end
  end
  -- Children before parents: a parent may be re-counted twice, alike.
  while next(frontier) do
    local ordered = {}
    for parent in pairs(frontier) do ordered[#ordered + 1] = parent end
    table.sort(ordered)
    frontier = {}
    for _, parent in ipairs(ordered) do
      if recount(parent) then
        local above = redis.call('HGET', jk(parent), F.parent)
        if above then frontier[above] = true end
      end
    end
  end
  return chosen
end

-- Rule 8: `id` is open again; the heirs its failure cancelled are held again.
function rearm_heirs(id)
  for _, h in ipairs(redis.call('LRANGE', P .. 'heirs:' .. id, 0, -1)) do
    local hk = jk(h)
    local hv = redis.call('HMGET', hk, F.state, F.when, F.predecessor_state, F.type, F.queue)
    if hv[1] == CODE.cancelled and cancelled_by_condition(hv[2], hv[3]) then
      redis.call('HDEL', hk, F.finished, F.reason, F.predecessor_state, F.predecessor_failed_ids)
      set_state(h, hv[4], hv[5] or hv[4], 'cancelled', 'held')
    end
  end
end

-- Rule 8: repair one member. Returns its fields afterwards (or an error reply).
local function retry(id)
  local _, refused = repair({ id }, true)
  if refused then return refused end
  return redis.call('HGETALL', jk(id))
end

-- Rule 8: repair every member of the root's family, and of its heirs' families,
-- whose own handler failed. Returns the ids queued again (or an error reply).
local function retry_failed(root)
  if redis.call('EXISTS', jk(root)) == 0 then return redis.error_reply(ERR.not_found .. ' ' .. root) end
  local members, seen, failed = { root }, { [root] = true }, {}
  local i = 1
  while i <= #members do
    local kids = redis.call('LRANGE', P .. 'kids:' .. members[i], 0, -1)
    if #kids == 0 and redis.call('HGET', jk(members[i]), F.state) == CODE.failed then
      failed[#failed + 1] = members[i]
    end
    for _, list in ipairs({ kids, redis.call('LRANGE', P .. 'heirs:' .. members[i], 0, -1) }) do
      for _, below in ipairs(list) do
        if not seen[below] then
          seen[below] = true
          members[#members + 1] = below
        end
      end
    end
    i = i + 1
  end
  table.sort(failed)
  return repair(failed, false)
end

-- Rule 12: delete a settled job and its family below it (all settled too: a job
-- settles only after its children and their heirs). Returns its fields as they were.
local function discard(id)
  local fields = redis.call('HGETALL', jk(id))
  if #fields == 0 then return redis.error_reply(ERR.not_found .. ' ' .. id) end
  local _, _, state = info(id)
  if not SETTLED[state] then return state_error(id, 'discard', state, 'it has not settled') end
  local doomed = { id }
  local i = 1
  while i <= #doomed do
    for _, kid in ipairs(redis.call('LRANGE', P .. 'kids:' .. doomed[i], 0, -1)) do
      doomed[#doomed + 1] = kid
    end
    i = i + 1
  end
  for _, member in ipairs(doomed) do forget(member) end
  return fields
end

-- Rules 7 and 10: scheduled jobs whose time has come join the back of their queue.
-- Rule 14: a paused queue is not claimed from; resuming it wakes workers.
local function pause_queue(queue, paused)
  local _, max_running, rate, per = read_controls(redis.call('HGET', P .. 'ctl', queue))
  write_controls(queue, paused, max_running, rate, per)
  if not paused and redis.call('EXISTS', P .. 'qp:' .. queue) == 1 then
    wakes[queue] = WAKE_TOKENS
  end
end

-- Rule 14: replace a queue's limits (nil: none); a new rate starts with a full bucket.
local function limit_queue(queue, max_running, rate, per)
  local paused, _, old_rate, old_per = read_controls(redis.call('HGET', P .. 'ctl', queue))
  write_controls(queue, paused, max_running, rate, per)
  if not rate then
    redis.call('HDEL', P .. 'bucket', queue)
  elseif rate ~= old_rate or per ~= old_per then
    redis.call('HSET', P .. 'bucket', queue, string.format('%d|%.17g', rate, NOW))
  end
  if redis.call('EXISTS', P .. 'qp:' .. queue) == 1 then wakes[queue] = WAKE_TOKENS end
end

local function promote_due(limit)
  local due = redis.call('ZRANGEBYSCORE', P .. 'sched', '-inf', NOW, 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    redis.call('ZREM', P .. 'sched', id)
    local jtype, queue, state = info(id)
    if state == 'scheduled' then
      push_ready(id, queue, redis.call('HGET', jk(id), F.priority) or '0')
      set_state(id, jtype, queue, 'scheduled', 'queued')
    end
  end
  return #due
end

-- Rule 12: forget up to `limit` jobs settled at or before `before`.
local function prune(before, failed_before, limit)
  local old = redis.call('ZRANGEBYSCORE', P .. 'finished', '-inf', before, 'LIMIT', 0, limit)
  for _, id in ipairs(old) do forget(id) end
  local failed = {}
  if #old < limit then
    failed = redis.call('ZRANGEBYSCORE', P .. 'failed_at', '-inf', failed_before,
      'LIMIT', 0, limit - #old)
    for _, id in ipairs(failed) do forget(id) end
  end
  return #old + #failed
end

-- Rule 7: one slice of the waiting jobs (their open counts re-counted) and of
-- the held heirs (released or cancelled if their predecessor has settled),
-- each slice starting where the last one ended. Returns the ids repaired.
local function reconcile(limit)
  local repaired = {}
  local cursor = P .. 'reconciled:waiting'
  local after = redis.call('GET', cursor) or ''
  local ids = redis.call('ZRANGE', P .. 'idx:waiting', after == '' and '-' or ('(' .. after), '+',
    'BYLEX', 'LIMIT', 0, limit)
  redis.call('SET', cursor, #ids == limit and ids[#ids] or '')
  for _, id in ipairs(ids) do
    local key = jk(id)
    local v = redis.call('HMGET', key, F.state, F.open, F.type, F.queue, F.failing_child)
    if v[1] == CODE.waiting then
      local open, failing = 0, v[5]
      for _, k in ipairs(redis.call('LRANGE', P .. 'kids:' .. id, 0, -1)) do
        local kv = redis.call('HMGET', jk(k), F.state, F.optional)
        local ks = NAME[kv[1]]
        if ks and not SETTLED[ks] then
          open = open + 1
        elseif ks and not failing and fails_parent(ks, kv[2]) then
          failing = k
        end
      end
      if open ~= tonumber(v[2] or '0') then
        repaired[#repaired + 1] = id
        count(v[3], v[4] or v[3], 'x')
        redis.call('HSET', key, F.open, open)
        if open == 0 then
          if failing then redis.call('HSET', key, F.failing_child, failing) end
          settle(id, settles_as(failing))
        end
      end
    end
  end
  cursor = P .. 'reconciled:held'
  after = redis.call('GET', cursor) or ''
  ids = redis.call('ZRANGE', P .. 'idx:held', after == '' and '-' or ('(' .. after), '+',
    'BYLEX', 'LIMIT', 0, limit)
  redis.call('SET', cursor, #ids == limit and ids[#ids] or '')
  for _, h in ipairs(ids) do
    local hv = redis.call('HMGET', jk(h), F.state, F.predecessor, F.type, F.queue)
    local pred = hv[2]
    if hv[1] == CODE.held and pred then
      local pv = redis.call('HMGET', jk(pred), F.state, F.parent, F.optional, F.failed_ids)
      local pred_state = NAME[pv[1]]
      if pred_state and SETTLED[pred_state]
          and redis.call('LPOS', P .. 'heirs:' .. pred, h) then
        repaired[#repaired + 1] = h
        count(hv[3], hv[4] or hv[3], 'x')
        release_heirs(pred, pred_state, pv[2], pv[3], pv[4])
      end
    end
  end
  return repaired
end

-- Rule 7: promote due jobs, recover expired leases, prune, reconcile, forget
-- silent workers; each bounded. Returns { promoted, recovered, lost ids, pruned,
-- repaired ids }.
local function maintain(retention, failed_retention, max_lost, limit)
  local promoted = promote_due(limit)
  local recovered, lost_ids = 0, {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', NOW, 'LIMIT', 0, limit)) do
    if redis.call('HGET', jk(id), F.state) == CODE.running then
      if lose_lease(id, max_lost) then
        lost_ids[#lost_ids + 1] = id
      else
        recovered = recovered + 1
      end
    else
      redis.call('ZREM', P .. 'leases', id)
    end
  end
  local pruned = prune(NOW - retention, NOW - failed_retention, limit)
  local repaired = reconcile(RECONCILE_BATCH)
  for _, worker in ipairs(redis.call('ZRANGEBYSCORE', P .. 'workers', '-inf', NOW)) do
    redis.call('DEL', P .. 'w:' .. worker)
  end
  redis.call('ZREMRANGEBYSCORE', P .. 'workers', '-inf', NOW)
  return { promoted, recovered, lost_ids, pruned, repaired }
end
