-- massgen CAS on state (+ expected fields). ARGV[3] = expected state ('' = set_state: unconditional,
-- defaults overlaid), ARGV[4] = n updates, then n field/value pairs (canonical), then m, m pairs.
local expected = ARGV[3]
local n = tonumber(ARGV[4])
local i = 5
local upd = {}
for _ = 1, n do upd[#upd + 1] = {ARGV[i], ARGV[i + 1]}; i = i + 2 end
local m = tonumber(ARGV[i]); i = i + 1
local prev = R.state
if expected ~= '' then
  if R.state ~= expected then return noop(R, CORRUPT, 'expected_mismatch', '0') end
  for _ = 1, m do
    local f, v = ARGV[i], ARGV[i + 1]; i = i + 2
    local cur = R[f]
    local ok
    if type(cur) == 'boolean' then ok = (cur and v == 'True') or (not cur and v == 'False')
    elseif type(cur) == 'number' then ok = (cur == tonumber(v))
    else ok = (cur == v) end
    if not ok then return noop(R, CORRUPT, 'expected_mismatch', '0') end
  end
else
  local gen, ops = R.probe_generation, R.recent_ops
  R = {state = 'closed', failure_count = 0, last_failure_time = 0.0, open_until = 0.0,
    half_open_probe_active = false, probe_token = '', probe_lease_until = 0.0, probe_anchor = 0.0,
    probe_generation = gen, recent_ops = ops}
end
for _, p in ipairs(upd) do
  local f, v = p[1], p[2]
  if f == 'state' then R.state = v
  elseif f == 'failure_count' then R.failure_count = tonumber(v)
  elseif f == 'half_open_probe_active' then R.half_open_probe_active = (v == 'True')
  else R[f] = tonumber(v) end
end
R = normalize(R)
write(R)
return reply(R, CORRUPT, prev, R.state, true, '', '', false, false, '1')
