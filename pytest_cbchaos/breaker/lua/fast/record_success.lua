-- record_success: a no-op on a CLOSED record with no failures counted, unless another state is expected (S1-S2).
-- ARGV[5] = '1': the brief no-op reply (hot ops).
local FAST_OP, FAST_ZERO, FAST_BRIEF = ARGV[3] == '' or ARGV[3] == 'closed', true, ARGV[5] == '1'
