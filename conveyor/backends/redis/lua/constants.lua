-- Generated from conveyor/backends/redis/layout.py and conveyor/core/rules.py by
-- `python tools/genlua.py` (nox -s generate): do not edit by hand.

-- Job hash fields (layout.FIELD).
local F = {
  type = 't',
  queue = 'q',
  payload = 'p',
  state = 's',
  priority = 'pr',
  run_at = 'ra',
  max_attempts = 'm',
  timeout = 'to',
  headers = 'h',
  parent = 'par',
  predecessor = 'pred',
  when = 'w',
  optional = 'o',
  declared_by = 'd',
  attempt = 'a',
  error = 'e',
  started = 'st',
  finished = 'fin',
  token = 'tok',
  worker = 'wid',
  lost = 'lost',
  open = 'open',
  failed_ids = 'fids',
  reason = 'why',
  failing_child = 'fc',
  predecessor_state = 'ps',
  predecessor_failed_ids = 'pf',
  result = 'res',
  result_type = 'rt',
  backoff = 'bo',
  key = 'k',
  key_ttl = 'kt',
  progress = 'prog',
  plan = 'plan',
  root = 'root',
  ready = 'rd',
}
-- States as stored: one letter each (layout.STATE_CODE), and back.
local CODE = {
  held = 'h',
  scheduled = 'd',
  queued = 'q',
  running = 'r',
  waiting = 'w',
  succeeded = 's',
  failed = 'f',
  cancelled = 'c',
}
local NAME = {
  h = 'held',
  d = 'scheduled',
  q = 'queued',
  r = 'running',
  w = 'waiting',
  s = 'succeeded',
  f = 'failed',
  c = 'cancelled',
}
local DEFAULT_MAX_ATTEMPTS = 5
-- A spec's arguments, by offset from its first (layout.SPEC_ARGS).
local SPEC = {
  id = 0,
  type = 1,
  queue = 2,
  payload = 3,
  run_at = 4,
  max_attempts = 5,
  timeout = 6,
  priority = 7,
  headers = 8,
  parent = 9,
  predecessor = 10,
  when = 11,
  optional = 12,
  backoff = 13,
  key = 14,
  key_ttl = 15,
  plan = 16,
  root = 17,
}
local SPEC_FIELDS = 18
-- An outcome's arguments, by offset from its first (layout.OUTCOME_ARGS).
local OUTCOME = {
  kind = 0,
  id = 1,
  token = 2,
  error = 3,
  run_at = 4,
  result = 5,
  result_type = 6,
  n = 7,
}
local OUTCOME_FIELDS = 8
local KIND = { success = 'ok', retry = 'retry', failure = 'fail', hand_back = 'back' }
-- Error reply codes (layout.ERROR).
local ERR = { not_found = 'CONVEYOR_NOT_FOUND', state = 'CONVEYOR_STATE', lease_lost = 'CONVEYOR_LEASE_LOST' }
-- The rulebook's constants (conveyor/core/rules.py).
local MAX_FAILED_IDS = 1000
local CHILD_REASON = 'child %s %s'
local PREDECESSOR_REASON = 'predecessor %s %s'
local ANCESTOR_CANCELLED = 'ancestor %s cancelled'
local WORKER_LOST = 'worker lost: lease expired %d times'
local DUPLICATE_REASON = 'duplicate: key %s held by %s'
local NOT_FAILED = 'only failed or cancelled jobs'
local FAILED_BY_FAMILY = 'its handler succeeded; it %s because of its family: retry the members that failed (retry_failed retries them all)'
local NEVER_RELEASED = 'it is an heir that never ran; one cancelled by its condition is re-armed when its predecessor\'s family is repaired'
local ANCESTOR_SETTLED = 'ancestor %s is %s: repair re-opens only families that failed'
local FAMILY_PRUNED = 'its family was pruned: parent %s is gone'
local RECONCILE_BATCH = 100
local LIMIT_POLL = 0.05
