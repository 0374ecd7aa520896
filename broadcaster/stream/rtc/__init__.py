"""WebRTC: one H.264 + Opus encode of the program, sent to WHIP servers and to browser previews."""
