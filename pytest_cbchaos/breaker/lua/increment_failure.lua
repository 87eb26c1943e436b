-- massgen compat: count + 1, no transition.
R.failure_count = inc(R.failure_count)
write(R)
return reply(R, CORRUPT, R.state, R.state, true, '', '', false, false, tostring(R.failure_count))
