--[[
breaker-8.lua: the whole breakerbox state machine. Every transition of a
breaker happens in this file, atomically, on Redis's clock. Reads that
change nothing are in status-8.lua.

KEYS (exactly these, in this order, for one breaker NAME; see docs/protocol.md)
  KEYS[1] circuit_breaker:{NAME}:state              string: closed | open | half_open
  KEYS[2] circuit_breaker:{NAME}:failures           string: consecutive failures (absent: 0)
  KEYS[3] circuit_breaker:{NAME}:last_failure_time  string: unix ms of the last failure
  KEYS[4] circuit_breaker:{NAME}:metrics            hash: generation, transitions, mode, totals, window, ... (absent field: 0)
  KEYS[5] circuit_breaker:{NAME}:history            list: last 100 events, compact JSON, newest first
  KEYS[6] circuit_breaker:{NAME}:config             hash: thresholds, timeouts and trip rules
  KEYS[7] circuit_breaker:{NAME}:probes             zset: half-open probe leases -> expiry ms
  KEYS[8] circuit_breaker:{NAME}:events             stream: one entry per transition (the alerts' outbox)

ARGV[1] is the operation:
  allow                                   admit one call or refuse it
  record REFUSED [OUTCOME GEN LEASE ERROR DURATION_MS RETRY_AFTER_MS]...
                                          apply outcomes in order; OUTCOME is
                                          s (success), f (failure) or r (release
                                          a probe lease without counting);
                                          DURATION_MS (empty: unknown) feeds the
                                          slow-call rule; a failure's
                                          RETRY_AFTER_MS > 0 opens the breaker
                                          (or keeps it open) until at least
                                          now + min(it, max_retry_after_ms);
                                          REFUSED adds calls refused by a worker
  tally SUCCESSES FAILURES REFUSED        add to the lifetime totals only
  control ACTION ACTOR                    ACTION: reset | force_open | disable | release
  configure ACTOR [FIELD VALUE]...        store config fields (overwrites)
  seed ACTOR [FIELD VALUE]...             store them only if no config is stored

Every integer argument and stored field is decimal digits (no sign, no
leading zero) within BOUNDS below.

Trip rules (docs/protocol.md, "Trip rules"), whichever trips first, in
closed: a failure carrying a retry-after; failure_threshold consecutive
failures; and over a sliding window of the current outcomes recorded in
closed (window_ms of Redis's clock or the last window_calls calls, kept in
at most 60 buckets in the metrics hash), failure_rate_threshold percent of
failures or slow_call_rate_threshold percent of calls at or over
slow_call_ms, once minimum_calls are in the window. A failed probe round
multiplies the recovery timeout in force by recovery_backoff percent, up to
max_recovery_timeout_ms; closing restores it.

Reply (integers and strings only)
  allow     {admitted 1|0, state, generation, mode, retry_after_ms, lease}
  record    {state, generation, mode, retry_after_ms, counted, stale}
  tally     {total_successes, total_failures, total_refused}
  control   {state, generation, mode, retry_after_ms}
  configure {written, overwritten}   fields written; of those, fields that held another value
  seed      {written, overwritten}   written is 0 when a config was stored already

Errors
  BADKEYS    not the 8 keys of one breaker, in order (nothing is read)
  BADARGS    unknown operation or action, malformed argument, a config
             change that leaves the rules inconsistent (nothing is written)
  BADCONFIG  a stored config value is not valid (operations that need the config)
Any other error of a command the script runs (an ACL refusal, OOM) ends the
script with Redis's own error; only a key of the wrong type is corruption.

Events: every change of state or mode sets the generation to
max(generation + 1, now_ms) and writes exactly one entry to KEYS[8] (XADD
MAXLEN 100), one compact JSON entry to KEYS[5] (capped at 100) and
PUBLISHes "STATE GENERATION MODE RETRY_AFTER_MS" on the channel
circuit_breaker:{NAME}:changed. Event names: opened, half_opened, closed,
reset, forced_open, disabled, released, repaired. An opening's entries
carry the rule that tripped it in detail. A configure or seed that stores
something PUBLISHes too, and adds a config_changed history entry if a value
in force changed; neither makes a generation or stream entry. A retry-after
that moves an open breaker's deadline PUBLISHes the new retry_after_ms.
]]

local SUFFIXES = {'state', 'failures', 'last_failure_time', 'metrics', 'history', 'config', 'probes', 'events'}
if #KEYS ~= 8 then
  return redis.error_reply('BADKEYS breaker-8.lua takes the 8 keys of one breaker, got ' .. #KEYS)
end
local PREFIX = string.match(KEYS[1], '^(circuit_breaker:{[^{}%c]+}:)state$')
if PREFIX == nil or #PREFIX > 19 + 200 then
  return redis.error_reply('BADKEYS KEYS[1] must be circuit_breaker:{NAME}:state with a valid NAME')
end
for i = 2, 8 do
  if KEYS[i] ~= PREFIX .. SUFFIXES[i] then
    return redis.error_reply('BADKEYS KEYS[' .. i .. '] must be ' .. PREFIX .. SUFFIXES[i])
  end
end
local K_STATE, K_FAILURES, K_LAST_FAILURE, K_METRICS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_HISTORY, K_CONFIG, K_PROBES, K_EVENTS = KEYS[5], KEYS[6], KEYS[7], KEYS[8]

-- The bounds of integer arguments; the config's are in BOUNDS below.
local MAX = 9007199254740991 -- 2^53 - 1: every integer up to it is exact
local MAX_COUNT, MAX_MS = 1000000000, 2592000000

-- A number from decimal digits within lo..hi, or nil.
local function decimal(v, lo, hi)
  if type(v) ~= 'string' or #v > 16 or not (v == '0' or string.find(v, '^[1-9]%d*$')) then return nil end
  local n = tonumber(v)
  if n < lo or n > hi then return nil end
  return n
end
local function counter(v) return decimal(v, 0, MAX) or 0 end
local function int(n) return string.format('%d', n) end
-- True when a redis.pcall on one of this breaker's keys answered WRONGTYPE:
-- the key is corrupt. Any other error (a command the caller's ACL refuses,
-- OOM, a replica refusing writes) is not corruption: it ends the script
-- with Redis's own error, before the key is touched.
local function failed(r)
  if type(r) ~= 'table' or r.err == nil then return false end
  if string.find(r.err, '^WRONGTYPE ') then return true end
  error(r)
end
local function badargs(what, v, lo, hi)
  return redis.error_reply('BADARGS ' .. what .. ' is "' .. tostring(v) .. '", want an integer ' ..
    int(lo) .. '..' .. int(hi))
end

-- record's arguments, checked before anything is read. Returns REFUSED and
-- whether a failure is among the outcomes, or an error reply.
local function record_args()
  local refused = decimal(ARGV[2], 0, MAX_COUNT)
  if refused == nil then return nil, nil, badargs('record REFUSED', ARGV[2], 0, MAX_COUNT) end
  if (#ARGV - 2) % 6 ~= 0 then
    return nil, nil, redis.error_reply('BADARGS record takes REFUSED then groups of six: ' ..
      'outcome, gen, lease, error, duration_ms, retry_after_ms')
  end
  local has_failure = false
  for i = 3, #ARGV, 6 do
    local n, outcome = (i - 3) / 6 + 1, ARGV[i]
    if outcome ~= 's' and outcome ~= 'f' and outcome ~= 'r' then
      return nil, nil, redis.error_reply('BADARGS outcome ' .. n .. ' is "' .. outcome .. '", want s, f or r')
    end
    has_failure = has_failure or outcome == 'f'
    if decimal(ARGV[i + 1], 0, MAX) == nil then
      return nil, nil, badargs('outcome ' .. n .. ' GEN', ARGV[i + 1], 0, MAX)
    end
    if ARGV[i + 4] ~= '' and decimal(ARGV[i + 4], 0, MAX_MS) == nil then
      return nil, nil, badargs('outcome ' .. n .. ' DURATION_MS', ARGV[i + 4], 0, MAX_MS)
    end
    if ARGV[i + 5] ~= '' and decimal(ARGV[i + 5], 0, MAX_MS) == nil then
      return nil, nil, badargs('outcome ' .. n .. ' RETRY_AFTER_MS', ARGV[i + 5], 0, MAX_MS)
    end
  end
  return refused, has_failure
end

-- Redis's clock, read once and only when an operation needs it.
local now_ms
local function now()
  if not now_ms then
    local t = redis.call('TIME')
    now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now_ms
end

-- The sliding window (docs/protocol.md, "The window"): current outcomes
-- recorded in closed, in a ring of COUNT buckets of SIZE ms (a time
-- window: bucket number floor(now_ms / SIZE)) or of SIZE calls (a count
-- window). In the metrics hash: w_spec "KIND SIZE COUNT SLOW_MS FR SR MIN"
-- (its presence says a window is kept); w "HEAD CALLS FAILURES SLOW
-- NEWEST_CALLS NEWEST_FAILURES NEWEST_SLOW": the newest bucket's number,
-- the running sums over the window and the newest bucket, in one field
-- (every record reads and writes them: one field costs less than five);
-- and w0..w{COUNT-1}, the older buckets "CALLS FAILURES SLOW" (bucket n is
-- w{n mod COUNT}; an empty one is absent). A record never sums the
-- buckets: it adds to w, and when the head moves on, stores the newest
-- bucket in its place and subtracts the buckets that leave. Redis looks a
-- field up in a small hash by scanning it, so the fields every closed
-- call reads are kept ahead of the buckets (and present even at their
-- defaults) while a window is kept. The functions that move the window on
-- are built on first use: a breaker without a window never pays for them.
local SPEC = '^([tc]) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+)$'
local W = '^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+)$'
local WL
local function wlib()
  if WL then return WL end
  WL = {}
  local function triple(v)
    local c, f, s = string.match(v or '', '^(%d+) (%d+) (%d+)$')
    return tonumber(c) or 0, tonumber(f) or 0, tonumber(s) or 0
  end
  -- A window from w_spec and w as stored, or nil.
  function WL.open(spec, w)
    local kind, size, count, slow, fr, sr, min = string.match(spec or '', SPEC)
    size, count = tonumber(size), tonumber(count)
    if not kind or size < 1 or count < 1 or count > 60 then return nil end
    local v = {string.match(w or '', W)}
    for i = 1, 7 do v[i] = tonumber(v[i]) or 0 end
    return {kind = kind, size = size, count = count, slow = tonumber(slow), fr = tonumber(fr), sr = tonumber(sr),
      min = tonumber(min), head = v[1], sum = {v[2], v[3], v[4]}, cur = {v[5], v[6], v[7]}, raw = w, pending = {}}
  end
  -- Empties the window.
  function WL.clear(w)
    for i = 0, w.count - 1 do w.pending['w' .. i] = false end
    w.head, w.sum, w.cur = 0, {0, 0, 0}, {0, 0, 0}
  end
  -- Moves the head to bucket number n: the buckets numbered n - COUNT and
  -- before leave the window (read in one HMGET, subtracted, deleted).
  local function advance(w, n)
    local d, count = n - w.head, w.count
    if d >= count or w.sum[1] == 0 then
      if w.sum[1] > 0 then WL.clear(w) end
      w.sum, w.cur = {0, 0, 0}, {0, 0, 0}
    else
      local cur = w.cur
      w.pending['w' .. (w.head % count)] = cur[1] > 0 and string.format('%d %d %d', cur[1], cur[2], cur[3]) or false
      local need = {}
      for k = w.head + 1, n do
        local f = 'w' .. (k % count)
        if w.pending[f] == nil then need[#need + 1] = f end
      end
      local got = {}
      if #need > 0 then
        local r = redis.call('HMGET', K_METRICS, unpack(need))
        for i, f in ipairs(need) do got[f] = r[i] end
      end
      local sum = w.sum
      for k = w.head + 1, n do
        local f = 'w' .. (k % count)
        local v = w.pending[f]
        if v == nil then v = got[f] end
        if v then
          local c, fl, sl = triple(v)
          sum[1], sum[2], sum[3] = math.max(0, sum[1] - c), math.max(0, sum[2] - fl), math.max(0, sum[3] - sl)
          w.pending[f] = false
        end
      end
      w.cur = {0, 0, 0}
    end
    w.head = n
  end
  -- Adds one current outcome recorded in closed.
  function WL.add(w, failure, duration)
    if w.kind == 't' then
      local n = math.floor(now() / w.size)
      if n > w.head then advance(w, n) end
    elseif w.cur[1] >= w.size then
      advance(w, w.head + 1)
    end
    local f = failure and 1 or 0
    local s = (w.slow > 0 and duration ~= '' and tonumber(duration) >= w.slow) and 1 or 0
    local cur, sum = w.cur, w.sum
    cur[1], cur[2], cur[3] = cur[1] + 1, cur[2] + f, cur[3] + s
    sum[1], sum[2], sum[3] = sum[1] + 1, sum[2] + f, sum[3] + s
  end
  -- The rate rule the window trips, 'failure' or 'slow', or nil.
  function WL.trips(w)
    local c = w.sum[1]
    if c < w.min or c == 0 then return nil end
    if w.fr > 0 and w.sum[2] * 100 >= w.fr * c then return 'failure' end
    if w.sr > 0 and w.sum[3] * 100 >= w.sr * c then return 'slow' end
    return nil
  end
  -- Appends the window's writes to hset and hdel: what changed.
  function WL.flush(w, hset, hdel)
    for f, v in pairs(w.pending) do
      if v then hset[#hset + 1], hset[#hset + 2] = f, v else hdel[#hdel + 1] = f end
    end
    w.pending = {}
    local sum, cur = w.sum, w.cur
    local v = string.format('%d %d %d %d %d %d %d', w.head, sum[1], sum[2], sum[3], cur[1], cur[2], cur[3])
    if v ~= w.raw then hset[#hset + 1], hset[#hset + 2] = 'w', v end
    w.raw = v
  end
  return WL
end

-- The common cases first, from the few fields they need: an allow of a
-- closed breaker, and a record of successes in closed (with a window: as
-- long as none of them trips a rate rule). Each returns nil when its case
-- is not the common one; the full operations below decide.
local allow_read -- what allow_closed read, for allow when it answers instead
local function allow_closed()
  local st = redis.pcall('GET', K_STATE)
  local mh = redis.pcall('HMGET', K_METRICS, 'generation', 'mode')
  if failed(st) or failed(mh) then return nil end
  if (st ~= 'closed' and st ~= false) or (mh[2] and mh[2] ~= 'normal') then
    allow_read = st
    return nil
  end
  if not st then redis.call('SET', K_STATE, 'closed') end
  return {1, 'closed', counter(mh[1]), 'normal', 0, ''}
end

local function record_closed()
  local refused, has_failure, err = record_args()
  if err then return err end
  if has_failure then return nil end
  local st = redis.pcall('GET', K_STATE)
  local fl = redis.pcall('GET', K_FAILURES)
  local mh = redis.pcall('HMGET', K_METRICS, 'generation', 'mode', 'total_successes', 'total_refused', 'w_spec', 'w')
  if failed(st) or failed(fl) or failed(mh) or (st ~= 'closed' and st ~= false) or (mh[2] and mh[2] ~= 'normal') then
    return nil
  end
  local gen, successes, counted, stale = counter(mh[1]), 0, 0, 0
  for i = 3, #ARGV, 6 do
    if ARGV[i] == 's' then
      successes = successes + 1
      if tonumber(ARGV[i + 1]) == gen then counted = counted + 1 else stale = stale + 1 end
    end
  end
  local hset, hdel = {}, {}
  if mh[5] and counted > 0 then
    -- The window counts the current successes. The common case, inline:
    -- they all go to the newest bucket.
    local kind, size, count, slow, fr, sr, min = string.match(mh[5], SPEC)
    local head, c, f, s, cc, cf, cs = string.match(mh[6] or '', W)
    if not kind or not head then return nil end
    size, slow, fr, sr, min = tonumber(size), tonumber(slow), tonumber(fr), tonumber(sr), tonumber(min)
    head, c, f, s, cc, cs = tonumber(head), tonumber(c), tonumber(f), tonumber(s), tonumber(cc), tonumber(cs)
    if (kind == 't' and math.floor(now() / size) == head) or (kind == 'c' and cc + counted <= size) then
      local s0 = s
      for i = 3, #ARGV, 6 do
        if ARGV[i] == 's' and tonumber(ARGV[i + 1]) == gen then
          local d = ARGV[i + 4]
          if slow > 0 and d ~= '' and tonumber(d) >= slow then s = s + 1 end
          c = c + 1
          -- A rate rule that trips: the full record opens the breaker.
          if c >= min and ((fr > 0 and f * 100 >= fr * c) or (sr > 0 and s * 100 >= sr * c)) then return nil end
        end
      end
      hset[1], hset[2] = 'w', string.format('%d %d %d %d %d %s %d', head, c, f, s, cc + counted, cf, cs + s - s0)
    else
      local lib = wlib()
      local w = lib.open(mh[5], mh[6] or nil)
      if not w then return nil end
      for i = 3, #ARGV, 6 do
        if ARGV[i] == 's' and tonumber(ARGV[i + 1]) == gen then
          lib.add(w, false, ARGV[i + 4])
          if lib.trips(w) then return nil end
        end
      end
      lib.flush(w, hset, hdel)
    end
  end
  if successes > 0 then hset[#hset + 1], hset[#hset + 2] = 'total_successes', int(counter(mh[3]) + successes) end
  if refused > 0 then hset[#hset + 1], hset[#hset + 2] = 'total_refused', int(counter(mh[4]) + refused) end
  if #hset > 0 then redis.call('HSET', K_METRICS, unpack(hset)) end
  if #hdel > 0 then redis.call('HDEL', K_METRICS, unpack(hdel)) end
  -- A current success ends a run of failures; a count of 0 (or a corrupt one) is not kept.
  if fl and (counted > 0 or decimal(fl, 1, MAX) == nil) then redis.call('DEL', K_FAILURES) end
  if not st then redis.call('SET', K_STATE, 'closed') end
  return {'closed', gen, 'normal', 0, counted, stale}
end

local FAST = {allow = allow_closed, record = record_closed}
if FAST[ARGV[1]] then
  local reply = FAST[ARGV[1]]()
  if reply then return reply end
end

-- The metrics fields an operation reads (absent: 0; mode absent: normal;
-- w_spec absent: no window).
local M_FIELDS = {'generation', 'mode', 'opened_at', 'half_open_successes', 'outage_started_at',
  'outage_refused', 'lease_seq', 'total_successes', 'total_failures', 'total_refused', 'transitions',
  'failed_rounds', 'retry_until', 'w_spec'}

-- The metrics fields every closed call reads, kept (even at their
-- defaults) ahead of the buckets while a window is kept: Redis finds a
-- field of a small hash by scanning it.
local HOT = {generation = '0', mode = 'normal', total_successes = '0', total_refused = '0'}
local HOT_ORDER = {'generation', 'mode', 'total_successes', 'total_refused'}
-- Lays the metrics hash out for a new window: the HOT fields (present
-- even at their defaults), w_spec and the window's fields first, then
-- the others as they were; no buckets.
local function layout(spec)
  local flat = redis.call('HGETALL', K_METRICS)
  local old = {}
  for i = 1, #flat, 2 do old[flat[i]] = flat[i + 1] end
  local out = {}
  for _, f in ipairs(HOT_ORDER) do
    out[#out + 1], out[#out + 2] = f, old[f] or HOT[f]
    old[f] = nil
  end
  out[#out + 1], out[#out + 2] = 'w_spec', spec
  old.w_spec = nil
  out[#out + 1], out[#out + 2] = 'w', '0 0 0 0 0 0 0'
  old.w = nil
  for f, v in pairs(old) do
    if not string.match(f, '^w%d+$') then out[#out + 1], out[#out + 2] = f, v end
  end
  redis.call('DEL', K_METRICS)
  redis.call('HSET', K_METRICS, unpack(out))
end

-- The config's bounds {min, max, default} (status-8.lua and the Go Config
-- agree; tests check). 0 turns a rule off.
local BOUNDS = {
  failure_threshold        = {1, 1000000, 3},
  success_threshold        = {1, 1000000, 2},
  half_open_max_calls      = {1, 1000000, nil}, -- default: success_threshold
  recovery_timeout_ms      = {1, 2592000000, 30000},
  request_timeout_ms       = {1, 2592000000, 45000},
  window_ms                = {0, 2592000000, 0},
  window_calls             = {0, 1000000, 0},
  window_buckets           = {1, 60, 10},
  failure_rate_threshold   = {0, 100, 0},
  slow_call_ms             = {0, 2592000000, 0},
  slow_call_rate_threshold = {0, 100, 0},
  minimum_calls            = {1, 1000000, 10},
  max_retry_after_ms       = {0, 2592000000, 600000},
  recovery_backoff         = {100, 1000, 100},
  max_recovery_timeout_ms  = {1, 2592000000, 600000},
}
local HISTORY_MAX, STREAM_MAX = 100, 100

-- What makes a set of config values inconsistent, or nil.
local function conflict(c)
  if c.window_ms > 0 and c.window_calls > 0 then
    return 'window_ms and window_calls are both set: a window is one or the other'
  end
  if (c.failure_rate_threshold > 0 or c.slow_call_rate_threshold > 0) and c.window_ms == 0 and c.window_calls == 0 then
    return 'failure_rate_threshold and slow_call_rate_threshold need window_ms or window_calls'
  end
  if c.slow_call_rate_threshold > 0 and c.slow_call_ms == 0 then
    return 'slow_call_rate_threshold needs slow_call_ms'
  end
  return nil
end

-- The window spec a config asks for ("" for none): COUNT buckets of
-- SIZE = ceil(window / window_buckets) ms or calls, COUNT = ceil(window / SIZE).
local function spec_of(c)
  local kind, total = 't', c.window_ms
  if total == 0 then kind, total = 'c', c.window_calls end
  if total == 0 then return '' end
  local size = math.ceil(total / c.window_buckets)
  return kind .. ' ' .. int(size) .. ' ' .. int(math.ceil(total / size)) .. ' ' .. int(c.slow_call_ms) .. ' ' ..
    int(c.failure_rate_threshold) .. ' ' .. int(c.slow_call_rate_threshold) .. ' ' .. int(c.minimum_calls)
end

-- Read one of this breaker's keys; one of the wrong type is corrupt (the
-- keys were checked, so it is ours): delete it and read it as absent.
local function read(cmd, key, ...)
  local r = redis.pcall(cmd, key, ...)
  if failed(r) then
    redis.call('DEL', key)
    return nil
  end
  return r
end

-- The breaker as loaded: state and failures keys, metrics fields (absent: 0).
local stored_state, state, failures, stored_failures
local m, raw, dirty = {}, {}, {}
local win -- the window, once loaded (load_window)

local function set_metrics(values)
  for i, f in ipairs(M_FIELDS) do
    raw[f] = values[i] or nil
    m[f] = counter(values[i])
  end
  local mode = values[2]
  if mode ~= 'forced_open' and mode ~= 'disabled' then mode = 'normal' end
  m.mode = mode
  m.w_spec = raw.w_spec or ''
end

-- pre: the state key as allow_closed read it (false when absent).
local function load_state(pre)
  if pre ~= nil then
    stored_state = pre or nil
  else
    stored_state = read('GET', K_STATE)
  end
  state = stored_state
  if state ~= 'closed' and state ~= 'open' and state ~= 'half_open' then state = 'closed' end
  set_metrics(read('HMGET', K_METRICS, unpack(M_FIELDS)) or {})
end
local function load_failures()
  stored_failures = read('GET', K_FAILURES)
  failures = counter(stored_failures)
  -- Probe leases exist only in half-open; check their key's type there.
  if state == 'half_open' then read('ZCARD', K_PROBES) end
end
local function load()
  load_state()
  load_failures()
end

-- The window kept in the metrics hash (w_spec), or nil.
local function load_window()
  if not win and m.w_spec ~= '' then
    win = wlib().open(m.w_spec, redis.call('HGET', K_METRICS, 'w') or nil)
  end
  return win
end

local function put(field, value)
  m[field] = value
  dirty[field] = true
end

-- Write what changed: metrics fields (default values are deleted, not
-- stored), the window, the failures count (absent when 0), and the state
-- key, which exists once a breaker is used so that SCAN finds it.
local function save()
  local hset, hdel = {}, {}
  for _, f in ipairs(M_FIELDS) do
    if dirty[f] then
      local v = m[f]
      if (v == 0 or v == 'normal' or v == '') and not (HOT[f] and m.w_spec ~= '') then
        if raw[f] then hdel[#hdel + 1] = f end
        raw[f] = nil
      else
        v = type(v) == 'number' and int(v) or v
        if v ~= raw[f] then
          hset[#hset + 1], hset[#hset + 2] = f, v
          raw[f] = v
        end
      end
    end
  end
  if dirty.last_failure_error then
    hset[#hset + 1], hset[#hset + 2] = 'last_failure_error', m.last_failure_error
  end
  dirty = {}
  if win then WL.flush(win, hset, hdel) end
  if #hset > 0 then redis.call('HSET', K_METRICS, unpack(hset)) end
  if #hdel > 0 then redis.call('HDEL', K_METRICS, unpack(hdel)) end
  local f = failures > 0 and int(failures) or nil
  if f ~= stored_failures then
    if f then redis.call('SET', K_FAILURES, f) else redis.call('DEL', K_FAILURES) end
    stored_failures = f
  end
  if stored_state ~= state then
    redis.call('SET', K_STATE, state)
    stored_state = state
  end
end

-- Config: defaults overridden by the stored hash, every field checked.
local cfg, bad_config, stored_config, config_not_hash, hmc_stored
local function load_config()
  cfg, stored_config = {}, {}
  for f, b in pairs(BOUNDS) do cfg[f] = b[3] end
  local flat = redis.pcall('HGETALL', K_CONFIG)
  if failed(flat) then
    bad_config, config_not_hash, flat = 'BADCONFIG ' .. K_CONFIG .. ' is not a hash', true, {}
  end
  for i = 1, #flat, 2 do
    local field, value = flat[i], flat[i + 1]
    stored_config[field] = value
    local b = BOUNDS[field]
    if b then
      local n = decimal(value, b[1], b[2])
      if n == nil then
        bad_config = bad_config or ('BADCONFIG ' .. field .. ' is "' .. value .. '", want an integer ' ..
          int(b[1]) .. '..' .. int(b[2]))
      else
        cfg[field] = n
        hmc_stored = hmc_stored or field == 'half_open_max_calls'
      end
    end
  end
  cfg.half_open_max_calls = cfg.half_open_max_calls or cfg.success_threshold
  if not bad_config and conflict(cfg) then bad_config = 'BADCONFIG ' .. conflict(cfg) end
end
-- The config in force, or an error reply when a stored value is bad.
local function config()
  if not cfg then load_config() end
  if bad_config then return nil, redis.error_reply(bad_config) end
  return cfg
end

-- The window follows the config: a spec that differs in its buckets
-- (kind, size, count) drops the window kept so far; one that differs only
-- in its thresholds is rewritten. The config is loaded.
local function follow_config()
  local want = spec_of(cfg)
  if want == m.w_spec then return end
  local old, new = wlib().open(m.w_spec), WL.open(want)
  if not (old and new and old.kind == new.kind and old.size == new.size and old.count == new.count) then
    if m.w_spec ~= '' then
      local fields = {'w'}
      for i = 0, ((old and old.count) or 60) - 1 do fields[#fields + 1] = 'w' .. i end
      -- Without a window, fields at their defaults are absent again.
      for f, v in pairs(HOT) do
        if raw[f] == v then
          fields[#fields + 1] = f
          raw[f] = nil
        end
      end
      redis.call('HDEL', K_METRICS, unpack(fields))
    end
    if new then
      layout(want)
      for f, v in pairs(HOT) do raw[f] = raw[f] or v end
      raw.w_spec = want
    end
  end
  win = nil
  put('w_spec', want)
end

-- "30s" or "1500ms".
local function dur(ms)
  if ms % 1000 == 0 then return int(ms / 1000) .. 's' end
  return int(ms) .. 'ms'
end

-- The recovery timeout in force: recovery_timeout_ms, grown by
-- recovery_backoff percent after each failed probe round (failed_rounds)
-- up to max_recovery_timeout_ms (never below recovery_timeout_ms), in
-- integer steps of at least 1 ms, so every engine computes the same.
local function recovery_in_force()
  local t, rounds = cfg.recovery_timeout_ms, m.failed_rounds
  if cfg.recovery_backoff <= 100 or rounds == 0 then return t end
  local cap = math.max(cfg.max_recovery_timeout_ms, t)
  for _ = 1, rounds do
    if t >= cap then break end
    t = math.min(cap, math.max(t + 1, math.floor(t * cfg.recovery_backoff / 100)))
  end
  return t
end
-- When an open breaker admits its first probe: the recovery timeout in
-- force after opened_at, or later when an upstream's retry-after asks.
local function open_until()
  return math.max(m.opened_at + recovery_in_force(), m.retry_until)
end

-- One compact history entry: fields that are empty, or that the event name
-- or the previous entry already says, are left out (docs/protocol.md).
-- generation is left out when it equals ts (nearly always: a transition
-- sets it to max(generation + 1, now_ms)); a reader takes ts then. An
-- error keeps its first HISTORY_ERROR_MAX bytes (cut on a UTF-8 character
-- boundary); the metrics hash and the stream keep it whole.
local HISTORY_ERROR_MAX = 128
local function clip(s, n)
  if #s <= n then return s end
  local cut = n
  -- Back off over at most 3 continuation bytes (10xxxxxx) of a character cut in two.
  while cut > n - 3 do
    local b = string.byte(s, cut + 1)
    if b < 128 or b >= 192 then break end
    cut = cut - 1
  end
  local b = string.byte(s, cut + 1)
  if b >= 128 and b < 192 then cut = n end -- not UTF-8: cut where asked
  return string.sub(s, 1, cut)
end
local IMPLIED_TO = {opened = 'open', half_opened = 'half_open', closed = 'closed', reset = 'closed',
  forced_open = 'open', disabled = 'closed', repaired = 'closed'}
local function history(event, extra, actor, err, detail)
  local entry = '{"ts":' .. int(now()) .. ',"event":"' .. event .. '"'
  if m.generation ~= now() then entry = entry .. ',"generation":' .. int(m.generation) end
  entry = entry .. extra
  if actor ~= '' then entry = entry .. ',"actor":' .. cjson.encode(actor) end
  if err ~= '' then entry = entry .. ',"error":' .. cjson.encode(clip(err, HISTORY_ERROR_MAX)) end
  if detail ~= '' then entry = entry .. ',"detail":' .. cjson.encode(detail) end
  entry = entry .. '}'
  if failed(redis.pcall('LPUSH', K_HISTORY, entry)) then
    redis.call('DEL', K_HISTORY)
    redis.call('LPUSH', K_HISTORY, entry)
  end
  redis.call('LTRIM', K_HISTORY, 0, HISTORY_MAX - 1)
end

-- Milliseconds until this breaker may admit a call it refuses now; -1: not on a timer.
local function retry_after()
  if m.mode == 'forced_open' then return -1 end
  if m.mode == 'disabled' or state == 'closed' then return 0 end
  if state == 'open' then return math.max(0, open_until() - now()) end
  if (read('ZCARD', K_PROBES) or 0) < cfg.half_open_max_calls then return 0 end
  local first = read('ZRANGE', K_PROBES, 0, 0, 'WITHSCORES') or {}
  return math.max(0, (tonumber(first[2]) or now()) - now())
end

-- Tell subscribed workers what an allow would see now.
local function announce()
  redis.call('PUBLISH', PREFIX .. 'changed',
    state .. ' ' .. int(m.generation) .. ' ' .. m.mode .. ' ' .. int(retry_after()))
end

-- The one place where a breaker changes state or mode. The config is loaded
-- (every caller checked it). o holds, for an opening: err, the failure that
-- tripped it; detail, the rule (the stream entry's); hist, the rule as the
-- history says it ('' where the event and the previous entry say it);
-- deadline, a retry-after's (unix ms).
local NONE = {}
local function transition(event, to, actor, o)
  o = o or NONE
  local from, t = state, now()
  if from == 'closed' and to == 'open' then
    put('outage_started_at', t)
    put('outage_refused', 0)
  end
  if to == 'open' then put('opened_at', t) end
  put('retry_until', o.deadline or 0)
  if to == 'closed' then
    failures = 0
    put('failed_rounds', 0)
    -- The window counts the closed period that begins here.
    if load_window() and win.sum[1] > 0 then WL.clear(win) end
  end
  -- The outage fields describe the time since the breaker left closed.
  local in_outage = from ~= 'closed' and m.outage_started_at > 0
  state = to
  -- Never repeats, never goes back, even when a failover lost the last writes.
  put('generation', math.max(m.generation + 1, t))
  put('transitions', m.transitions + 1)
  put('half_open_successes', 0)
  put('lease_seq', 0)
  redis.call('DEL', K_PROBES)
  save()
  local recovery = recovery_in_force()
  if to == 'open' then recovery = open_until() - t end
  local fields = {'event', event, 'from', from, 'to', to, 'mode', m.mode, 'generation', int(m.generation),
    'time_ms', int(t), 'failures', int(failures), 'failure_threshold', int(cfg.failure_threshold),
    'recovery_timeout_ms', int(recovery), 'last_error', o.err or '',
    'outage_ms', int(in_outage and t - m.outage_started_at or 0),
    'refused', int(in_outage and m.outage_refused or 0), 'actor', actor, 'transitions', int(m.transitions),
    'detail', o.detail or ''}
  if failed(redis.pcall('XADD', K_EVENTS, 'MAXLEN', STREAM_MAX, '*', unpack(fields))) then
    redis.call('DEL', K_EVENTS)
    redis.call('XADD', K_EVENTS, 'MAXLEN', STREAM_MAX, '*', unpack(fields))
  end
  local extra = ''
  if event == 'repaired' then extra = ',"from":' .. cjson.encode(from) end
  if IMPLIED_TO[event] ~= to then extra = extra .. ',"to":"' .. to .. '"' end
  history(event, extra, actor, o.err or '', o.hist or '')
  announce()
end

-- A state key holding something other than a state is repaired to closed.
local function repair()
  if stored_state and stored_state ~= state then
    state = stored_state
    transition('repaired', 'closed', 'breakerbox')
  end
end

-- After load: checks the config when need_config says the operation uses
-- it (a repair of the state key, a transition, always does; so does a
-- breaker that keeps a window), brings the window in line with it, then
-- repairs. Returns an error reply or nil.
local function prepare(need_config)
  if need_config or m.w_spec ~= '' or (stored_state and stored_state ~= state) then
    local _, err = config()
    if err then return err end
    follow_config()
  end
  repair()
end

-- Checks FIELD VALUE pairs from ARGV[3] on; returns them (a field given
-- twice takes its last value) or an error reply.
local function config_args(op)
  local pairs_, at = {}, {}
  for i = 3, #ARGV, 2 do
    local b = BOUNDS[ARGV[i]]
    local n = b and decimal(ARGV[i + 1], b[1], b[2])
    if not n then
      local want = b and ('an integer ' .. int(b[1]) .. '..' .. int(b[2])) or 'a known field'
      return nil, redis.error_reply('BADARGS ' .. op .. ' field "' .. tostring(ARGV[i]) .. '" = "' ..
        tostring(ARGV[i + 1]) .. '": want ' .. want)
    end
    if at[ARGV[i]] then
      pairs_[at[ARGV[i]]][2] = n
    else
      pairs_[#pairs_ + 1] = {ARGV[i], n}
      at[ARGV[i]] = #pairs_
    end
  end
  return pairs_
end

-- Stores config fields; returns {written, overwritten} or an error reply
-- when the config they leave is inconsistent. The caller loaded the
-- config (stored_config).
local function store_config(op, actor, fields)
  local changes, overwritten = {}, 0
  for _, p in ipairs(fields) do
    local stored = stored_config[p[1]]
    if stored ~= int(p[2]) then
      if stored then overwritten = overwritten + 1 end
      changes[#changes + 1] = p[1]
      changes[#changes + 1] = int(p[2])
    end
  end
  -- The config these fields leave, checked before anything is written.
  local after = {}
  for f, v in pairs(cfg) do after[f] = v end
  if not hmc_stored then after.half_open_max_calls = nil end
  for i = 1, #changes, 2 do after[changes[i]] = tonumber(changes[i + 1]) end
  after.half_open_max_calls = after.half_open_max_calls or after.success_threshold
  local why = conflict(after)
  if why then return redis.error_reply('BADARGS ' .. op .. ': ' .. why) end
  load()
  if #changes == 0 then
    follow_config()
    repair()
    save() -- the state key exists from here on
    return {0, 0}
  end
  if config_not_hash then redis.call('DEL', K_CONFIG) end
  redis.call('HSET', K_CONFIG, unpack(changes))
  local effective = {} -- what differs from the values in force (defaults included)
  for i = 1, #changes, 2 do
    local f, n = changes[i], tonumber(changes[i + 1])
    if cfg[f] ~= n then effective[#effective + 1] = f .. ' ' .. changes[i + 1] end
    cfg[f] = n
    if f == 'half_open_max_calls' then hmc_stored = true end
  end
  if not hmc_stored then cfg.half_open_max_calls = cfg.success_threshold end
  follow_config()
  repair()
  save()
  if #effective > 0 then history('config_changed', '', actor, '', table.concat(effective, ' ')) end
  announce() -- a new recovery timeout moves workers' local deadlines
  return {#changes / 2, overwritten}
end

local function allow()
  load_state(allow_read) -- allow_closed read them already
  if (stored_state == 'closed' or stored_state == nil) and m.mode == 'normal' then
    if stored_state == nil then redis.call('SET', K_STATE, 'closed') end
    return {1, 'closed', m.generation, 'normal', 0, ''}
  end
  if m.mode == 'disabled' and stored_state == state then
    return {1, state, m.generation, 'disabled', 0, ''}
  end
  load_failures()
  local err = prepare(true)
  if err then return err end
  if m.mode == 'disabled' or (m.mode == 'normal' and state == 'closed') then
    save()
    return {1, state, m.generation, m.mode, 0, ''}
  end
  if m.mode == 'normal' and state == 'open' and now() >= open_until() then
    transition('half_opened', 'half_open', '')
  end
  if m.mode == 'normal' and state == 'half_open' then
    redis.call('ZREMRANGEBYSCORE', K_PROBES, '-inf', int(now()))
    if redis.call('ZCARD', K_PROBES) < cfg.half_open_max_calls then
      put('lease_seq', m.lease_seq + 1)
      local lease = int(m.lease_seq)
      redis.call('ZADD', K_PROBES, int(now() + cfg.request_timeout_ms), lease)
      save()
      return {1, state, m.generation, m.mode, 0, lease}
    end
  end
  put('outage_refused', m.outage_refused + 1)
  put('total_refused', m.total_refused + 1)
  save()
  return {0, state, m.generation, m.mode, retry_after(), ''}
end

-- The rule texts of an opening (docs/protocol.md, "Trip rules").
local function retry_text(ra)
  local t = 'retry-after ' .. dur(ra) .. ' from upstream'
  if ra > cfg.max_retry_after_ms then t = t .. ', capped at ' .. dur(cfg.max_retry_after_ms) end
  return t
end
local function window_text(w, rule)
  local c, over = w.sum[1], 'the last ' .. int(cfg.window_calls) .. ' calls'
  if cfg.window_ms > 0 then over = dur(cfg.window_ms) end
  if rule == 'failure' then
    return 'failure rate ' .. int(math.floor(w.sum[2] * 100 / c)) .. '% >= ' .. int(cfg.failure_rate_threshold) ..
      '% over ' .. over .. ', ' .. int(c) .. ' calls'
  end
  return 'slow calls ' .. int(math.floor(w.sum[3] * 100 / c)) .. '% >= ' .. int(cfg.slow_call_rate_threshold) ..
    '% (' .. dur(cfg.slow_call_ms) .. ' or slower) over ' .. over .. ', ' .. int(c) .. ' calls'
end
-- A retry-after the config honours, capped: its deadline from now, or nil.
local function retry_until(ra)
  if ra > 0 and cfg.max_retry_after_ms > 0 then return now() + math.min(ra, cfg.max_retry_after_ms) end
  return nil
end

-- A current outcome in closed: counted in the window, and the rules that
-- may open the breaker checked (in normal mode), whichever trips first.
local function closed_outcome(outcome, text, duration, ra)
  local w = load_window()
  if w then WL.add(w, outcome == 'f', duration) end
  if m.mode ~= 'normal' then return end
  local o
  local deadline = outcome == 'f' and retry_until(ra)
  if deadline then
    o = {err = text, detail = retry_text(ra), deadline = deadline}
    o.hist = o.detail
  elseif outcome == 'f' and failures >= cfg.failure_threshold then
    o = {err = text, detail = int(failures) .. ' consecutive failures', hist = ''} -- the default rule: history leaves it implied
  elseif w and WL.trips(w) then
    local rule = WL.trips(w)
    if outcome ~= 'f' and rule == 'failure' then
      text = m.last_failure_error or redis.call('HGET', K_METRICS, 'last_failure_error') or ''
    end
    o = {err = text, detail = window_text(w, rule)}
    o.hist = o.detail
  end
  if o then transition('opened', 'open', '', o) end
end

local function record()
  local refused, has_failure, err = record_args()
  if err then return err end
  load()
  -- Successes in closed without a window neither need the config nor
  -- write more than their total.
  err = prepare(has_failure or state ~= 'closed' or m.mode ~= 'normal')
  if err then return err end
  local counted, stale, last_failure_time, extended = 0, 0, nil, false
  for i = 3, #ARGV, 6 do
    local outcome, og, lease, text = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
    local duration, ra = ARGV[i + 4], tonumber(ARGV[i + 5]) or 0
    -- An outcome acts on the state only if it was admitted in this generation
    -- and, in half-open, holds a live probe lease.
    local current = og == m.generation
    if current and state == 'half_open' then
      local expiry = lease ~= '' and tonumber(redis.call('ZSCORE', K_PROBES, lease))
      current = expiry and expiry > now() or false
      if lease ~= '' then redis.call('ZREM', K_PROBES, lease) end
    elseif current and state == 'open' then
      current = false
    end
    if outcome == 's' then
      put('total_successes', m.total_successes + 1)
    elseif outcome == 'f' then
      put('total_failures', m.total_failures + 1)
      put('last_failure_error', text)
      last_failure_time = now()
    end
    if outcome ~= 'r' then
      if current then counted = counted + 1 else stale = stale + 1 end
    end
    if current and outcome == 's' then
      failures = 0
      if state == 'half_open' then
        put('half_open_successes', m.half_open_successes + 1)
        if m.half_open_successes >= cfg.success_threshold then transition('closed', 'closed', '') end
      else
        closed_outcome(outcome, text, duration, ra)
      end
    elseif current and outcome == 'f' then
      failures = failures + 1
      if state == 'half_open' then
        -- A failed probe round: the recovery timeout in force grows (backoff).
        local cap = math.max(cfg.max_recovery_timeout_ms, cfg.recovery_timeout_ms)
        if cfg.recovery_backoff > 100 and recovery_in_force() < cap then put('failed_rounds', m.failed_rounds + 1) end
        local o = {err = text, detail = 'probe failed', hist = '', deadline = retry_until(ra)}
        if o.deadline then
          o.detail = 'probe failed; ' .. retry_text(ra)
          o.hist = o.detail
        end
        transition('opened', 'open', '', o)
      else
        closed_outcome(outcome, text, duration, ra)
      end
    elseif outcome == 'f' and state == 'open' and m.mode == 'normal' then
      -- Any failure while open (all are stale) may carry the upstream's
      -- retry-after: the breaker stays open until at least then.
      local deadline = retry_until(ra)
      if deadline and deadline > m.retry_until and deadline > open_until() then
        put('retry_until', deadline)
        extended = true
      end
    end
  end
  if state ~= 'closed' and refused > 0 then put('outage_refused', m.outage_refused + refused) end
  if refused > 0 then put('total_refused', m.total_refused + refused) end
  save()
  if last_failure_time then redis.call('SET', K_LAST_FAILURE, int(last_failure_time)) end
  if extended then announce() end
  local retry = 0
  if cfg then retry = retry_after() elseif m.mode == 'forced_open' then retry = -1 end
  return {state, m.generation, m.mode, retry, counted, stale}
end

local function tally()
  local fields, add_ = {'total_successes', 'total_failures', 'total_refused'}, {}
  for i, name in ipairs({'SUCCESSES', 'FAILURES', 'REFUSED'}) do
    add_[i] = decimal(ARGV[i + 1], 0, MAX_COUNT)
    if add_[i] == nil then return badargs('tally ' .. name, ARGV[i + 1], 0, MAX_COUNT) end
  end
  local t = read('HMGET', K_METRICS, unpack(fields)) or {}
  local hset, out = {}, {}
  for i, f in ipairs(fields) do
    out[i] = counter(t[i]) + add_[i]
    if add_[i] > 0 then hset[#hset + 1], hset[#hset + 2] = f, int(out[i]) end
  end
  if #hset > 0 then redis.call('HSET', K_METRICS, unpack(hset)) end
  redis.call('SET', K_STATE, 'closed', 'NX')
  return out
end

local ACTIONS = {
  reset = function(actor)
    put('mode', 'normal')
    failures = 0
    transition('reset', 'closed', actor)
  end,
  force_open = function(actor)
    put('mode', 'forced_open')
    transition('forced_open', 'open', actor)
  end,
  disable = function(actor)
    put('mode', 'disabled')
    transition('disabled', 'closed', actor)
  end,
  release = function(actor)
    if m.mode == 'forced_open' then
      put('mode', 'normal')
      transition('released', 'half_open', actor)
    elseif m.mode == 'disabled' then
      put('mode', 'normal')
      failures = 0
      transition('released', 'closed', actor)
    end
  end,
}

local function control()
  local action = ACTIONS[ARGV[2] or '']
  if not action then
    return redis.error_reply('BADARGS control takes reset, force_open, disable or release, not "' ..
      tostring(ARGV[2]) .. '"')
  end
  load()
  local err = prepare(true)
  if err then return err end
  action(ARGV[3] or '')
  save()
  return {state, m.generation, m.mode, retry_after()}
end

local function configure()
  local fields, err = config_args('configure')
  if err then return err end
  load_config()
  return store_config('configure', ARGV[2] or '', fields)
end

local function seed()
  local fields, err = config_args('seed')
  if err then return err end
  if redis.call('EXISTS', K_CONFIG) == 1 then
    redis.call('SET', K_STATE, 'closed', 'NX')
    return {0, 0}
  end
  load_config()
  return store_config('seed', ARGV[2] or '', fields)
end

local OPS = {allow = allow, record = record, tally = tally, control = control,
  configure = configure, seed = seed}
local op = OPS[ARGV[1] or '']
if not op then
  return redis.error_reply('BADARGS unknown operation "' .. tostring(ARGV[1]) ..
    '": want allow, record, tally, control, configure or seed')
end
return op()
