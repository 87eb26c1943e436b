-- Shared head of every script: settings, clock, the record's raw fields. Mirrors record.py / kernel.py.
-- KEYS[1] = record key. ARGV[1] = '<time source> <client now> <ttl> <probe ttl>' (one string: fewer
-- arguments per call, docs/breaker-design.md#redis-store), ARGV[2] = op id; op arguments from ARGV[3].
local fmt, find, match, concat, call = string.format, string.find, string.match, table.concat, redis.call
local key = KEYS[1]
local SRC, CNOW, TTL, PTTL = match(ARGV[1], '^(%a+) (%S+) (%d+) (%d+)$')
TTL, PTTL = tonumber(TTL), tonumber(PTTL)
local NOW
if SRC == 'server' then
  local t = call('TIME')
  NOW = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  NOW = tonumber(CNOW)
end
local OPID = ARGV[2]
-- the record's fields in FIELDS order (false: absent); HMGET builds no table of its own in the script
local RAW = call('HMGET', key, 'state', 'failure_count', 'last_failure_time', 'open_until', 'half_open_probe_active',
  'probe_token', 'probe_lease_until', 'probe_anchor', 'probe_generation', 'recent_ops')
