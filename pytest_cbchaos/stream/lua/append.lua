-- ARGV: stream_id, first_step, count, prev_seq, epoch, mid, now_ms, retention_ms, max_batch,
--       max_batch_bytes, error_code, error_message, then per event: kind, class, ts_ms, payload
local sid, first_step, count, prev = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local mid, now, ret = ARGV[6], ARGV[7], tonumber(ARGV[8])
if redis.call('EXISTS', meta) == 0 then return {'NO_STREAM', 0, 0, ''} end
local irec = redis.call('HGET', idem, sid)
if irec then
  local ls, fs, c = string.match(irec, '^(%d+):(%d+):(%d+)$')
  ls, fs, c = tonumber(ls), tonumber(fs), tonumber(c)
  if first_step <= ls then
    if first_step == ls - c + 1 and count == c then return {'DUP', fs, fs + c - 1, ''} end
    return {'IDEM_MISMATCH', 0, 0, irec}
  end
end
local epoch = redis.call('HGET', meta, 'epoch')
if epoch ~= ARGV[5] then return {'EPOCH', 0, 0, epoch or ''} end
local last = tonumber(redis.call('HGET', meta, 'last_seq'))
if last < prev then return {'ROLLBACK', 0, 0, tostring(last)} end
local holder = redis.call('GET', lease)
if holder ~= sid then return {'FENCED', 0, 0, holder or ''} end
local st = rec(mid, 'status')
if st ~= 'in_progress' then return {'CLOSED', 0, 0, st or ''} end
if last > prev then return {'CONFLICT', 0, 0, tostring(last)} end
if count < 1 or count > tonumber(ARGV[9]) or #ARGV ~= 12 + 4 * count then
  return {'BAD_BATCH', 0, 0, 'count'}
end
local bytes = 0
for i = 0, count - 1 do
  local b = 13 + 4 * i
  bytes = bytes + #ARGV[b + 3]
  if ARGV[b + 1] == 'terminal' and i ~= count - 1 then return {'BAD_BATCH', 0, 0, 'terminal not last'} end
end
if bytes > tonumber(ARGV[10]) then return {'BAD_BATCH', 0, 0, 'bytes'} end
local first = last + 1
local tkind = nil
for i = 0, count - 1 do
  local b = 13 + 4 * i
  last = last + 1
  redis.call('XADD', log, last .. '-0', 'm', mid, 's', sid, 'n', first_step + i, 'k', ARGV[b], 'c', ARGV[b + 1],
             't', ARGV[b + 2], 'x', epoch, 'p', ARGV[b + 3])
  if ARGV[b + 1] == 'terminal' then tkind = ARGV[b] end
end
redis.call('HSET', msgs, mid .. '|last_seq', last, mid .. '|updated_ms', now)
if tkind then
  local status = ({complete = 'completed', error = 'failed', cancelled = 'interrupted'})[tkind]
  redis.call('HSET', msgs, mid .. '|status', status, mid .. '|terminal_seq', last, mid .. '|terminal_kind', tkind)
  if tkind == 'error' then
    redis.call('HSET', msgs, mid .. '|error_code', ARGV[11], mid .. '|error_message', ARGV[12])
  end
  redis.call('DEL', lease)
end
redis.call('HSET', meta, 'last_seq', last)
redis.call('HSET', idem, sid, (first_step + count - 1) .. ':' .. first .. ':' .. count)
touch(ret)
return {'OK', first, last, tkind or ''}
