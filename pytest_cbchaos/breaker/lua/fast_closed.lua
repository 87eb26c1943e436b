-- Closed-state fast path (docs/breaker-design.md#closed-state-fast-path), run before the prologue by the
-- gate and record_success scripts: a record whose every field holds the value the codec writes for a
-- CLOSED record (or is absent) and no entry of this op id is answered here, with the reply the prologue would
-- build, without instantiating its helpers. Anything else (corrupt, non-canonical, a duplicate, a write
-- due) leaves FAST nil and the prologue decides. fast/<op>.lua sets FAST_OP (the op's arguments allow a
-- no-op here), FAST_ZERO (only with a zero failure count) and FAST_BRIEF (the caller, the hot ops, asked for
-- the brief no-op reply: recent_ops as '~<entry count>' instead of the entries; everything else as ever)
-- before this file.
local FAST
do
  local sub, byte = string.sub, string.byte
  local st, fc, lft, ou, act, tok, plu, pa, gen, ops = RAW[1], RAW[2] or '0', RAW[3] or '0', RAW[4] or '0',
    RAW[5], RAW[6], RAW[7], RAW[8], RAW[9] or '0', RAW[10] or ''
  local function int(s)
    return s == '0' or (#s <= 10 and find(s, '^[1-9]%d*$') and tonumber(s) <= 2147483647)
  end
  local function float(s)  -- '0' stands for an absent field; else the codec's '%.6f' form only
    if s == '0' then return '0' end
    if not find(s, '^%d+%.%d+$') then return nil end
    local v = tonumber(s)
    if v > 1e11 then return nil end
    if v == 0 then return '0' end
    return fmt('%.17g', v)
  end
  if FAST_OP and (not FAST_ZERO or fc == '0') and (not st or st == 'closed') and (not act or act == 'False')
      and (not tok or tok == '') and (not plu or plu == '0.000000') and (not pa or pa == '0.000000')
      and int(fc) and int(gen) then
    local flt, fou = float(lft), float(ou)
    local clean, n = flt and fou, 0
    if clean and ops ~= '' then
      -- canonical iff ops is 1-16 entries '<32 hex>=<state>><state>' joined by single spaces, walked with plain
      -- finds and sub (no per-character pattern: docs/breaker-design.md#closed-state-fast-path); the '=' after an
      -- id is part of the transition looked up (one call fewer per entry). An id is hex by
      -- tonumber(id, 16), whose strtoul also takes a sign, a 0x prefix, upper case, white space around it and a
      -- NUL after it: none of those characters may occur in ops (none does in a canonical one), nor a space at an
      -- id's start (ops starting with one, or two in a row) or end (' ='). An entry of this op id (found by plain
      -- search) is a duplicate, answered by the prologue.
      clean = byte(ops) ~= 32 and not (find(ops, OPID, 1, true) or find(ops, '  ', 1, true)
        or find(ops, ' =', 1, true) or find(ops, '\0', 1, true) or find(ops, '\t', 1, true)
        or find(ops, '\n', 1, true) or find(ops, '\v', 1, true) or find(ops, '\f', 1, true)
        or find(ops, '\r', 1, true) or find(ops, '+', 1, true) or find(ops, '-', 1, true)
        or find(ops, 'x', 1, true) or find(ops, 'X', 1, true) or find(ops, 'A', 1, true) or find(ops, 'B', 1, true)
        or find(ops, 'C', 1, true) or find(ops, 'D', 1, true) or find(ops, 'E', 1, true) or find(ops, 'F', 1, true))
      local trans = {['=closed>closed'] = 1, ['=closed>open'] = 1, ['=closed>half_open'] = 1, ['=open>closed'] = 1,
        ['=open>open'] = 1, ['=open>half_open'] = 1, ['=half_open>closed'] = 1, ['=half_open>open'] = 1,
        ['=half_open>half_open'] = 1}
      local pos, len = 1, #ops
      while clean do
        n = n + 1
        local j = find(ops, ' ', pos + 33, true) or len + 1
        if n > 16 or not trans[sub(ops, pos + 32, j - 1)]
            or not tonumber(sub(ops, pos, pos + 31), 16) then
          clean = false
        elseif j > len then
          break
        end
        pos = j + 1
      end
    end
    if clean then
      if FAST_BRIEF and ops ~= '' then ops = '~' .. n end  -- n: the walk's entry count, 1-16
      FAST = 'closed|' .. fc .. '|' .. flt .. '|' .. fou .. '|False||0|0|' .. gen .. '|' .. ops
        .. '|closed|closed|0|' .. fmt('%.17g', NOW) .. '|||0|0||'
    end
  end
end
if FAST then return FAST end
