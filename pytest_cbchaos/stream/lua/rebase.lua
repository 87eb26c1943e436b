-- After an append answered ROLLBACK (a restart lost the log's suffix, docs/stream-design.md#restart-and-lost-suffix):
-- rotate the epoch so no (epoch, seq) is reused with other bytes, then end the message with its error if its record
-- survived. ARGV: mid, stream_id, old_epoch, new_epoch, expected_last_seq, step, ts_ms, payload, now_ms, retention_ms,
--       error_code, error_message
local mid, sid, now, ret = ARGV[1], ARGV[2], ARGV[9], tonumber(ARGV[10])
if redis.call('EXISTS', meta) == 0 then return {'NO_STREAM', 0, 0, ''} end
local epoch = redis.call('HGET', meta, 'epoch')
if epoch ~= ARGV[3] then return {'EPOCH', 0, 0, epoch or ''} end
local last = tonumber(redis.call('HGET', meta, 'last_seq'))
if last ~= tonumber(ARGV[5]) then return {'CONFLICT', 0, 0, tostring(last)} end
local holder = redis.call('GET', lease)
if holder and holder ~= sid then return {'FENCED', 0, 0, holder} end
epoch = ARGV[4]
redis.call('HSET', meta, 'epoch', epoch)
local st = rec(mid, 'status')
if st ~= 'in_progress' then
  if holder then redis.call('DEL', lease) end
  touch(ret)
  return {st and 'ALREADY_TERMINAL' or 'NO_RECORD', 0, 0, epoch}
end
last = last + 1
redis.call('XADD', log, last .. '-0', 'm', mid, 's', sid, 'n', ARGV[6], 'k', 'error', 'c', 'terminal',
           't', ARGV[7], 'x', epoch, 'p', ARGV[8])
redis.call('HSET', msgs, mid .. '|status', 'failed', mid .. '|last_seq', last, mid .. '|terminal_seq', last,
           mid .. '|terminal_kind', 'error', mid .. '|error_code', ARGV[11], mid .. '|error_message', ARGV[12],
           mid .. '|updated_ms', now)
redis.call('HSET', meta, 'last_seq', last)
redis.call('HSET', idem, sid, ARGV[6] .. ':' .. last .. ':1')
redis.call('DEL', lease)
touch(ret)
return {'OK', last, last, epoch}
