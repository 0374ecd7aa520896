"""The one config: `config.toml` parsed into typed, validated models at start (invariant 8).

A wrong value is reported once, at start, as ``key = value: what is allowed``; nothing later has to
second-guess the config.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from broadcaster.control.settings import ControlConfig
from broadcaster.face.look import BackgroundVideoConfig, ChromaConfig, OverlayConfig
from broadcaster.listen.settings import VoiceInConfig
from broadcaster.show.schedule import ScheduleEntry, zone
from broadcaster.stream.rtc.settings import RtcConfig, WhipOutputConfig, redact_text
from danmaku.config import ChatConfig
from danmaku.feeds import FeedConfigs

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")
RESOLUTIONS = {"720p": (1280, 720), "1080p": (1920, 1080)}
RECORD_SUFFIXES = (".flv", ".mp4", ".mkv")


class ConfigError(Exception):
    """A config value that is not allowed; the message names the key, the value and what is allowed."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProgramConfig(_Section):
    """`[program]`: the program clock and the picture size."""

    fps: Literal[25, 30] = 25
    resolution: Literal["720p", "1080p"] = "720p"
    sample_rate: Literal[48000] = 48000
    lead_ms: int = Field(300, ge=80, le=2000)
    background: str = "#1f2430"
    background_video: BackgroundVideoConfig = BackgroundVideoConfig()
    status_interval_s: float = Field(10.0, gt=0, le=3600)

    @field_validator("background")
    @classmethod
    def _background(cls, value: str) -> str:
        if value.startswith("#") and not re.fullmatch(r"#[0-9a-fA-F]{6}", value):
            raise ValueError("a colour is #rrggbb; anything else is taken as an image or video path")
        return value

    @property
    def size(self) -> tuple[int, int]:
        """Width and height in pixels."""
        return RESOLUTIONS[self.resolution]


class IdleConfig(_Section):
    """`[avatar.idle]`: how a still photo is made to look alive."""

    breathing_period_s: float = Field(4.6, ge=1.0, le=30.0)
    breathing_amount: float = Field(0.006, ge=0.0, le=0.03)
    sway_period_s: float = Field(7.3, ge=1.0, le=60.0)
    sway_degrees: float = Field(0.9, ge=0.0, le=4.0)


