-- Shared by every Conveyor script (prepended to each one at load time).
--
-- KEYS[1] is the namespace prefix "{ns}:". Every key a script touches starts
-- with it, so all of one installation's keys hash to one Redis Cluster slot
-- and every transition stays a single-slot atomic script.
--
-- Job hash fields (absent means default):
--   t type, q queue (default t), p payload (p1, p2... continue it), s state (CODE),
--   pr priority, ra run_at, m max_attempts (default 5), to timeout, h headers (JSON), par parent, pred predecessor,
--   w heir condition, o optional, d declared by, a attempt, e last error,
--   st started, fin finished, tok fencing token, wid worker, lost lease losses,
--   open open children, fids failed ids (comma-separated), why reason,
--   fc failing child, ps / pf predecessor's state / failed ids.

local P = KEYS[1]
local NOW
do
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local MAX_FAILED_CHARS = 37000 -- about 1000 ids: a huge failing fan-out stays bounded
local WAKE_TOKENS = 64
local SPEC_FIELDS = 13
local wakes = {}

local function jk(id) return P .. 'job:' .. id end

local SETTLED = { succeeded = true, failed = true, cancelled = true }

-- A job's state is stored as one letter: it keeps a queued job's hash inside a
-- smaller allocation (32 bytes less per job with typical payloads).
local CODE = { held = 'h', scheduled = 'd', queued = 'q', running = 'r', waiting = 'w',
  succeeded = 's', failed = 'f', cancelled = 'c' }
local NAME = {}
for name, code in pairs(CODE) do NAME[code] = name end

-- Move a job between states; the state index, per-queue counts and event
-- stream change with it, so they can never disagree with the job.
local function set_state(id, jtype, queue, old, new)
  redis.call('HSET', jk(id), 's', CODE[new])
  if old then
    redis.call('ZREM', P .. 'idx:' .. old, id)
    redis.call('HINCRBY', P .. 'stats', old .. ':' .. queue, -1)
    if SETTLED[old] then redis.call('ZREM', P .. 'finished', id) end
  end
  redis.call('ZADD', P .. 'idx:' .. new, 0, id)
  redis.call('HINCRBY', P .. 'stats', new .. ':' .. queue, 1)
  if SETTLED[new] then redis.call('ZADD', P .. 'finished', NOW, id) end
  redis.call('PUBLISH', P .. 'events', new .. '|' .. id .. '|' .. jtype .. '|' .. queue .. '|' .. NOW)
end

local function info(id)
  local v = redis.call('HMGET', jk(id), 't', 'q', 's')
  return v[1], v[2] or v[1], NAME[v[3]]
end

-- Per-minute counters: the total (column), per type (column:type) and per
-- queue (column@queue).
-- Delete a settled job and its indexes (retention, or discard from the admin).
local function forget(id)
  local _, queue, state = info(id)
  if state then
    redis.call('ZREM', P .. 'idx:' .. state, id)
    redis.call('HINCRBY', P .. 'stats', state .. ':' .. queue, -1)
  end
  redis.call('DEL', jk(id), P .. 'kids:' .. id, P .. 'heirs:' .. id, P .. 'staged:' .. id)
  redis.call('ZREM', P .. 'finished', id)
end

local function count(jtype, queue, column)
  local key = P .. 'cnt:' .. math.floor(NOW / 60)
  redis.call('HINCRBY', key, column, 1)
  redis.call('HINCRBY', key, column .. ':' .. jtype, 1)
  redis.call('HINCRBY', key, column .. '@' .. queue, 1)
  redis.call('EXPIRE', key, 90000)
end

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

-- Queued now, or scheduled when its run_at is still ahead.
local function release(id, old)
  local v = redis.call('HMGET', jk(id), 't', 'q', 'pr', 'ra')
  local jtype, queue = v[1], v[2] or v[1]
  local run_at = tonumber(v[4])
  if run_at and run_at > NOW then
    redis.call('ZADD', P .. 'sched', run_at, id)
    set_state(id, jtype, queue, old, 'scheduled')
  else
    push_ready(id, queue, v[3] or '0')
    set_state(id, jtype, queue, old, 'queued')
  end
