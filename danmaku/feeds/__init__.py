"""Comment feeds, one module per wire protocol, chosen by ``type`` in a ``[[feeds]]`` table."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from danmaku.feeds.base import Feed, Sink
from danmaku.feeds.bilibili import BilibiliFeed, BilibiliFeedConfig
from danmaku.feeds.json_relay import JsonFeed, JsonFeedConfig
from danmaku.feeds.local import LocalFeed, LocalFeedConfig
from danmaku.feeds.twitch import TwitchFeed, TwitchFeedConfig

FeedConfigs = Annotated[
    BilibiliFeedConfig | TwitchFeedConfig | JsonFeedConfig | LocalFeedConfig, Field(discriminator="type")
]
FEED_TYPES: dict[str, type[Feed]] = {
    "bilibili": BilibiliFeed,
    "twitch": TwitchFeed,
    "json": JsonFeed,
    "local": LocalFeed,
}


def create_feed(cfg: FeedConfigs, sink: Sink) -> Feed:
    """The feed ``cfg.type`` names, delivering to ``sink``."""
    return FEED_TYPES[cfg.type](cfg, sink)
