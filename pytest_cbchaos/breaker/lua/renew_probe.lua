-- Renew a current token's lease (max-merge). ARGV[3] = token, ARGV[4] = lease seconds. Not in recent_ops.
local tok, lease = ARGV[3], tonumber(ARGV[4])
if not token_current(R, tok) then
  if R.state ~= 'half_open' then return noop(R, CORRUPT, 'not_half_open', '0') end
  return noop(R, CORRUPT, 'stale_token', '0')
end
local l = math.max(R.probe_lease_until, q6(NOW + lease))
if l == R.probe_lease_until then return noop(R, CORRUPT, '', '1') end
R.probe_lease_until = l
write(R)
return reply(R, CORRUPT, R.state, R.state, true, '', '', false, false, '1')
