"""Chat in: comment feeds and triage (arrives with the chat issue)."""