end

local function promote_due(limit)
  local due = redis.call('ZRANGEBYSCORE', P .. 'sched', '-inf', NOW, 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    redis.call('ZREM', P .. 'sched', id)
    local jtype, queue, state = info(id)
    if state == 'scheduled' then
      push_ready(id, queue, redis.call('HGET', jk(id), 'pr') or '0')
      set_state(id, jtype, queue, 'scheduled', 'queued')
    end
  end
  return #due
end

local function clear_lease(id)
  redis.call('ZREM', P .. 'leases', id)
  redis.call('HDEL', jk(id), 'wid')
end

-- A lease is held when the job runs under exactly this fencing token.
local function holds(id, token)
  local v = redis.call('HMGET', jk(id), 's', 'tok')
  return v[1] == CODE.running and v[2] == token
end

-- A job spec travels as SPEC_FIELDS arguments: id, type, queue, payload,
-- run_at, max_attempts, timeout, priority, headers, parent, predecessor,
-- heir condition, optional ('' or '0' when absent).
local OPTIONAL_FIELDS = { { 'ra', 4 }, { 'to', 6 }, { 'pr', 7 }, { 'h', 8 }, { 'par', 9 },
  { 'pred', 10 }, { 'w', 11 }, { 'o', 12 } }

-- Redis keeps a small hash as a compact listpack only while every value fits
-- hash-max-listpack-value (64 bytes by default). A payload up to 64 chunks long
-- is stored in 64-byte pieces p, p1, p2, ... so a typical job stays compact
-- (about 40% less memory); a larger one is stored whole.
local CHUNK, MAX_CHUNKS = 64, 64

local function payload_fields(f, payload)
  local n = math.ceil(#payload / CHUNK)
  if n <= 1 or n > MAX_CHUNKS then
    f[#f + 1] = 'p'; f[#f + 1] = payload
    return
  end
  for i = 0, n - 1 do
    f[#f + 1] = i == 0 and 'p' or ('p' .. i)
    f[#f + 1] = string.sub(payload, i * CHUNK + 1, (i + 1) * CHUNK)
  end
end

local function create(args, at, state, declarer)
  local id, jtype, queue = args[at], args[at + 1], args[at + 2]
  local f = { 't', jtype, 's', CODE[state] }
  payload_fields(f, args[at + 3])
  if args[at + 5] ~= '5' then f[#f + 1] = 'm'; f[#f + 1] = args[at + 5] end
  if queue ~= jtype then f[#f + 1] = 'q'; f[#f + 1] = queue end
  for _, field in ipairs(OPTIONAL_FIELDS) do
    local value = args[at + field[2]]
    if value ~= '' and value ~= '0' then f[#f + 1] = field[1]; f[#f + 1] = value end
  end
  if declarer then f[#f + 1] = 'd'; f[#f + 1] = declarer end
  redis.call('HSET', jk(id), unpack(f))
  redis.call('ZADD', P .. 'idx:' .. state, 0, id)
  redis.call('HINCRBY', P .. 'stats', state .. ':' .. queue, 1)
  return id
end

-- Rule 2: declarations of an attempt that did not succeed never run.
local function discard_staged(id)
  local key = P .. 'staged:' .. id
  for _, d in ipairs(redis.call('LRANGE', key, 0, -1)) do
    local _, queue, state = info(d)
    if state then
      redis.call('DEL', jk(d))
      redis.call('ZREM', P .. 'idx:' .. state, d)
      redis.call('HINCRBY', P .. 'stats', state .. ':' .. queue, -1)
    end
  end
  redis.call('DEL', key)
end

local function append_failed(key, existing, more)
  if not more or more == '' then return end
  existing = existing or ''
  if #existing >= MAX_FAILED_CHARS then return end
  local joined = existing == '' and more or (existing .. ',' .. more)
  if #joined > MAX_FAILED_CHARS then
    joined = string.sub(joined, 1, MAX_FAILED_CHARS)
    joined = string.match(joined, '^(.*),') or ''
  end
  redis.call('HSET', key, 'fids', joined)
end

-- Rules 3-5: settle a job, release or cancel its heirs, and walk up its
-- parents, settling each whose last open child this was.
local function settle(id, state)
  local cur = id
  while cur do
    local key = jk(cur)
    local v = redis.call('HMGET', key, 't', 'q', 's', 'par', 'o', 'fids')
    local jtype, queue, old, parent, optional, fids = v[1], v[2] or v[1], NAME[v[3]], v[4], v[5], v[6]
    redis.call('HSET', key, 'fin', NOW)
    clear_lease(cur)
    set_state(cur, jtype, queue, old, state)
    if state == 'succeeded' then count(jtype, queue, 's')
    elseif state == 'failed' then count(jtype, queue, 'f') end
    -- Heirs first: a released heir takes the parent, so the parent's open
    -- count rises before it falls for this job.
    for _, h in ipairs(redis.call('LRANGE', P .. 'heirs:' .. cur, 0, -1)) do
      local hk = jk(h)
      local hv = redis.call('HMGET', hk, 's', 'w', 't', 'q')
      if hv[1] == CODE.held then
        redis.call('HSET', hk, 'ps', state)
        if fids then redis.call('HSET', hk, 'pf', fids) end
        if hv[2] == 'settled' or state == 'succeeded' then
          if parent then
            redis.call('HSET', hk, 'par', parent)
            redis.call('HINCRBY', jk(parent), 'open', 1)
            redis.call('RPUSH', P .. 'kids:' .. parent, h)
          end
          if optional then redis.call('HSET', hk, 'o', '1') end
          release(h, 'held')
        else
          redis.call('HSET', hk, 'fin', NOW, 'why', 'predecessor ' .. cur .. ' ' .. state)
          set_state(h, hv[3], hv[4] or hv[3], 'held', 'cancelled')
        end
      end
    end
    if not parent then return end
    local pk = jk(parent)
    local pv = redis.call('HMGET', pk, 's', 'fc', 'fids')
    local parent_state = NAME[pv[1]]
    if not parent_state or SETTLED[parent_state] then return end
    local open = redis.call('HINCRBY', pk, 'open', -1)
    append_failed(pk, pv[3], fids)
    local failing = pv[2]
    if state ~= 'succeeded' and not optional and not failing then
      failing = cur
      redis.call('HSET', pk, 'fc', cur, 'why', 'child ' .. cur .. ' ' .. state)
    end
    if parent_state ~= 'waiting' or open > 0 then return end
    state = failing and 'failed' or 'succeeded'
    cur = parent
  end
end

local function fail(id, err)
  discard_staged(id)
  local key = jk(id)
  redis.call('HSET', key, 'e', err)
  append_failed(key, redis.call('HGET', key, 'fids'), id)
  settle(id, 'failed')
end

-- Back to queued without counting the attempt (lease lost, or handed back).
local function requeue(id)
  discard_staged(id)
  clear_lease(id)
  local key = jk(id)
  if tonumber(redis.call('HGET', key, 'a') or '0') > 0 then redis.call('HINCRBY', key, 'a', -1) end
  redis.call('HDEL', key, 'ra')
  release(id, 'running')
end

local function insert_held(declarer, args, first, n)
  local staged = P .. 'staged:' .. declarer
  for i = 0, n - 1 do
    local at = first + i * SPEC_FIELDS
    if redis.call('EXISTS', jk(args[at])) == 0 then  -- idempotent when a call is retried
      create(args, at, 'held', declarer)
      redis.call('RPUSH', staged, args[at])
    end
  end
end
