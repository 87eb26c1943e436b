-- F1-F4. ARGV[3] = failure threshold, ARGV[4] = recovery timeout.
local failure_threshold = tonumber(ARGV[3])
local recovery_timeout = tonumber(ARGV[4])
local e = find_op(R)
if e then return dup_reply(R, CORRUPT, e) end
local prev = R.state
R.failure_count = inc(R.failure_count)
R.last_failure_time = q6(NOW)
if not (prev == 'closed' and R.failure_count < failure_threshold) then
  R.open_until = math.max(R.open_until, q6(NOW + recovery_timeout))
  R.state = 'open'
  clear(R)
end
return applied(R, CORRUPT, prev, '', '', false)
