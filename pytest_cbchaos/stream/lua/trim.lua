-- ARGV: keep_last ('' = unused), older_than_cutoff_ms ('' = unused), retention_ms
local keep = tonumber(ARGV[1])
local cutoff = tonumber(ARGV[2])
local all = redis.call('HGETALL', msgs)
local info = {}
for i = 1, #all, 2 do
  local f, v = all[i], all[i + 1]
  local m, attr = string.match(f, '^(.*)|([%w_]+)$')
  if m then
    info[m] = info[m] or {mid = m}
    info[m][attr] = v
  end
end
local list = {}
for _, r in pairs(info) do if r.first_seq then table.insert(list, r) end end
table.sort(list, function(a, b) return tonumber(a.first_seq) < tonumber(b.first_seq) end)
local last = tonumber(redis.call('HGET', meta, 'last_seq') or '0')
local n_remove = 0
if keep then n_remove = math.max(0, #list - keep) end
if cutoff then
  local k = 0
  for i, r in ipairs(list) do
    if r.status ~= 'in_progress' and tonumber(r.updated_ms or '0') < cutoff then k = i else break end
  end
  if keep then n_remove = math.min(n_remove, k) else n_remove = k end
end
if n_remove == 0 then return {'NOOP', tonumber(redis.call('HGET', meta, 'floor_seq') or '0'), 0} end
for i = 1, n_remove do
  if list[i].status == 'in_progress' then return {'REFUSED', tonumber(list[i].first_seq), 0, list[i].mid} end
end
local cut = last + 1
if list[n_remove + 1] then cut = tonumber(list[n_remove + 1].first_seq) end
local floor = tonumber(redis.call('HGET', meta, 'floor_seq') or '0')
if cut - 1 <= floor then return {'NOOP', floor, 0} end
redis.call('XTRIM', log, 'MINID', cut .. '-0')
redis.call('HSET', meta, 'floor_seq', cut - 1)
local attrs = {'status', 'first_seq', 'last_seq', 'terminal_seq', 'terminal_kind', 'stream_id', 'error_code',
               'error_message', 'cancel', 'created_ms', 'updated_ms'}
for i = 1, n_remove do
  for _, a in ipairs(attrs) do redis.call('HDEL', msgs, list[i].mid .. '|' .. a) end
end
touch(tonumber(ARGV[3]))
return {'OK', cut - 1, n_remove}
