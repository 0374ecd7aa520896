"""Comment feeds, one module per wire protocol, chosen by ``type`` in a ``[[feeds]]`` table."""

from __future__ import annotations

from danmaku.feeds.base import Feed, Sink
from danmaku.feeds.local import LocalFeed, LocalFeedConfig

FeedConfigs = LocalFeedConfig
FEED_TYPES: dict[str, type[Feed]] = {"local": LocalFeed}


def create_feed(cfg: FeedConfigs, sink: Sink) -> Feed:
    """The feed ``cfg.type`` names, delivering to ``sink``."""
    return FEED_TYPES[cfg.type](cfg, sink)
