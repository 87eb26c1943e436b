-- ARGV: mid, stream_id, new_epoch, lease_ttl_ms, now_ms, retention_ms, ts_ms, payload,
--       reaper_id, superseded_payload, durability
local mid, sid, now, ret = ARGV[1], ARGV[2], ARGV[5], tonumber(ARGV[6])
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  epoch = ARGV[3]
  redis.call('HSET', meta, 'epoch', epoch, 'last_seq', 0, 'floor_seq', 0, 'created_ms', now, 'durability', ARGV[11])
end
local st = rec(mid, 'status')
if st then
  return {'DUP', tonumber(rec(mid, 'first_seq')), epoch, rec(mid, 'stream_id'), st}
end
local holder = redis.call('GET', lease)
if holder then return {'BUSY', 0, epoch, holder, ''} end
local last = tonumber(redis.call('HGET', meta, 'last_seq'))
local cur = redis.call('HGET', meta, 'current_message_id')
if cur and rec(cur, 'status') == 'in_progress' then
  last = last + 1
  redis.call('XADD', log, last .. '-0', 'm', cur, 's', ARGV[9], 'n', 1, 'k', 'cancelled', 'c', 'terminal',
             't', ARGV[7], 'x', epoch, 'p', ARGV[10])
  redis.call('HSET', msgs, cur .. '|status', 'interrupted', cur .. '|last_seq', last, cur .. '|terminal_seq', last,
             cur .. '|terminal_kind', 'cancelled', cur .. '|updated_ms', now)
  redis.call('HSET', idem, ARGV[9], '1:' .. last .. ':1')
end
last = last + 1
redis.call('XADD', log, last .. '-0', 'm', mid, 's', sid, 'n', 1, 'k', 'turn_started', 'c', 'control',
           't', ARGV[7], 'x', epoch, 'p', ARGV[8])
redis.call('HSET', msgs, mid .. '|status', 'in_progress', mid .. '|first_seq', last, mid .. '|last_seq', last,
           mid .. '|stream_id', sid, mid .. '|created_ms', now, mid .. '|updated_ms', now)
redis.call('HSET', meta, 'last_seq', last, 'current_message_id', mid)
redis.call('HSET', idem, sid, '1:' .. last .. ':1')
redis.call('SET', lease, sid, 'PX', ARGV[4])
touch(ret)
return {'OK', last, epoch, sid, 'in_progress'}
