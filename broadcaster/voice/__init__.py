"""Speech: audio that goes on air, and (later) the TTS engines that make it."""
