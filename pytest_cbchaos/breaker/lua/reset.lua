-- X2: defaults, clear probe; generation and recent_ops kept; always writes.
local e = find_op(R)
if e then return dup_reply(R, CORRUPT, e) end
local prev = R.state
R.state = 'closed'; R.failure_count = 0; R.last_failure_time = 0.0; R.open_until = 0.0
clear(R)
return applied(R, CORRUPT, prev, '', '', false)
