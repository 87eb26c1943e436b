-- gate: a CLOSED record is a no-op whatever its failure count (G1). ARGV[4] = '1': the brief no-op reply (hot ops).
local FAST_OP, FAST_ZERO, FAST_BRIEF = true, false, ARGV[4] == '1'
