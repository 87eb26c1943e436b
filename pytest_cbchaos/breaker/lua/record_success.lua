-- S1-S4. ARGV[3] = expected state ('' = none), ARGV[4] = strict ('1'/'0').
local expected = ARGV[3]
local e = find_op(R)
if e then return dup_reply(R, CORRUPT, e) end
local prev = R.state
if expected ~= '' and expected ~= prev then return noop(R, CORRUPT, 'expected_mismatch') end
if prev == 'closed' then
  if R.failure_count == 0 then return noop(R, CORRUPT, '') end
  R.failure_count = 0
  return applied(R, CORRUPT, prev, '', '', false)
end
if prev == 'open' then return noop(R, CORRUPT, 'guard_open') end
if ARGV[4] == '1' then return noop(R, CORRUPT, 'stale_token') end
R.state = 'closed'; R.failure_count = 0; clear(R)
return applied(R, CORRUPT, prev, '', '', false)
