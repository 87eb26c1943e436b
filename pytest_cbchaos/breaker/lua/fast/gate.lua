-- gate: a CLOSED record is a no-op whatever its failure count (G1).
local FAST_OP, FAST_ZERO = true, false
