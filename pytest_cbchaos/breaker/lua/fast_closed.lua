-- Closed-state fast path (docs/breaker-design.md#closed-state-fast-path), run before the prologue by the
-- gate and record_success scripts: a record whose every field holds the value the codec writes for a
-- CLOSED record (or is absent) and no entry of this op id is answered here, with the reply the prologue would
-- build, without instantiating its helpers. Anything else (corrupt, non-canonical, a duplicate, a write
-- due) leaves FAST nil and the prologue decides. fast/<op>.lua sets FAST_OP (the op's arguments allow a
-- no-op here) and FAST_ZERO (only with a zero failure count) before this file.
local FAST
do
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
    local clean = flt and fou
    if clean and ops ~= '' then
      -- canonical iff the entries '<32 hex>=<state>><state> ' tile ops .. ' ' (single spaces), at most 16, and
      -- no letter is upper case (%x, %l: one C call per character, no bracket class to parse); an entry of
      -- this op id (found by plain search) is a duplicate, answered by the prologue
      local valid = {['closed>closed'] = '', ['closed>open'] = '', ['closed>half_open'] = '', ['open>closed'] = '',
        ['open>open'] = '', ['open>half_open'] = '', ['half_open>closed'] = '', ['half_open>open'] = '',
        ['half_open>half_open'] = ''}
      local rest, n = string.gsub(ops .. ' ', string.rep('%x', 32) .. '=(%l+_?%l*>%l+_?%l*) ', valid)
      clean = n <= 16 and rest == '' and string.lower(ops) == ops and not find(ops, OPID, 1, true)
    end
    if clean then
      FAST = 'closed|' .. fc .. '|' .. flt .. '|' .. fou .. '|False||0|0|' .. gen .. '|' .. ops
        .. '|closed|closed|0|' .. fmt('%.17g', NOW) .. '|||0|0||'
    end
  end
end
if FAST then return FAST end
