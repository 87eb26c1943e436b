-- X1: one atomic max-merge. ARGV[3] = open_for_seconds.
local d = tonumber(ARGV[3])
local e = find_op(R)
if e then return dup_reply(R, CORRUPT, e) end
local prev = R.state
local target = q6(NOW + d)
if prev == 'open' and not (target > R.open_until) then return noop(R, CORRUPT, '') end
R.state = 'open'
R.open_until = math.max(R.open_until, target)
R.last_failure_time = math.max(R.last_failure_time, q6(NOW))
clear(R)
return applied(R, CORRUPT, prev, '', '', false)
