"""`[chat]`: what deserves an answer and how often; validated once with the rest of config.toml.

The ``[[feeds]]`` tables are validated by each feed module's own config model (``danmaku.feeds``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from danmaku.events import Gift


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitsConfig(_Section):
    """`[chat.limits]`: rate limits and spam rules."""

    user_max: int = Field(2, ge=1, le=1000)  # candidates per user per user_window_s
    user_window_s: float = Field(60.0, gt=0, le=3600)
    flood_max: int = Field(8, ge=2, le=1000)  # messages per flood_window_s that mute a user...
    flood_window_s: float = Field(10.0, gt=0, le=600)
    flood_mute_s: float = Field(120.0, ge=0, le=86400)  # ...for this long
    global_per_s: float = Field(20.0, gt=0, le=100000)  # candidates admitted per second, all users
    repeat_window_s: float = Field(120.0, gt=0, le=3600)  # a user saying the same thing again
    copy_users: int = Field(5, ge=2, le=1000)  # this many users sending the same text: a spam wave


class BlockConfig(_Section):
    """`[chat.block]`: what is never answered."""

    words: tuple[str, ...] = ()
    lists: tuple[str, ...] = ()  # rule files, the safety filter's format
    users: tuple[str, ...] = ()  # "ID", "PLATFORM:ID" or "name:NAME"
    links: bool = True  # URLs and domain names
    contact: bool = True  # off-platform contact details (the safety filter's shipped contact rules)


class PriorityConfig(_Section):
    """`[chat.priority]`: the order candidates are answered in (higher first)."""

    paid: int = 300  # superchats, and thanks for gifts worth at least thanks.min_value
    question: int = 200  # questions, and messages naming the host or a product
    first_time: int = 100  # a viewer's first message
    other: int = 0
    greeting: int = -100  # welcomes and thanks for following


def _template(value: str) -> str:
    """A line template may use only {name}, {names}, {gifts} and {value}."""
    try:
        value.format(name="", names="", gifts="", value="")
    except (LookupError, ValueError, AttributeError, TypeError) as exc:  # {name.x}, {name[a]}
        raise ValueError(
            f"a template may use {{name}}, {{names}}, {{gifts}} and {{value}} only ({exc})"
        ) from exc
    return value


Template = Annotated[str, AfterValidator(_template)]


class ThanksConfig(_Section):
    """`[chat.thanks]`: one thank-you per viewer for the gifts sent within a window."""

    enabled: bool = True
    window_s: float = Field(5.0, ge=0, le=300)
    min_value: float = Field(1.0, ge=0)  # in chat.currency; cheaper gifts are logged, not thanked
    template: Template = "谢谢{name}送的{gifts}！"


class GreetingConfig(_Section):
    """`[chat.welcome]`: welcomes for viewers entering, and thanks for following, throttled."""

    enabled: bool = True
    interval_s: float = Field(30.0, ge=0, le=3600)  # at most one greeting of each kind this often
    max_names: int = Field(3, ge=1, le=10)
    welcome: Template = "欢迎{names}来到直播间！"
    follow: Template = "谢谢{names}的关注！"


class ChatConfig(_Section):
    """`[chat]`: triage and pacing of everything the feeds bring in."""

    def worth(self, gift: Gift | None) -> float:
        """A gift's value in ``currency`` (an unknown currency counts as equal to it)."""
        if gift is None:
            return 0.0
        if gift.currency == self.currency:
            return gift.value
        return gift.value * self.exchange.get(gift.currency, 1.0)

    answer: bool = True  # answer chat through the LLM (false: log only)
    interval_s: float = Field(8.0, ge=0, le=3600)  # at most one chat answer this often
    queue_size: int = Field(200, ge=1, le=100000)
    stale_s: float = Field(60.0, gt=0, le=86400)  # older comments are not answered
    max_chars: int = Field(200, ge=1, le=10000)
    min_chars: int = Field(2, ge=1, le=100)  # fewer letters (after emotes and "666") is chatter
    dedupe_ids: int = Field(100_000, ge=100, le=10_000_000)  # ids remembered for dedupe
    users: int = Field(20_000, ge=100, le=10_000_000)  # viewers remembered for limits and first-time
    currency: str = Field("CNY", pattern=r"^[A-Z]{3}$")  # gifts are ranked and thanked in this currency
    # what one unit of another currency is worth in `currency` (feeds give CNY, USD...)
    exchange: dict[str, float] = Field(default_factory=lambda: {"USD": 7.1, "EUR": 7.7})
    retention_days: float = Field(7.0, ge=0, le=3650)  # chat log rows kept (0: forever)
    raw_days: float = Field(1.0, ge=0, le=3650)  # each row's wire text kept this long (0: forever)
    limits: LimitsConfig = LimitsConfig()
    block: BlockConfig = BlockConfig()
    priority: PriorityConfig = PriorityConfig()
    thanks: ThanksConfig = ThanksConfig()
    welcome: GreetingConfig = GreetingConfig()
