"""Outputs: each consumes the program from its own bounded queue, in its own thread (invariant 2)."""
