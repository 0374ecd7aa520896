"""The show: what the host says (scripts, replies, product facts) and what it must never say."""
