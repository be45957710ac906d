--[[
breaker-8.lua: the whole breakerbox state machine. Every transition of a
breaker happens in this file, atomically, on Redis's clock.

KEYS (all share the hash tag {NAME}; see docs/protocol.md)
  KEYS[1] circuit_breaker:{NAME}:state              string: closed | open | half_open
  KEYS[2] circuit_breaker:{NAME}:failures           string: consecutive failures
  KEYS[3] circuit_breaker:{NAME}:last_failure_time  string: unix ms of the last failure
  KEYS[4] circuit_breaker:{NAME}:metrics            hash: generation, mode, totals, ...
  KEYS[5] circuit_breaker:{NAME}:history            list: last 100 events, JSON, newest first
  KEYS[6] circuit_breaker:{NAME}:config             hash: thresholds and timeouts
  KEYS[7] circuit_breaker:{NAME}:probes             zset: half-open probe leases -> expiry ms
  KEYS[8] circuit_breaker:{NAME}:events             stream: one entry per transition

ARGV[1] is the operation:
  allow                                   admit one call or refuse it
  record REFUSED [OUTCOME GEN LEASE ERROR]...
                                          apply outcomes in order; OUTCOME is
                                          s (success), f (failure) or r (release
                                          a probe lease without counting);
                                          REFUSED adds calls refused by a worker
  control ACTION ACTOR                    ACTION: reset | force_open | disable | release
  configure ACTOR [FIELD VALUE]...        store config fields (validated)
  status                                  read-only snapshot

Reply (integers and strings only)
  allow     {admitted 1|0, state, generation, mode, retry_after_ms, lease}
  record    {state, generation, mode, retry_after_ms, counted, stale}
  control   {state, generation, mode, retry_after_ms}
  configure {written, overwritten}   fields written; of those, fields that held another value
  status    {field, value, field, value, ...}

Errors
  BADKEYS    wrong number of keys, or KEYS[1] does not end in ":state"
  BADARGS    unknown operation or action, malformed outcome or config field
  BADCONFIG  the stored config hash holds a value that is not valid

Events: every change of state or mode adds 1 to the generation and writes
exactly one entry to KEYS[8] (XADD MAXLEN 100), one JSON entry to KEYS[5]
(capped at 100) and PUBLISHes "STATE GENERATION MODE RETRY_AFTER_MS" on the
channel circuit_breaker:{NAME}:changed. Event names: opened, half_opened,
closed, reset, forced_open, disabled, released, repaired. A configure that
stores something PUBLISHes too, and adds a config_changed history entry if
a value in force changed; neither makes a generation or stream entry.
]]

if #KEYS ~= 8 or string.sub(KEYS[1], -6) ~= ':state' then
  return redis.error_reply('BADKEYS breaker-8.lua takes the 8 keys of one breaker, state first')
end
local K_STATE, K_FAILURES, K_LAST_FAILURE, K_METRICS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_HISTORY, K_CONFIG, K_PROBES, K_EVENTS = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local CHANNEL = string.sub(KEYS[1], 1, -6) .. 'changed'
local HISTORY_MAX, STREAM_MAX = 100, 100

local op = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function int(n) return string.format('%d', n) end

-- A natural number from a stored string, or nil when it is anything else.
local function natural(v)
  local n = tonumber(v)
  if n == nil or n < 0 or n ~= math.floor(n) or n > 1e15 then return nil end
  return n
end

-- True when redis.pcall returned an error reply.
local function failed(r) return type(r) == 'table' and r.err ~= nil end

