-- ARGV: stream_id, lease_ttl_ms, retention_ms
if redis.call('GET', lease) ~= ARGV[1] then return {'FENCED', 0, 0, redis.call('GET', lease) or ''} end
redis.call('PEXPIRE', lease, ARGV[2])
touch(tonumber(ARGV[3]))
return {'OK', 0, 0, ''}
