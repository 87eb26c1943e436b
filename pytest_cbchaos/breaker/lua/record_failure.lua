-- F1-F4. ARGV[6] = failure threshold, ARGV[7] = recovery timeout.
local failure_threshold = tonumber(ARGV[6])
local recovery_timeout = tonumber(ARGV[7])
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