class AvatarConfig(_Section):
    """`[avatar]`: which avatar is on air and where it stands."""

    name: str = Field("sample", pattern=r"^[A-Za-z0-9_.-]+$")
    dir: Path = Path("avatars")
    scale: float = Field(1.0, ge=0.2, le=1.0)
    align: Literal["left", "center", "right"] = "center"
    preload: tuple[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")], ...] = ()
    idle: IdleConfig = IdleConfig()
    chroma: ChromaConfig = ChromaConfig()


class ClassicConfig(_Section):
    """`[face.classic]`: the weight-free lip-sync."""

    attack_ms: float = Field(25.0, ge=1.0, le=200.0)
    release_ms: float = Field(60.0, ge=1.0, le=400.0)
    jaw_drop: float = Field(0.09, ge=0.02, le=0.2)
    teeth: bool = True


class Wav2LipConfig(_Section):
    """`[face.wav2lip]`: the neural lip-sync, with a checkpoint the user brings."""

    checkpoint: str = ""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    batch: int = Field(16, ge=1, le=256)
    threads: int = Field(0, ge=0, le=64)


class FaceConfig(_Section):
    """`[face]`: the lip-sync backend and how long speech may wait for it."""

    lipsync: Literal["classic", "wav2lip"] = "classic"
    hold_ms: int = Field(1000, ge=0, le=10000)
    classic: ClassicConfig = ClassicConfig()
    wav2lip: Wav2LipConfig = Wav2LipConfig()


TTS_ENGINES = ("local", "edge", "gpt_sovits", "cosyvoice", "openai")


class SplitConfig(_Section):
    """`[voice.split]`: how text is cut into sentences for TTS."""

    max_chars: int = Field(60, ge=10, le=400)
    min_chars: int = Field(6, ge=1, le=100)
    first_min_chars: int = Field(4, ge=1, le=100)


class TtsCacheConfig(_Section):
    """`[voice.cache]`: synthesised audio kept on disk, so repeated lines are synthesised once."""

    enabled: bool = True
    dir: Path = Path(".cache/tts")
    max_mb: int = Field(512, ge=1, le=100000)


class LocalTtsConfig(_Section):
    """`[voice.local]`: offline speech, espeak-ng (bundled) or a piper voice file."""

    backend: Literal["espeak", "piper"] = "espeak"
    voice: str = "cmn"
    rate_wpm: int = Field(175, ge=80, le=450)
    pitch: int = Field(50, ge=0, le=99)
    piper_model: str = ""
    piper_speaker: int = Field(0, ge=0)


class EdgeTtsConfig(_Section):
    """`[voice.edge]`: Microsoft Edge's online voices (edge-tts)."""

    voice: str = "zh-CN-XiaoxiaoNeural"
    rate: str = Field("+0%", pattern=r"^[+-]\d+%$")
    pitch: str = Field("+0Hz", pattern=r"^[+-]\d+Hz$")
    volume: str = Field("+0%", pattern=r"^[+-]\d+%$")


class GptSovitsConfig(_Section):
    """`[voice.gpt_sovits]`: a self-hosted GPT-SoVITS server (api_v2.py)."""

    url: str = "http://127.0.0.1:9880"
    ref_audio_path: str = ""
    prompt_text: str = ""
    prompt_lang: str = "zh"
    text_lang: str = "zh"
    speed_factor: float = Field(1.0, ge=0.5, le=2.0)
    extra: dict[str, str | int | float | bool] = Field(default_factory=dict)


class CosyVoiceConfig(_Section):
    """`[voice.cosyvoice]`: a self-hosted CosyVoice FastAPI server (runtime/python/fastapi)."""

    url: str = "http://127.0.0.1:50000"
    mode: Literal["sft", "instruct"] = "sft"
    spk_id: str = "中文女"
    instruct_text: str = ""
    sample_rate: int = Field(22050, ge=8000, le=48000)


class OpenAiSpeechConfig(_Section):
    """`[voice.openai]`: any OpenAI-compatible ``/v1/audio/speech`` endpoint."""

    base_url: str = "https://api.openai.com/v1"
    api_key_env: str = "OPENAI_API_KEY"
    model: str = "tts-1"
    voice: str = "alloy"
    speed: float = Field(1.0, ge=0.25, le=4.0)


class VoiceConfig(_Section):
    """`[voice]`: the TTS fallback chain and the engines' settings."""

    engines: tuple[Literal[TTS_ENGINES], ...] = Field(("local",), min_length=1)  # type: ignore[valid-type]
    first_audio_timeout_s: float = Field(4.0, gt=0, le=60)
    timeout_s: float = Field(30.0, gt=0, le=600)
    prebuffer_ms: int = Field(80, ge=40, le=2000)
    ahead_s: float = Field(8.0, ge=1.0, le=120.0)
    split: SplitConfig = SplitConfig()
    cache: TtsCacheConfig = TtsCacheConfig()
    local: LocalTtsConfig = LocalTtsConfig()
    edge: EdgeTtsConfig = EdgeTtsConfig()
    gpt_sovits: GptSovitsConfig = GptSovitsConfig()
    cosyvoice: CosyVoiceConfig = CosyVoiceConfig()
    openai: OpenAiSpeechConfig = OpenAiSpeechConfig()

    @field_validator("engines")
    @classmethod
    def _engines(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("each engine at most once in the chain")
        return value


class LlmConfig(_Section):
    """`[llm]`: the model that writes replies; an empty ``base_url`` runs the bundled local model."""

    base_url: str = ""
    api_key_env: str = "LLM_API_KEY"
    model: str = "local"
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(120, ge=8, le=4096)
    first_token_timeout_s: float = Field(10.0, gt=0, le=300)
    timeout_s: float = Field(30.0, gt=0, le=600)
    local_threads: int = Field(0, ge=0, le=64)
    local_context: int = Field(2048, ge=256, le=32768)


class PersonaConfig(_Section):
    """`[persona]`: who the host is and how they speak."""

    name: str = "小播"
    style: str = "warm, lively and brief; one or two short sentences"
    system_prompt: str = ""
    reply_max_chars: int = Field(120, ge=10, le=2000)
    memory_turns: int = Field(3, ge=0, le=50)
    memory_viewers: int = Field(500, ge=1, le=100000)


class SafetyConfig(_Section):
    """`[safety]`: what is never said on air; the shipped lists plus the room's own."""

    defaults: bool = True
    lists: tuple[str, ...] = ()
    fact_guard: bool = True


class FillerConfig(_Section):
    """`[show.fillers]`: what keeps the room alive when nothing is queued."""

    enabled: bool = True
    after_s: float = Field(15.0, ge=2.0, le=3600.0)
    scripts: bool = True
    lines: tuple[str, ...] = (
        "欢迎来到直播间，有什么想了解的，打在公屏上，我都会回答哦。",
        "新来的朋友点个关注，不迷路。",
    )


class ShowConfig(_Section):
    """`[show]`: where the scripted talks and product facts live, and how the director runs the show."""

    library: Path = Path("scripts_library")
    # IANA zone of the schedule's cron/at/start times ("" = the machine's local zone)
    schedule_timezone: str = ""
    reload_interval_s: float = Field(1.0, ge=0.2, le=60.0)
    review: bool = False
    resume_after_s: float = Field(4.0, ge=0.0, le=600.0)
    boundary_s: float = Field(0.6, ge=0.1, le=5.0)
    fillers: FillerConfig = FillerConfig()

    @field_validator("schedule_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if value:
            zone(value)  # ValueError: not an IANA time zone
        return value


class VideoEncoding(_Section):
    """`[encoder.video]`: H.264 settings shared by every encoded output."""

    bitrate_kbps: int = Field(2500, ge=300, le=20000)
    preset: Literal[X264_PRESETS] = "superfast"  # type: ignore[valid-type]
    profile: Literal["baseline", "main", "high"] = "main"
    rate_control: Literal["cbr", "vbr"] = "cbr"
    filler: bool = False
    gop_seconds: float = Field(2.0, ge=0.5, le=10.0)
    threads: int = Field(1, ge=1, le=16)


class AudioEncoding(_Section):
    """`[encoder.audio]`: AAC-LC settings."""

    bitrate_kbps: int = Field(128, ge=32, le=320)


class EncoderConfig(_Section):
    """`[encoder]`: one encode, shared by the RTMP outputs and the recorders."""

    video: VideoEncoding = VideoEncoding()
    audio: AudioEncoding = AudioEncoding()


class RtmpOutputConfig(_Section):
    """`[[outputs]] type = "rtmp"`: a push to an RTMP(S) server or platform ingest."""

    type: Literal["rtmp"]
    url: str
    name: str = ""
    queue_seconds: float = Field(4.0, ge=0.5, le=60.0)
    stall_timeout_s: float = Field(6.0, ge=1.0, le=120.0)
    backoff_initial_s: float = Field(1.0, ge=0.1, le=60.0)
    backoff_max_s: float = Field(30.0, ge=1.0, le=600.0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.fullmatch(r"rtmps?://[^/\s]+/\S+", value):
            raise ValueError("an rtmp:// or rtmps:// URL with a host and an app/stream path")
        return value


class RecordOutputConfig(_Section):
    """`[[outputs]] type = "record"`: segmented archive files with the program's streams."""

    type: Literal["record"]
    path: str
    segment_seconds: int = Field(3600, ge=10, le=86400)
    queue_seconds: float = Field(10.0, ge=0.5, le=120.0)
    # below this much free space the recorder stops (its segment closed while it still can be) and
    # says so in /healthz; it goes on, in a new segment, once there is half as much again
    min_free_mb: int = Field(512, ge=0, le=1_000_000)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if Path(value).suffix.lower() not in RECORD_SUFFIXES:
            raise ValueError(f"a file path ending {', '.join(RECORD_SUFFIXES)}")
        return value


OutputConfig = Annotated[
    RtmpOutputConfig | WhipOutputConfig | RecordOutputConfig, Field(discriminator="type")
]


def output_from_target(target: str) -> OutputConfig:
    """An output from a ``--output`` argument, chosen by its form (URL scheme or file suffix)."""
    lowered = target.lower()
    try:
        if lowered.startswith(("rtmp://", "rtmps://")):
            return RtmpOutputConfig(type="rtmp", url=target)
        if lowered.startswith(("whip+http://", "whip+https://")):
            return WhipOutputConfig(type="whip", url=target[len("whip+") :])
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ConfigError(f"--output {target!r}: {reason}") from exc
    if Path(target).suffix.lower() in RECORD_SUFFIXES:
        return RecordOutputConfig(type="record", path=str(Path(target).resolve()))
    raise ConfigError(
        f"--output {target!r}: expected an rtmp(s):// URL, a whip+http(s):// URL "
        "or a file ending .flv, .mp4 or .mkv"
    )


class StoreConfig(_Section):
    """`[store]`: the SQLite file that keeps the chat log (and, later, the queue)."""

    path: Path = Path("data/broadcaster.sqlite3")
    # "normal" survives the process being killed; "full" also a power cut (an fsync per commit)
    synchronous: Literal["normal", "full"] = "normal"


class LogConfig(_Section):
    """`[log]`: how much the process says."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Config(_Section):
    """The whole config; every field has a working default."""

    program: ProgramConfig = ProgramConfig()
    avatar: AvatarConfig = AvatarConfig()
    face: FaceConfig = FaceConfig()
    encoder: EncoderConfig = EncoderConfig()
    voice: VoiceConfig = VoiceConfig()
    llm: LlmConfig = LlmConfig()
    persona: PersonaConfig = PersonaConfig()
    personas: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")], PersonaConfig] = Field(
        default_factory=dict
    )
    safety: SafetyConfig = SafetyConfig()
    show: ShowConfig = ShowConfig()
    chat: ChatConfig = ChatConfig()
    feeds: list[FeedConfigs] = Field(default_factory=list)
    store: StoreConfig = StoreConfig()
    outputs: list[OutputConfig] = Field(default_factory=list)
    rtc: RtcConfig = RtcConfig()
    schedule: list[ScheduleEntry] = Field(default_factory=list)
    control: ControlConfig = ControlConfig()
    overlay: OverlayConfig = OverlayConfig()
    voice_in: VoiceInConfig = VoiceInConfig()
    log: LogConfig = LogConfig()
    base_dir: Path = Field(Path(), exclude=True)

    def resolve(self, path: str | Path) -> Path:
        """A path from the config, relative to the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p


def read_toml(path: Path, error: type[Exception]) -> dict[str, Any]:
    """A TOML data file (product facts, safety rules); raises ``error`` naming the file if unreadable."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from exc
    except RecursionError:
        raise error(f"{path}: not valid TOML: nested too deeply") from None


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``dotted.key=value``; the value is read as TOML when it parses, else kept as a string."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected dotted.key=value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    except RecursionError:  # tomllib reads nested arrays and tables recursively, without a limit
        raise ConfigError(f"--set {key.strip()}: the value is nested too deeply") from None
    return key.strip().split("."), value


def apply_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``value`` at ``path`` inside nested dicts/lists (numeric parts index lists)."""
    node: Any = data
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, list):
            # ASCII digits only: "²".isdigit() holds, and int() refuses it (and 5000 digits)
            index = int(part) if part.isascii() and part.isdigit() and len(part) <= 9 else len(node)
            if index >= len(node):
                raise ConfigError(
                    f"--set {'.'.join(path)}: {part!r} is not an index of a list of {len(node)}"
                )
            if last:
                node[index] = value
            else:
                node = node[index]
        elif last:
            node[part] = value
        else:
            node = node.setdefault(part, {})
        if not last and not isinstance(node, dict | list):  # feeds.0.x where feeds = [1]
            raise ConfigError(f"--set {'.'.join(path)}: {part!r} holds a value, not a table")


PASSTHROUGH_MARGIN_MS = 100  # a 20-40 ms block and a tick, plus network jitter, before its tick is drawn
_UNION_TAGS = frozenset(("rtmp", "whip", "record", "local", "json", "bilibili", "twitch"))


_SECRET = re.compile(r"token|auth|cookie|key|secret|password", re.IGNORECASE)


def _shown(key: str, value: Any) -> str:
    """A value for an error message, with secrets (tokens, auth bodies, cookies) masked."""
    if isinstance(value, dict):  # URLs in it lose their stream keys and passwords too
        return redact_text(repr({k: "***" if _SECRET.search(str(k)) else v for k, v in value.items()}))
    return "***" if _SECRET.search(key.rsplit(".", 1)[-1]) and value else redact_text(repr(value))


def _describe(error: dict[str, Any]) -> str:
    loc = error["loc"]
    # the discriminated unions ([[outputs]], [[feeds]]) put the type in the path: leave it out
    key = ".".join(str(p) for i, p in enumerate(loc) if not (i == 2 and p in _UNION_TAGS))
    value = error.get("input")
    shown = "(missing)" if error["type"] == "missing" else _shown(key, value)
    allowed = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        allowed = "unknown key"
    elif error["type"] == "literal_error":
        allowed = "allowed: " + error["msg"].removeprefix("Input should be ")
    elif error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        allowed = "type must be one of " + str(error.get("ctx", {}).get("expected_tags", "?"))
    return f"{key} = {shown}: {allowed}"


def load_config(path: Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read, override and validate the config; raise ConfigError naming the first bad key."""
    data: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: no such config file") from exc
        except (OSError, UnicodeDecodeError) as exc:  # a folder, no permission, not UTF-8
            raise ConfigError(f"{path}: cannot read: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        except RecursionError:  # tomllib has no nesting limit of its own
            raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
        base = path.resolve().parent
    for item in overrides:
        apply_override(data, *parse_override(item))
    where = f"{path}: " if path else ""
    try:
        cfg = Config.model_validate({**data, "base_dir": base})
    except ValidationError as exc:
        raise ConfigError(where + "; ".join(_describe(dict(e)) for e in exc.errors())) from exc
    delay, lead = cfg.voice_in.passthrough.delay_ms, cfg.program.lead_ms
    if cfg.voice_in.enabled and delay < lead + PASSTHROUGH_MARGIN_MS:
        raise ConfigError(
            f"{where}voice_in.passthrough.delay_ms = {delay}: must be at least program.lead_ms + "
            f"{PASSTHROUGH_MARGIN_MS} = {lead + PASSTHROUGH_MARGIN_MS} (the voice reaches the track after a "
            "block of audio is complete, and the program draws its ticks lead_ms ahead)"
        )
    return cfg
