-- G1-G7. ARGV[3] = lease seconds.
local lease = tonumber(ARGV[3])
local e = find_op(R)
if e then
  if R.probe_token ~= '' and string.sub(R.probe_token, -33) == ':' .. OPID and token_current(R, R.probe_token) then
    local label = 'half_open_probe_claimed'
    if e[2] == 'open' then label = 'open->half_open' end
    return reply(R, CORRUPT, e[2], e[3], false, 'duplicate', label, true, true)
  end
  return dup_reply(R, CORRUPT, e)
end
local prev = R.state
if prev == 'closed' then return noop(R, CORRUPT, '') end
if prev == 'open' then
  if NOW < R.open_until then return noop(R, CORRUPT, 'cooldown') end
  claim(R, lease)
  return applied(R, CORRUPT, prev, '', 'open->half_open', true)
end
if not R.half_open_probe_active then
  claim(R, lease)
  return applied(R, CORRUPT, prev, '', 'half_open_probe_claimed', true)
end
if R.probe_token == '' and R.probe_lease_until == 0.0 then
  R.probe_lease_until = q6(NOW + lease); R.probe_anchor = R.open_until
  return applied(R, CORRUPT, prev, 'legacy_probe_leased', '', false)
end
if NOW < R.probe_lease_until then return noop(R, CORRUPT, 'probe_busy') end
claim(R, lease)
return applied(R, CORRUPT, prev, '', 'half_open_probe_reclaimed', true)
