-- P1-P5. ARGV[3] = token, ARGV[4] = outcome, ARGV[5] = recovery timeout.
local tok, outcome, recovery_timeout = ARGV[3], ARGV[4], tonumber(ARGV[5])
local e = find_op(R)
if e then return dup_reply(R, CORRUPT, e) end
local prev = R.state
if not token_current(R, tok) then
  if prev ~= 'half_open' then return noop(R, CORRUPT, 'not_half_open') end
  return noop(R, CORRUPT, 'stale_token')
end
if outcome == 'success' then
  R.state = 'closed'; R.failure_count = 0
elseif outcome == 'failure' then
  R.state = 'open'; R.failure_count = inc(R.failure_count); R.last_failure_time = q6(NOW)
  R.open_until = math.max(R.open_until, q6(NOW + recovery_timeout))
elseif outcome == 'abort' then
  R.state = 'open'; R.open_until = math.max(R.open_until, q6(NOW + recovery_timeout))
end
clear(R)
return applied(R, CORRUPT, prev, '', '', false)
