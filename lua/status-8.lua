#!lua flags=no-writes
--[[
status-8.lua: a read-only snapshot of one breaker. It never writes, repairs
or deletes (Redis 7 runs it with EVALSHA_RO, on replicas too); where
breaker-8.lua would repair something, it reads the value as breaker-8.lua
would and says what is wrong in the field corrupt.

KEYS (exactly these, in this order, for one breaker NAME; see docs/protocol.md)
  KEYS[1] circuit_breaker:{NAME}:state              string: closed | open | half_open
  KEYS[2] circuit_breaker:{NAME}:failures           string: consecutive failures (absent: 0)
  KEYS[3] circuit_breaker:{NAME}:last_failure_time  string: unix ms of the last failure
  KEYS[4] circuit_breaker:{NAME}:metrics            hash: generation, mode, totals, ...
  KEYS[5] circuit_breaker:{NAME}:history            list: last 100 events, compact JSON, newest first
  KEYS[6] circuit_breaker:{NAME}:config             hash: thresholds and timeouts
  KEYS[7] circuit_breaker:{NAME}:probes             zset: half-open probe leases -> expiry ms
  KEYS[8] circuit_breaker:{NAME}:events             stream: one entry per transition

ARGV[1] is the operation:
  status                                  read-only snapshot

Reply (integers and strings only)
  status    {field, value, field, value, ...}

Errors
  BADKEYS    not the 8 keys of one breaker, in order (nothing is read)
  BADARGS    unknown operation
  BADCONFIG  a stored config value is not valid
Any other error of a command the script runs (an ACL refusal, OOM) ends the
script with Redis's own error; only a key of the wrong type is corruption.

Events: none. Event names: none.
]]