-- Arguments are checked before anything is read, repaired or written, so
-- that bad input changes nothing.
local FIELDS = {
  failure_threshold = true, success_threshold = true, half_open_max_calls = true,
  recovery_timeout_ms = true, request_timeout_ms = true,
}
local ACTIONS = {reset = true, force_open = true, disable = true, release = true}
if op == 'record' then
  if natural(ARGV[2]) == nil or (#ARGV - 2) % 4 ~= 0 then
    return redis.error_reply('BADARGS record takes REFUSED then groups of OUTCOME GEN LEASE ERROR')
  end
  for i = 3, #ARGV, 4 do
    local outcome = ARGV[i]
    if (outcome ~= 's' and outcome ~= 'f' and outcome ~= 'r') or natural(ARGV[i + 1]) == nil then
      return redis.error_reply('BADARGS outcome ' .. ((i - 3) / 4 + 1) .. ' is "' .. outcome ..
        '" for generation "' .. ARGV[i + 1] .. '", want s|f|r and an integer')
    end
  end
elseif op == 'control' then
  if not ACTIONS[ARGV[2] or ''] then
    return redis.error_reply('BADARGS control takes reset, force_open, disable or release, not "' ..
      tostring(ARGV[2]) .. '"')
  end
elseif op == 'configure' then
  for i = 3, #ARGV, 2 do
    local n = natural(ARGV[i + 1])
    if not FIELDS[ARGV[i]] or n == nil or n < 1 then
      return redis.error_reply('BADARGS config field "' .. tostring(ARGV[i]) .. '" = "' ..
        tostring(ARGV[i + 1]) .. '": want a known field and an integer >= 1')
    end
  end
elseif op ~= 'allow' and op ~= 'status' then
  return redis.error_reply('BADARGS unknown operation "' .. tostring(op) ..
    '": want allow, record, control, configure or status')
end

-- Read a key; a key of the wrong type is corrupt: read it as absent and,
-- unless this is the read-only status operation, delete it.
local function read(...)
  local r = redis.pcall(...)
  if failed(r) then
    if op ~= 'status' then redis.call('DEL', (select(2, ...))) end
    return nil
  end
  return r
end

-- Config: seed defaults, overridden by the stored hash, every field checked.
local cfg = {
  failure_threshold = 3, recovery_timeout_ms = 30000, success_threshold = 2,
  request_timeout_ms = 45000,
}
-- A bad stored value is refused by every operation but configure, which
-- is how an operator repairs it.
local bad_config, config_not_hash, stored_config = nil, false, {}
local raw = redis.pcall('HGETALL', K_CONFIG)
if failed(raw) then
  bad_config, config_not_hash, raw = 'BADCONFIG ' .. K_CONFIG .. ' is not a hash', true, {}
end
for i = 1, #raw, 2 do
  local field, value = raw[i], raw[i + 1]
  stored_config[field] = value
  if FIELDS[field] then
    local n = natural(value)
    if n == nil or n < 1 then
      bad_config = bad_config or ('BADCONFIG ' .. field .. ' is "' .. value .. '", want an integer >= 1')
    else
      cfg[field] = n
    end
  end
end
cfg.half_open_max_calls = cfg.half_open_max_calls or cfg.success_threshold
if bad_config and op ~= 'configure' then return redis.error_reply(bad_config) end

-- Current state, repaired where a key holds something we never write.
local m = read('HMGET', K_METRICS, 'generation', 'mode', 'opened_at', 'half_open_successes',
  'outage_started_at', 'outage_refused', 'last_failure_error', 'total_successes',
  'total_failures', 'total_refused', 'lease_seq') or {}
local gen = natural(m[1]) or 0
local mode = m[2]
if mode ~= 'normal' and mode ~= 'forced_open' and mode ~= 'disabled' then mode = 'normal' end
local opened_at = natural(m[3]) or 0
local ho_successes = natural(m[4]) or 0
local outage_started_at = natural(m[5]) or 0
local outage_refused = natural(m[6]) or 0
local last_error = m[7] or ''
local total_successes = natural(m[8]) or 0
local total_failures = natural(m[9]) or 0
local total_refused = natural(m[10]) or 0
local lease_seq = natural(m[11]) or 0
local stored_state = read('GET', K_STATE)
local state = stored_state
if state ~= 'closed' and state ~= 'open' and state ~= 'half_open' then state = 'closed' end
local failures = natural(read('GET', K_FAILURES)) or 0
-- Probe leases exist only in half-open; check their key's type there.
if state == 'half_open' then read('ZCARD', K_PROBES) end

local function history(event, from, to, actor, err, detail)
  local entry = '{"ts":' .. int(now) .. ',"event":' .. cjson.encode(event) ..
    ',"from":' .. cjson.encode(from) .. ',"to":' .. cjson.encode(to) ..
    ',"generation":' .. int(gen) .. ',"actor":' .. cjson.encode(actor) ..
    ',"error":' .. cjson.encode(err) .. ',"detail":' .. cjson.encode(detail) .. '}'
  if failed(redis.pcall('LPUSH', K_HISTORY, entry)) then
    redis.call('DEL', K_HISTORY)
    redis.call('LPUSH', K_HISTORY, entry)
  end
  redis.call('LTRIM', K_HISTORY, 0, HISTORY_MAX - 1)
end

-- Milliseconds until this breaker may admit a call it refuses now; -1: not on a timer.
local function retry_after()
  if mode == 'forced_open' then return -1 end
  if mode == 'disabled' or state == 'closed' then return 0 end
  if state == 'open' then return math.max(0, opened_at + cfg.recovery_timeout_ms - now) end
  if (read('ZCARD', K_PROBES) or 0) < cfg.half_open_max_calls then return 0 end
  local first = read('ZRANGE', K_PROBES, 0, 0, 'WITHSCORES') or {}
  return math.max(0, (tonumber(first[2]) or now) - now)
end

local function save()
  redis.call('SET', K_STATE, state)
  redis.call('SET', K_FAILURES, int(failures))
  redis.call('HSET', K_METRICS, 'generation', int(gen), 'mode', mode, 'opened_at', int(opened_at),
    'half_open_successes', int(ho_successes), 'outage_started_at', int(outage_started_at),
    'outage_refused', int(outage_refused), 'total_successes', int(total_successes),
    'total_failures', int(total_failures), 'total_refused', int(total_refused),
    'lease_seq', int(lease_seq), 'last_failure_error', last_error)
end

-- Tell subscribed workers what an allow would see now.
local function announce()
  redis.call('PUBLISH', CHANNEL, state .. ' ' .. int(gen) .. ' ' .. mode .. ' ' .. int(retry_after()))
end

-- The one place where a breaker changes state or mode.
local function transition(event, to, actor)
  local from = state
  if from == 'closed' and to == 'open' then
    outage_started_at, outage_refused = now, 0
  end
  if to == 'open' then opened_at = now end
  -- The outage fields describe the time since the breaker left closed.
  local in_outage = from ~= 'closed' and outage_started_at > 0
  -- The error that tripped the breaker goes with the opening only: the
  -- metrics hash keeps the last one, and repeating it costs memory.
  local err = event == 'opened' and last_error or ''
  if to == 'closed' then failures = 0 end
  state, gen, ho_successes = to, gen + 1, 0
  redis.call('DEL', K_PROBES)
  save()
  local fields = {'event', event, 'from', from, 'to', to, 'mode', mode, 'generation', int(gen),
    'time_ms', int(now), 'failures', int(failures), 'failure_threshold', int(cfg.failure_threshold),
    'recovery_timeout_ms', int(cfg.recovery_timeout_ms), 'last_error', err,
    'outage_ms', int(in_outage and now - outage_started_at or 0),
    'refused', int(in_outage and outage_refused or 0), 'actor', actor}
  if failed(redis.pcall('XADD', K_EVENTS, 'MAXLEN', STREAM_MAX, '*', unpack(fields))) then
    redis.call('DEL', K_EVENTS)
    redis.call('XADD', K_EVENTS, 'MAXLEN', STREAM_MAX, '*', unpack(fields))
  end
  history(event, from, to, actor, err, '')
  announce()
end

-- A state key holding something other than a state is repaired to closed.
if stored_state and stored_state ~= state and op ~= 'status' then
  state = stored_state
  transition('repaired', 'closed', 'breakerbox')
end

if op == 'allow' then
  if mode == 'disabled' or (mode == 'normal' and state == 'closed') then
    return {1, state, gen, mode, 0, ''}
  end
  if mode == 'normal' and state == 'open' and now >= opened_at + cfg.recovery_timeout_ms then
    transition('half_opened', 'half_open', '')
  end
  if mode == 'normal' and state == 'half_open' then
    redis.call('ZREMRANGEBYSCORE', K_PROBES, '-inf', int(now))
    if redis.call('ZCARD', K_PROBES) < cfg.half_open_max_calls then
      lease_seq = lease_seq + 1
      local lease = int(gen) .. '-' .. int(lease_seq)
      redis.call('HSET', K_METRICS, 'lease_seq', int(lease_seq))
      redis.call('ZADD', K_PROBES, int(now + cfg.request_timeout_ms), lease)
      return {1, state, gen, mode, 0, lease}
    end
  end
  outage_refused, total_refused = outage_refused + 1, total_refused + 1
  redis.call('HSET', K_METRICS, 'outage_refused', int(outage_refused), 'total_refused', int(total_refused))
  return {0, state, gen, mode, retry_after(), ''}

elseif op == 'record' then
  local refused = natural(ARGV[2])
  local counted, stale = 0, 0
  local last_failure_time = nil
  for i = 3, #ARGV, 4 do
    local outcome, og, lease, err = ARGV[i], natural(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
    -- An outcome acts on the state only if it was admitted in this generation
    -- and, in half-open, holds a live probe lease.
    local current = og == gen
    if current and state == 'half_open' then
      local expiry = lease ~= '' and tonumber(redis.call('ZSCORE', K_PROBES, lease))
      current = expiry and expiry > now or false
      if lease ~= '' then redis.call('ZREM', K_PROBES, lease) end
    elseif current and state == 'open' then
      current = false
    end
    if outcome ~= 'r' then
      if outcome == 's' then
        total_successes = total_successes + 1
      else
        total_failures = total_failures + 1
      end
      if outcome == 'f' then last_error, last_failure_time = err, now end
      if current then counted = counted + 1 else stale = stale + 1 end
    end
    if current and outcome == 's' then
      failures = 0
      if state == 'half_open' then
        ho_successes = ho_successes + 1
        if ho_successes >= cfg.success_threshold then transition('closed', 'closed', '') end
      end
    elseif current and outcome == 'f' then
      failures = failures + 1
      if state == 'half_open' then
        transition('opened', 'open', '')
      elseif mode == 'normal' and failures >= cfg.failure_threshold then
        transition('opened', 'open', '')
      end
    end
  end
  outage_refused = outage_refused + (state ~= 'closed' and refused or 0)
  total_refused = total_refused + refused
  save()
  if last_failure_time then redis.call('SET', K_LAST_FAILURE, int(last_failure_time)) end
  return {state, gen, mode, retry_after(), counted, stale}

elseif op == 'control' then
  local action, actor = ARGV[2], ARGV[3] or ''
  if action == 'reset' then
    mode, failures = 'normal', 0
    transition('reset', 'closed', actor)
  elseif action == 'force_open' then
    mode = 'forced_open'
    transition('forced_open', 'open', actor)
  elseif action == 'disable' then
    mode = 'disabled'
    transition('disabled', 'closed', actor)
  else -- release (the actions were checked above)
    if mode == 'forced_open' then
      mode = 'normal'
      transition('released', 'half_open', actor)
    elseif mode == 'disabled' then
      mode, failures = 'normal', 0
      transition('released', 'closed', actor)
    end
  end
  return {state, gen, mode, retry_after()}

elseif op == 'configure' then
  local actor = ARGV[2] or ''
  local changes, overwritten = {}, 0
  for i = 3, #ARGV, 2 do
    local field, n = ARGV[i], natural(ARGV[i + 1])
    local stored = stored_config[field]
    if stored ~= int(n) then
      if stored then overwritten = overwritten + 1 end
      changes[#changes + 1] = field
      changes[#changes + 1] = int(n)
    end
  end
  if #changes == 0 then return {0, 0} end
  if config_not_hash then redis.call('DEL', K_CONFIG) end
  redis.call('HSET', K_CONFIG, unpack(changes))
  local effective = {} -- what differs from the values in force (defaults included)
  for i = 1, #changes, 2 do
    if cfg[changes[i]] ~= tonumber(changes[i + 1]) then
      effective[#effective + 1] = changes[i] .. ' ' .. changes[i + 1]
    end
    cfg[changes[i]] = tonumber(changes[i + 1])
  end
  if #effective > 0 then
    history('config_changed', state, state, actor, '', table.concat(effective, ' '))
  end
  announce() -- a new recovery timeout moves workers' local deadlines
  return {#changes / 2, overwritten}

elseif op == 'status' then
  local s, f, r = total_successes, total_failures, total_refused
  local rate = '100.0'
  if s + f > 0 then rate = string.format('%.1f', 100 * s / (s + f)) end
  return {'state', state, 'mode', mode, 'generation', gen, 'current_failures', failures,
    'failure_threshold', cfg.failure_threshold, 'success_threshold', cfg.success_threshold,
    'half_open_max_calls', cfg.half_open_max_calls, 'recovery_timeout_ms', cfg.recovery_timeout_ms,
    'request_timeout_ms', cfg.request_timeout_ms, 'total_successes', s, 'total_failures', f,
    'total_refused', r, 'total_requests', s + f + r, 'success_rate', rate,
    'half_open_successes', ho_successes, 'probes', read('ZCARD', K_PROBES) or 0,
    'opened_at', opened_at, 'retry_after_ms', retry_after(),
    'last_failure_time', natural(read('GET', K_LAST_FAILURE)) or 0,
    'last_failure_error', last_error, 'time_ms', now}
end
