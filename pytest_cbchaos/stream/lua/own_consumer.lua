-- KEYS[1] = <prefix>consumer:<client_id>; ARGV = token, px.
-- Refresh the connection's ownership of its client id unless a newer connection took it (INV-18).
-- One script: a GET-then-SET from the client let an older connection's refresh overwrite the
-- newer owner written between the two, and the newer one was then told it was superseded.
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return owner end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
