-- Shared prologue (after head.lua): codec, rule N, kernel helpers, TTL and reply. Mirrors record.py / kernel.py.
local STATES = {closed = true, open = true, half_open = true}
local FIELDS = {'state', 'failure_count', 'last_failure_time', 'open_until', 'half_open_probe_active',
  'probe_token', 'probe_lease_until', 'probe_anchor', 'probe_generation', 'recent_ops'}

local function dec_int(s)
  if s == '0' then return 0 end
  if find(s, '^[1-9]%d*$') and #s <= 10 then
    local v = tonumber(s)
    if v <= 2147483647 then return v end
  end
  return nil
end

local function dec_float(s)
  if find(s, '^%d+%.%d+$') or find(s, '^%d+$') or find(s, '^%d+[eE][+-]?%d+$')
      or find(s, '^%d+%.%d+[eE][+-]?%d+$') then
    local v = tonumber(s)
    if v and v == v and v ~= math.huge and v <= 1e11 then return v end
  end
  return nil
end

local function dec_token(s)
  if s == '' then return s end
  local g, h = match(s, '^(%d+):([0-9a-f]+)$')
  if g and #g <= 15 and #h == 32 then return s end
  return nil
end

local function dec_ops(s)
  local out, dropped = {}, false
  for part in string.gmatch(s, '[^ ]+') do
    local o, a, b = match(part, '^([0-9a-f]+)=([a-z_]+)>([a-z_]+)$')
    if o and #o == 32 and STATES[a] and STATES[b] then
      out[#out + 1] = {o, a, b}
    else
      dropped = true
    end
  end
  while #out > 16 do table.remove(out, 1) end
  return out, dropped
end

local function read()
  local r = {state = 'closed', failure_count = 0, last_failure_time = 0.0, open_until = 0.0,
    half_open_probe_active = false, probe_token = '', probe_lease_until = 0.0, probe_anchor = 0.0,
    probe_generation = 0, recent_ops = {}}
  local corrupt = {}
  for i, f in ipairs(FIELDS) do
    local s = RAW[i]
    if s then
      local v
      if f == 'state' then
        if STATES[s] then v = s end
      elseif f == 'failure_count' or f == 'probe_generation' then
        v = dec_int(s)
      elseif f == 'half_open_probe_active' then
        if s == 'True' then v = true elseif s == 'False' then v = false end
      elseif f == 'probe_token' then
        v = dec_token(s)
      elseif f == 'recent_ops' then
        local dropped
        v, dropped = dec_ops(s)
        if dropped then corrupt[#corrupt + 1] = f end
      else
        v = dec_float(s)
      end
      if v == nil then corrupt[#corrupt + 1] = f else r[f] = v end
    end
  end
  return r, corrupt
end

local function normalize(r)
  if r.state == 'half_open' and r.half_open_probe_active and r.probe_anchor == r.open_until then return r end
  r.probe_token = ''; r.probe_lease_until = 0.0; r.probe_anchor = 0.0
  return r
end

local function q6(x) return tonumber(fmt('%.6f', x)) end
local function inc(n) if n < 2147483647 then return n + 1 end return n end

local function clear(r)
  r.half_open_probe_active = false; r.probe_token = ''; r.probe_lease_until = 0.0; r.probe_anchor = 0.0
end

local function token_current(r, tok)
  return r.state == 'half_open' and r.half_open_probe_active and r.probe_token ~= ''
    and r.probe_token == tok and r.probe_anchor == r.open_until
end

local function find_op(r)
  for _, e in ipairs(r.recent_ops) do
    if e[1] == OPID then return e end
  end
  return nil
end

local function push_op(r, prev, new)
  local ops = r.recent_ops
  ops[#ops + 1] = {OPID, prev, new}
  while #ops > 16 do table.remove(ops, 1) end
end

local function claim(r, lease)
  r.probe_generation = r.probe_generation + 1
  r.state = 'half_open'; r.half_open_probe_active = true
  r.probe_token = fmt('%d', r.probe_generation) .. ':' .. OPID
  r.probe_lease_until = q6(NOW + lease)
  r.probe_anchor = r.open_until
end

local function enc_ops(ops)
  local parts = {}
  for i, e in ipairs(ops) do parts[i] = e[1] .. '=' .. e[2] .. '>' .. e[3] end
  return concat(parts, ' ')
end

local function encode(r)
  local ff = '%.6f'
  local b = 'False'
  if r.half_open_probe_active then b = 'True' end
  return {'state', r.state, 'failure_count', fmt('%d', r.failure_count),
    'last_failure_time', fmt(ff, r.last_failure_time), 'open_until', fmt(ff, r.open_until),
    'half_open_probe_active', b, 'probe_token', r.probe_token,
    'probe_lease_until', fmt(ff, r.probe_lease_until), 'probe_anchor', fmt(ff, r.probe_anchor),
    'probe_generation', fmt('%d', r.probe_generation), 'recent_ops', enc_ops(r.recent_ops)}
end

local function ttl_for(r)
  local t
  if r.state == 'open' then
    t = math.max(TTL, math.ceil(r.open_until - NOW) + 60)
  elseif r.state == 'half_open' and r.half_open_probe_active then
    t = math.max(PTTL, math.ceil(r.probe_lease_until - NOW) + 60)
  else
    t = TTL
  end
  if t < 1 then t = 1 end
  return t
end

local function write(r)
  local enc = encode(r)
  call('HSET', key, unpack(enc))
  call('EXPIRE', key, ttl_for(r))
end

-- Reply: one string, REPLY_FIELDS of redis_store.py joined by '|' (no value can hold one): the record
-- (exact doubles, %.17g; writes use %.6f), then prev, new, applied, now, reason, label, won, duplicate,
-- corrupt (','-joined), value. One bulk string parses in C on the client (docs/breaker-design.md#redis-store).
local function g17(x) if x == 0 then return '0' end return fmt('%.17g', x) end
local function b(x) if x then return '1' end return '0' end

local function reply(r, corrupt, prev, new, applied, reason, label, won, dup, value)
  local act = 'False'
  if r.half_open_probe_active then act = 'True' end
  return concat({r.state, fmt('%d', r.failure_count), g17(r.last_failure_time), g17(r.open_until),
    act, r.probe_token, g17(r.probe_lease_until), g17(r.probe_anchor), fmt('%d', r.probe_generation),
    enc_ops(r.recent_ops), prev, new, b(applied), fmt('%.17g', NOW), reason or '', label or '', b(won),
    b(dup), concat(corrupt, ','), tostring(value or '')}, '|')
end

local function dup_reply(r, corrupt, e)
  return reply(r, corrupt, e[2], e[3], false, 'duplicate', '', false, true)
end

local function applied(r, corrupt, prev, reason, label, won)
  push_op(r, prev, r.state)
  write(r)
  return reply(r, corrupt, prev, r.state, true, reason, label, won, false)
end

local function noop(r, corrupt, reason, value)
  return reply(r, corrupt, r.state, r.state, false, reason, '', false, false, value)
end

local R, CORRUPT = read()
R = normalize(R)
