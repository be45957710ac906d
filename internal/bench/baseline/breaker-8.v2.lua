--[[
breaker-8.lua: the whole breakerbox state machine. Every transition of a
breaker happens in this file, atomically, on Redis's clock. Reads that
change nothing are in status-8.lua.

KEYS (exactly these, in this order, for one breaker NAME; see docs/protocol.md)
  KEYS[1] circuit_breaker:{NAME}:state              string: closed | open | half_open
  KEYS[2] circuit_breaker:{NAME}:failures           string: consecutive failures (absent: 0)
  KEYS[3] circuit_breaker:{NAME}:last_failure_time  string: unix ms of the last failure
  KEYS[4] circuit_breaker:{NAME}:metrics            hash: generation, transitions, mode, totals, ... (absent field: 0)
  KEYS[5] circuit_breaker:{NAME}:history            list: last 100 events, compact JSON, newest first
  KEYS[6] circuit_breaker:{NAME}:config             hash: thresholds and timeouts
  KEYS[7] circuit_breaker:{NAME}:probes             zset: half-open probe leases -> expiry ms
  KEYS[8] circuit_breaker:{NAME}:events             stream: one entry per transition (the alerts' outbox)

ARGV[1] is the operation:
  allow                                   admit one call or refuse it
  record REFUSED [OUTCOME GEN LEASE ERROR DURATION_MS RETRY_AFTER_MS]...
                                          apply outcomes in order; OUTCOME is
                                          s (success), f (failure) or r (release
                                          a probe lease without counting);
                                          DURATION_MS and RETRY_AFTER_MS are empty
                                          or integers (checked, not used yet);
                                          REFUSED adds calls refused by a worker
  tally SUCCESSES FAILURES REFUSED        add to the lifetime totals only
  control ACTION ACTOR                    ACTION: reset | force_open | disable | release
  configure ACTOR [FIELD VALUE]...        store config fields (overwrites)
  seed ACTOR [FIELD VALUE]...             store them only if no config is stored

Every integer argument and stored field is decimal digits (no sign, no
leading zero) within BOUNDS below.

Reply (integers and strings only)
  allow     {admitted 1|0, state, generation, mode, retry_after_ms, lease}
  record    {state, generation, mode, retry_after_ms, counted, stale}
  tally     {total_successes, total_failures, total_refused}
  control   {state, generation, mode, retry_after_ms}
  configure {written, overwritten}   fields written; of those, fields that held another value
  seed      {written, overwritten}   written is 0 when a config was stored already

Errors
  BADKEYS    not the 8 keys of one breaker, in order (nothing is read)
  BADARGS    unknown operation or action, malformed argument (nothing is read)
  BADCONFIG  a stored config value is not valid (operations that need the config)

Events: every change of state or mode sets the generation to
max(generation + 1, now_ms) and writes exactly one entry to KEYS[8] (XADD
MAXLEN 100), one compact JSON entry to KEYS[5] (capped at 100) and
PUBLISHes "STATE GENERATION MODE RETRY_AFTER_MS" on the channel
circuit_breaker:{NAME}:changed. Event names: opened, half_opened, closed,
reset, forced_open, disabled, released, repaired. A configure or seed that
stores something PUBLISHes too, and adds a config_changed history entry if
a value in force changed; neither makes a generation or stream entry.
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
local function failed(r) return type(r) == 'table' and r.err ~= nil end
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

-- The metrics fields an operation reads (absent: 0; mode absent: normal).
local M_FIELDS = {'generation', 'mode', 'opened_at', 'half_open_successes', 'outage_started_at',
  'outage_refused', 'lease_seq', 'total_successes', 'total_failures', 'total_refused', 'transitions'}

-- The common cases first, from the few fields they need: an allow of a
-- closed breaker, and a record of successes in closed. Each returns nil
-- when its case is not the common one; the full operations below decide.
local allow_read -- what allow_closed read, for allow when it answers instead
local function allow_closed()
  local st = redis.pcall('GET', K_STATE)
  local mh = redis.pcall('HMGET', K_METRICS, unpack(M_FIELDS))
  if failed(st) or failed(mh) then return nil end
  if (st ~= 'closed' and st ~= false) or (mh[2] and mh[2] ~= 'normal') then
    allow_read = {st, mh}
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
  local mh = redis.pcall('HMGET', K_METRICS, 'generation', 'mode', 'total_successes', 'total_refused')
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
  local hset = {}
  if successes > 0 then hset[1], hset[2] = 'total_successes', int(counter(mh[3]) + successes) end
  if refused > 0 then hset[#hset + 1], hset[#hset + 2] = 'total_refused', int(counter(mh[4]) + refused) end
  if #hset > 0 then redis.call('HSET', K_METRICS, unpack(hset)) end
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

-- The config's bounds {min, max, default} (status-8.lua and the Go Config
-- agree; tests check).
local BOUNDS = {
  failure_threshold   = {1, 1000000, 3},
  success_threshold   = {1, 1000000, 2},
  half_open_max_calls = {1, 1000000, nil}, -- default: success_threshold
  recovery_timeout_ms = {1, 2592000000, 30000},
  request_timeout_ms  = {1, 2592000000, 45000},
}
local HISTORY_MAX, STREAM_MAX = 100, 100

-- Redis's clock, read once and only when an operation needs it.
local now_ms
local function now()
  if not now_ms then
    local t = redis.call('TIME')
    now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now_ms
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

local function set_metrics(values)
  for i, f in ipairs(M_FIELDS) do
    raw[f] = values[i] or nil
    m[f] = counter(values[i])
  end
  local mode = values[2]
  if mode ~= 'forced_open' and mode ~= 'disabled' then mode = 'normal' end
  m.mode = mode
end

local function load_state(pre)
  if pre then
    stored_state = pre[1] or nil
  else
    stored_state = read('GET', K_STATE)
  end
  state = stored_state
  if state ~= 'closed' and state ~= 'open' and state ~= 'half_open' then state = 'closed' end
  set_metrics((pre and pre[2]) or read('HMGET', K_METRICS, unpack(M_FIELDS)) or {})
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

local function put(field, value)
  m[field] = value
  dirty[field] = true
end

-- Write what changed: metrics fields (default values are deleted, not
-- stored), the failures count (absent when 0), and the state key, which
-- exists once a breaker is used so that SCAN finds it.
local function save()
  local hset, hdel = {}, {}
  for _, f in ipairs(M_FIELDS) do
    if dirty[f] then
      local v = m[f]
      if v == 0 or v == 'normal' then
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
end
-- The config in force, or an error reply when a stored value is bad.
local function config()
  if not cfg then load_config() end
  if bad_config then return nil, redis.error_reply(bad_config) end
  return cfg
end

-- One compact history entry: fields that are empty, or that the event name
-- or the previous entry already says, are left out (docs/protocol.md).
local IMPLIED_TO = {opened = 'open', half_opened = 'half_open', closed = 'closed', reset = 'closed',
  forced_open = 'open', disabled = 'closed', repaired = 'closed'}
local function history(event, extra, actor, err, detail)
  local entry = '{"ts":' .. int(now()) .. ',"event":"' .. event .. '","generation":' .. int(m.generation) .. extra
  if actor ~= '' then entry = entry .. ',"actor":' .. cjson.encode(actor) end
  if err ~= '' then entry = entry .. ',"error":' .. cjson.encode(err) end
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
  if state == 'open' then return math.max(0, m.opened_at + cfg.recovery_timeout_ms - now()) end
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
-- (every caller checked it). err is the failure that opened the breaker.
local function transition(event, to, actor, err)
  local from, t = state, now()
  if from == 'closed' and to == 'open' then
    put('outage_started_at', t)
    put('outage_refused', 0)
  end
  if to == 'open' then put('opened_at', t) end
  if to == 'closed' then failures = 0 end
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
  local fields = {'event', event, 'from', from, 'to', to, 'mode', m.mode, 'generation', int(m.generation),
    'time_ms', int(t), 'failures', int(failures), 'failure_threshold', int(cfg.failure_threshold),
    'recovery_timeout_ms', int(cfg.recovery_timeout_ms), 'last_error', err,
    'outage_ms', int(in_outage and t - m.outage_started_at or 0),
    'refused', int(in_outage and m.outage_refused or 0), 'actor', actor, 'transitions', int(m.transitions)}
  if failed(redis.pcall('XADD', K_EVENTS, 'MAXLEN', STREAM_MAX, '*', unpack(fields))) then
    redis.call('DEL', K_EVENTS)
    redis.call('XADD', K_EVENTS, 'MAXLEN', STREAM_MAX, '*', unpack(fields))
  end
  local extra = ''
  if event == 'repaired' then extra = ',"from":' .. cjson.encode(from) end
  if IMPLIED_TO[event] ~= to then extra = extra .. ',"to":"' .. to .. '"' end
  history(event, extra, actor, err, '')
  announce()
end

-- A state key holding something other than a state is repaired to closed.
local function repair()
  if stored_state and stored_state ~= state then
    state = stored_state
    transition('repaired', 'closed', 'breakerbox', '')
  end
end

-- After load: checks the config when need_config says the operation uses
-- it (a repair of the state key, a transition, always does), then repairs.
-- Returns an error reply or nil.
local function prepare(need_config)
  if need_config or (stored_state and stored_state ~= state) then
    local _, err = config()
    if err then return err end
  end
  repair()
end

-- Checks FIELD VALUE pairs from ARGV[3] on; returns them or an error reply.
local function config_args(op)
  local pairs_ = {}
  for i = 3, #ARGV, 2 do
    local b = BOUNDS[ARGV[i]]
    local n = b and decimal(ARGV[i + 1], b[1], b[2])
    if not n then
      local want = b and ('an integer ' .. int(b[1]) .. '..' .. int(b[2])) or 'a known field'
      return nil, redis.error_reply('BADARGS ' .. op .. ' field "' .. tostring(ARGV[i]) .. '" = "' ..
        tostring(ARGV[i + 1]) .. '": want ' .. want)
    end
    pairs_[#pairs_ + 1] = {ARGV[i], n}
  end
  return pairs_
end

-- Stores config fields; returns {written, overwritten}. The caller loaded
-- the config (stored_config).
local function store_config(actor, fields)
  local changes, overwritten = {}, 0
  for _, p in ipairs(fields) do
    local stored = stored_config[p[1]]
    if stored ~= int(p[2]) then
      if stored then overwritten = overwritten + 1 end
      changes[#changes + 1] = p[1]
      changes[#changes + 1] = int(p[2])
    end
  end
  load()
  if #changes == 0 then
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
  if m.mode == 'normal' and state == 'open' and now() >= m.opened_at + cfg.recovery_timeout_ms then
    transition('half_opened', 'half_open', '', '')
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

local function record()
  local refused, has_failure, err = record_args()
  if err then return err end
  load()
  -- Successes in closed neither need the config nor write more than their total.
  err = prepare(has_failure or state ~= 'closed' or m.mode ~= 'normal')
  if err then return err end
  local counted, stale, last_failure_time = 0, 0, nil
  for i = 3, #ARGV, 6 do
    local outcome, og, lease, text = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
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
        if m.half_open_successes >= cfg.success_threshold then transition('closed', 'closed', '', '') end
      end
    elseif current and outcome == 'f' then
      failures = failures + 1
      if state == 'half_open' or (m.mode == 'normal' and failures >= cfg.failure_threshold) then
        transition('opened', 'open', '', text)
      end
    end
  end
  if state ~= 'closed' and refused > 0 then put('outage_refused', m.outage_refused + refused) end
  if refused > 0 then put('total_refused', m.total_refused + refused) end
  save()
  if last_failure_time then redis.call('SET', K_LAST_FAILURE, int(last_failure_time)) end
  local retry = 0
  if cfg then retry = retry_after() elseif m.mode == 'forced_open' then retry = -1 end
  return {state, m.generation, m.mode, retry, counted, stale}
end

local function tally()
  local fields, add = {'total_successes', 'total_failures', 'total_refused'}, {}
  for i, name in ipairs({'SUCCESSES', 'FAILURES', 'REFUSED'}) do
    add[i] = decimal(ARGV[i + 1], 0, MAX_COUNT)
    if add[i] == nil then return badargs('tally ' .. name, ARGV[i + 1], 0, MAX_COUNT) end
  end
  local t = read('HMGET', K_METRICS, unpack(fields)) or {}
  local hset, out = {}, {}
  for i, f in ipairs(fields) do
    out[i] = counter(t[i]) + add[i]
    if add[i] > 0 then hset[#hset + 1], hset[#hset + 2] = f, int(out[i]) end
  end
  if #hset > 0 then redis.call('HSET', K_METRICS, unpack(hset)) end
  redis.call('SET', K_STATE, 'closed', 'NX')
  return out
end

local ACTIONS = {
  reset = function(actor)
    put('mode', 'normal')
    failures = 0
    transition('reset', 'closed', actor, '')
  end,
  force_open = function(actor)
    put('mode', 'forced_open')
    transition('forced_open', 'open', actor, '')
  end,
  disable = function(actor)
    put('mode', 'disabled')
    transition('disabled', 'closed', actor, '')
  end,
  release = function(actor)
    if m.mode == 'forced_open' then
      put('mode', 'normal')
      transition('released', 'half_open', actor, '')
    elseif m.mode == 'disabled' then
      put('mode', 'normal')
      failures = 0
      transition('released', 'closed', actor, '')
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
  return store_config(ARGV[2] or '', fields)
end

local function seed()
  local fields, err = config_args('seed')
  if err then return err end
  if redis.call('EXISTS', K_CONFIG) == 1 then
    redis.call('SET', K_STATE, 'closed', 'NX')
    return {0, 0}
  end
  load_config()
  return store_config(ARGV[2] or '', fields)
end

local OPS = {allow = allow, record = record, tally = tally, control = control,
  configure = configure, seed = seed}
local op = OPS[ARGV[1] or '']
if not op then
  return redis.error_reply('BADARGS unknown operation "' .. tostring(ARGV[1]) ..
    '": want allow, record, tally, control, configure or seed')
end
return op()
