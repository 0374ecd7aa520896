"""`[voice_in]`: the host's microphone from the console, its modes, the VAD, turns, barge-in and ASR."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MicMode = Literal["off", "passthrough", "conversation"]
VadName = Literal["silero", "webrtc"]
AsrName = Literal["pocketsphinx", "funasr", "funasr_server"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TurnConfig(_Section):
    """`[voice_in.turns]`: where speech starts and where a turn ends, from the VAD's frames."""

    threshold: float = Field(0.5, gt=0.0, lt=1.0)  # speech probability of a voiced frame
    min_speech_ms: int = Field(120, ge=30, le=1000)  # voiced this long: speech has started
    end_of_turn_ms: int = Field(700, ge=200, le=5000)  # silent this long after speech: the turn is over
    preroll_ms: int = Field(300, ge=0, le=1000)  # audio kept from before the start (ASR and pass-through)
    max_turn_s: float = Field(30.0, ge=2.0, le=300.0)  # a turn this long is ended (a stuck-open mic)


class BargeInConfig(_Section):
    """`[voice_in.barge_in]`: the person speaking while the avatar talks stops the avatar."""

    enabled: bool = True
    # while the avatar speaks, speech whose loudness follows the program's own audio (its echo from
    # the room's speakers) is not a barge-in: this is the envelope correlation that marks it as echo
    echo_guard: bool = True
    echo_correlation: float = Field(0.6, gt=0.0, lt=1.0)
    echo_max_delay_ms: int = Field(1000, ge=100, le=3000)  # program-to-mic delays searched


class PassthroughConfig(_Section):
    """`[voice_in.passthrough]`: the moderator's voice on air as the avatar's, at a fixed delay."""

    # from a sample reaching the broadcaster to its tick being due on air; more than program.lead_ms
    delay_ms: int = Field(500, ge=100, le=3000)


class PocketsphinxConfig(_Section):
    """`[voice_in.asr.pocketsphinx]`: offline English (the model in the pocketsphinx wheel by default)."""

    model_dir: Path | None = None  # a directory with the acoustic model, dictionary and language model
    hmm: str = "en-us"
    lm: str = "en-us.lm.bin"
    dictionary: str = "cmudict-en-us.dict"


class FunasrConfig(_Section):
    """`[voice_in.asr.funasr]`: FunASR in this process, from a model directory you download."""

    # e.g. a streaming Paraformer (paraformer-zh-streaming) or SenseVoiceSmall, downloaded beforehand
    model_dir: Path = Path("models/paraformer-zh-streaming")
    device: str = "cpu"
    # streaming Paraformer: [0, 10, 5] = 600 ms chunks, 300 ms look-ahead
    chunk_size: list[int] = Field(default_factory=lambda: [0, 10, 5], min_length=3, max_length=3)
    encoder_chunk_look_back: int = Field(4, ge=0, le=16)
    decoder_chunk_look_back: int = Field(1, ge=0, le=16)
    language: str = "auto"  # SenseVoice's language ("zh", "en", "auto")


class FunasrServerConfig(_Section):
    """`[voice_in.asr.funasr_server]`: a FunASR runtime server's WebSocket."""

    url: str = Field("ws://127.0.0.1:10095", pattern=r"^wss?://\S+$")
    mode: Literal["online", "offline", "2pass"] = "2pass"
    chunk_size: list[int] = Field(default_factory=lambda: [5, 10, 5], min_length=3, max_length=3)
    chunk_interval: int = Field(10, ge=1, le=100)
    encoder_chunk_look_back: int = Field(4, ge=0, le=16)
    decoder_chunk_look_back: int = Field(0, ge=0, le=16)
    hotwords: dict[str, int] = Field(default_factory=dict)  # word -> weight
    itn: bool = True
    verify_tls: bool = True  # the runtime's self-signed certificate needs false
    connect_timeout_s: float = Field(5.0, gt=0.0, le=60.0)
    final_timeout_s: float = Field(5.0, gt=0.0, le=60.0)  # end of speech to the final text


class AsrConfig(_Section):
    """`[voice_in.asr]`: the speech recogniser, and the one to use when it fails."""

    engine: AsrName = "pocketsphinx"
    fallback: AsrName | Literal[""] = ""
    pocketsphinx: PocketsphinxConfig = PocketsphinxConfig()
    funasr: FunasrConfig = FunasrConfig()
    funasr_server: FunasrServerConfig = FunasrServerConfig()

    @field_validator("fallback")
    @classmethod
    def _not_itself(cls, value: str, info: object) -> str:
        data = getattr(info, "data", {})
        if value and value == data.get("engine"):
            raise ValueError("the fallback must be another engine than voice_in.asr.engine")
        return value


class VoiceInConfig(_Section):
    """`[voice_in]`: the microphone endpoint (``/mic`` on the console's port) and what it does."""

    enabled: bool = True
    mode: MicMode = "conversation"  # at start; the console switches it live
    vad: VadName = "silero"
    host_name: str = Field("host", min_length=1, max_length=40)  # the host's name in the chat log
    subtitles: bool = False  # show the host's words on the picture, in the caption line
    max_rate: int = Field(48000, ge=8000, le=48000)  # highest sample rate a console may send
    turns: TurnConfig = TurnConfig()
    barge_in: BargeInConfig = BargeInConfig()
    passthrough: PassthroughConfig = PassthroughConfig()
    asr: AsrConfig = AsrConfig()

    def resolved(self, resolve: Callable[[Path], Path]) -> VoiceInConfig:
        """The config with its model directories made absolute (relative to the config file)."""
        asr = self.asr
        sphinx = asr.pocketsphinx
        if sphinx.model_dir is not None:
            sphinx = sphinx.model_copy(update={"model_dir": resolve(sphinx.model_dir)})
        funasr = asr.funasr.model_copy(update={"model_dir": resolve(asr.funasr.model_dir)})
        return self.model_copy(
            update={"asr": asr.model_copy(update={"pocketsphinx": sphinx, "funasr": funasr})}
        )