local SUFFIXES = {'state', 'failures', 'last_failure_time', 'metrics', 'history', 'config', 'probes', 'events'}
if #KEYS ~= 8 then
  return redis.error_reply('BADKEYS status-8.lua takes the 8 keys of one breaker, got ' .. #KEYS)
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
if ARGV[1] ~= 'status' then
  return redis.error_reply('BADARGS unknown operation "' .. tostring(ARGV[1]) .. '": want status')
end

-- The same bounds as breaker-8.lua (a test checks that the tables agree).
local MAX = 9007199254740991 -- 2^53 - 1: every integer up to it is exact
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
-- The config fields in the order of the reply.
local CONFIG_FIELDS = {'failure_threshold', 'success_threshold', 'half_open_max_calls', 'recovery_timeout_ms',
  'request_timeout_ms', 'window_ms', 'window_calls', 'window_buckets', 'failure_rate_threshold', 'minimum_calls',
  'slow_call_ms', 'slow_call_rate_threshold', 'max_retry_after_ms', 'recovery_backoff', 'max_recovery_timeout_ms'}

local function decimal(v, lo, hi)
  if type(v) ~= 'string' or #v > 16 or not (v == '0' or string.find(v, '^[1-9]%d*$')) then return nil end
  local n = tonumber(v)
  if n < lo or n > hi then return nil end
  return n
end
-- True when a redis.pcall on one of this breaker's keys answered WRONGTYPE:
-- the key is corrupt. Any other error (a command the caller's ACL refuses,
-- OOM, a replica refusing writes) is not corruption: it ends the script
-- with Redis's own error, before the key is touched.
local function failed(r)
  if type(r) ~= 'table' or r.err == nil then return false end
  if string.find(r.err, '^WRONGTYPE ') then return true end
  error(r)
end

local corrupt = {}
local function note(what) corrupt[#corrupt + 1] = what end
-- A read of a key of the wrong type reads as absent and is noted.
local function read(cmd, key, ...)
  local r = redis.pcall(cmd, key, ...)
  if failed(r) then
    note(string.sub(key, #PREFIX + 1) .. ' has the wrong type')
    return nil
  end
  return r
end
-- A stored counter that is not decimal digits reads as 0 and is noted.
local function counter(what, v)
  if v == nil or v == false then return 0 end
  local n = decimal(v, 0, MAX)
  if n == nil then
    note(what .. ' is ' .. string.format('%q', v))
    return 0
  end
  return n
end

-- Config: defaults overridden by the stored hash, every field checked.
local cfg = {}
for f, b in pairs(BOUNDS) do cfg[f] = b[3] end
local flat = redis.pcall('HGETALL', K_CONFIG)
if failed(flat) then return redis.error_reply('BADCONFIG ' .. K_CONFIG .. ' is not a hash') end
for i = 1, #flat, 2 do
  local b = BOUNDS[flat[i]]
  if b then
    local n = decimal(flat[i + 1], b[1], b[2])
    if n == nil then
      return redis.error_reply('BADCONFIG ' .. flat[i] .. ' is "' .. flat[i + 1] .. '", want an integer ' ..
        string.format('%d..%d', b[1], b[2]))
    end
    cfg[flat[i]] = n
  end
end
cfg.half_open_max_calls = cfg.half_open_max_calls or cfg.success_threshold
-- The same checks across fields as breaker-8.lua's conflict().
if cfg.window_ms > 0 and cfg.window_calls > 0 then
  return redis.error_reply('BADCONFIG window_ms and window_calls are both set: a window is one or the other')
end
if (cfg.failure_rate_threshold > 0 or cfg.slow_call_rate_threshold > 0) and cfg.window_ms == 0 and cfg.window_calls == 0 then
  return redis.error_reply('BADCONFIG failure_rate_threshold and slow_call_rate_threshold need window_ms or window_calls')
end
if cfg.slow_call_rate_threshold > 0 and cfg.slow_call_ms == 0 then
  return redis.error_reply('BADCONFIG slow_call_rate_threshold needs slow_call_ms')
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local stored_state = read('GET', K_STATE)
local state = stored_state
if state ~= 'closed' and state ~= 'open' and state ~= 'half_open' then
  if stored_state then note('state is ' .. string.format('%q', stored_state)) end
  state = 'closed'
end
local failures = counter('failures', read('GET', K_FAILURES))
local last_failure_time = counter('last_failure_time', read('GET', K_LAST_FAILURE))
local mf = {'generation', 'mode', 'opened_at', 'half_open_successes', 'total_successes',
  'total_failures', 'total_refused', 'last_failure_error', 'outage_started_at', 'outage_refused', 'lease_seq',
  'transitions', 'failed_rounds', 'retry_until', 'w_spec', 'w'}
local TEXT = {mode = true, last_failure_error = true, w_spec = true, w = true}
local mv = read('HMGET', K_METRICS, unpack(mf)) or {}
local m = {}
for i, f in ipairs(mf) do
  if not TEXT[f] then m[f] = counter('metrics.' .. f, mv[i]) end
end
local mode = mv[2] or 'normal'
if mode ~= 'normal' and mode ~= 'forced_open' and mode ~= 'disabled' then
  note('metrics.mode is ' .. string.format('%q', mode))
  mode = 'normal'
end
local probes, first_expiry = 0, nil
local z = read('ZRANGE', K_PROBES, 0, 0, 'WITHSCORES')
if z then
  probes = redis.call('ZCARD', K_PROBES)
  first_expiry = tonumber(z[2])
end
for _, k in ipairs({{K_HISTORY, 'list'}, {K_EVENTS, 'stream'}}) do
  local typ = redis.call('TYPE', k[1])['ok']
  if typ ~= 'none' and typ ~= k[2] then note(string.sub(k[1], #PREFIX + 1) .. ' has the wrong type') end
end

-- The recovery timeout in force (breaker-8.lua's recovery_in_force).
local recovery = cfg.recovery_timeout_ms
if cfg.recovery_backoff > 100 then
  local cap = math.max(cfg.max_recovery_timeout_ms, recovery)
  for _ = 1, m.failed_rounds do
    if recovery >= cap then break end
    recovery = math.min(cap, math.max(recovery + 1, math.floor(recovery * cfg.recovery_backoff / 100)))
  end
end

local retry = 0
if mode == 'forced_open' then
  retry = -1
elseif mode == 'disabled' or state == 'closed' then
  retry = 0
elseif state == 'open' then
  retry = math.max(0, math.max(m.opened_at + recovery, m.retry_until) - now)
elseif probes >= cfg.half_open_max_calls then
  retry = math.max(0, (first_expiry or now) - now)
end

-- The window as of now (docs/protocol.md, "The window"), summed from its
-- buckets: those the clock has moved past count no more. A window kept
-- with other buckets than the config asks for counts nothing (breaker-8.lua
-- drops it at its next write).
local function spec(s)
  local kind, size, count = string.match(s or '', '^([tc]) (%d+) (%d+) %d+ %d+ %d+ %d+$')
  return kind and (kind .. ' ' .. size .. ' ' .. count), kind, tonumber(size), tonumber(count)
end
local want = ''
if cfg.window_ms > 0 or cfg.window_calls > 0 then
  local kind, total = 't', cfg.window_ms
  if total == 0 then kind, total = 'c', cfg.window_calls end
  local size = math.ceil(total / cfg.window_buckets)
  want = kind .. ' ' .. string.format('%d %d', size, math.ceil(total / size))
end
local w = {0, 0, 0}
local function triple(what, v)
  if not v then return end
  local c, f, sl = string.match(v, '^(%d+) (%d+) (%d+)$')
  if not c then
    note(what .. ' is ' .. string.format('%q', v))
    return
  end
  w[1], w[2], w[3] = w[1] + tonumber(c), w[2] + tonumber(f), w[3] + tonumber(sl)
end
local have, kind, size, count = spec(mv[15])
if mv[15] and not have then note('metrics.w_spec is ' .. string.format('%q', mv[15])) end
if have and have == want then
  local head, newest = string.match(mv[16] or '', '^(%d+) %d+ %d+ %d+ (%d+ %d+ %d+)$')
  if mv[16] and not head then note('metrics.w is ' .. string.format('%q', mv[16])) end
  head = tonumber(head) or 0
  local n = head
  if kind == 't' then n = math.max(head, math.floor(now / size)) end
  if head > n - count then triple('metrics.w', newest) end
  local names = {}
  for i = 0, count - 1 do names[#names + 1] = 'w' .. i end
  local b = read('HMGET', K_METRICS, unpack(names)) or {}
  for i = 0, count - 1 do
    if i ~= head % count and head - (head - i) % count > n - count then triple('metrics.w' .. i, b[i + 1]) end
  end
end
-- A percentage with one decimal, rounded half up: "62.5".
local function pct(part, whole)
  if whole == 0 then return '0.0' end
  local tenths = math.floor((2000 * part + whole) / (2 * whole))
  return string.format('%d.%d', math.floor(tenths / 10), tenths % 10)
end

local s, f, r = m.total_successes, m.total_failures, m.total_refused
local rate = '100.0'
if s + f > 0 then rate = string.format('%.1f', 100 * s / (s + f)) end
local out = {'state', state, 'mode', mode, 'generation', m.generation, 'transitions', m.transitions,
  'current_failures', failures}
for _, field in ipairs(CONFIG_FIELDS) do
  out[#out + 1], out[#out + 2] = field, cfg[field]
end
local rest = {'total_successes', s, 'total_failures', f,
  'total_refused', r, 'total_requests', s + f + r, 'success_rate', rate,
  'half_open_successes', m.half_open_successes, 'probes', probes,
  'opened_at', m.opened_at, 'retry_after_ms', retry, 'current_recovery_timeout_ms', recovery,
  'retry_until', m.retry_until, 'calls_in_window', w[1], 'failures_in_window', w[2], 'slow_in_window', w[3],
  'failure_rate', pct(w[2], w[1]), 'slow_call_rate', pct(w[3], w[1]),
  'last_failure_time', last_failure_time, 'last_failure_error', mv[8] or '', 'time_ms', now,
  'corrupt', table.concat(corrupt, '; ')}
for _, v in ipairs(rest) do out[#out + 1] = v end
return out
