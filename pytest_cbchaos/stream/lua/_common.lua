-- shared prelude (prepended to every script): KEYS = meta, log, msgs, idem, lease
local meta, log, msgs, idem, lease = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local function touch(ret)
  for i = 1, 4 do
    if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('PEXPIRE', KEYS[i], ret) end
  end
end
local function rec(mid, attr) return redis.call('HGET', msgs, mid .. '|' .. attr) end
