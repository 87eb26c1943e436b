-- ARGV: mid ('' = current), writer stream_id, ts_ms, payload, now_ms, retention_ms, new_epoch ('' = keep)
local now, ret = ARGV[5], tonumber(ARGV[6])
if redis.call('EXISTS', meta) == 0 then return {'NO_STREAM', 0, 0, ''} end
local mid = ARGV[1]
if mid == '' then mid = redis.call('HGET', meta, 'current_message_id') end
if not mid then return {'NONE', 0, 0, ''} end
local st = rec(mid, 'status')
if not st then return {'NONE', 0, 0, ''} end
if st ~= 'in_progress' then
  local ts = tonumber(rec(mid, 'terminal_seq')) or 0
  return {'ALREADY_TERMINAL', ts, ts, rec(mid, 'terminal_kind') or ''}
end
local holder = redis.call('GET', lease)
if holder then return {'LEASED', 0, 0, holder} end
local epoch = redis.call('HGET', meta, 'epoch')
if ARGV[7] ~= '' then epoch = ARGV[7]; redis.call('HSET', meta, 'epoch', epoch) end
local last = tonumber(redis.call('HGET', meta, 'last_seq')) + 1
redis.call('XADD', log, last .. '-0', 'm', mid, 's', ARGV[2], 'n', 1, 'k', 'cancelled', 'c', 'terminal',
           't', ARGV[3], 'x', epoch, 'p', ARGV[4])
redis.call('HSET', msgs, mid .. '|status', 'interrupted', mid .. '|last_seq', last, mid .. '|terminal_seq', last,
           mid .. '|terminal_kind', 'cancelled', mid .. '|updated_ms', now)
redis.call('HSET', meta, 'last_seq', last)
redis.call('HSET', idem, ARGV[2], '1:' .. last .. ':1')
touch(ret)
return {'OK', last, last, mid}
