"""broadcaster: a 24/7 AI virtual streamer."""

__version__ = "0.1.0"
