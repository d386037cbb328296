"""Pure billing logic for Recur: no I/O, no clock reads, deterministic at import."""
