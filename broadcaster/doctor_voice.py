"""The doctor's `voice_in` checks: the voice activity detector loads and the speech recogniser answers.

Both are what the console's microphone needs (``[voice_in]``); they are skipped when it is off. The
recogniser is opened as the show opens it (a model loaded, a server reached) and given one short turn
of silence, so a model directory that is missing or a FunASR server that is down shows here, before
the show, not at the host's first question.
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np

from broadcaster.config import Config
from broadcaster.doctor_checks import Check, Group, Outcome, in_thread
from broadcaster.listen.asr import AsrError, create_asr
from broadcaster.listen.vad import VadError, create_vad

ASR_LIMIT_S = 60.0  # a model may take tens of seconds to load
TURN_S = 0.5


def voice_in_group(cfg: Config, timeout: float) -> Group:
    """[voice_in]: the VAD and the speech recogniser (with its fallback), or one SKIP row when off."""
    voice_in = cfg.voice_in
    if not (voice_in.enabled and cfg.control.enabled):
        why = "voice_in.enabled = false" if not voice_in.enabled else "control.enabled = false (no /mic)"

        async def off() -> Outcome:
            return Outcome("SKIP", why)

        return Group("voice_in", [Check("voice in", off, timeout)])
    asr = voice_in.resolved(cfg.resolve).asr
    names = [asr.engine, *([asr.fallback] if asr.fallback else [])]
    return Group(
        "voice_in",
        [
            Check(f"vad {voice_in.vad}", partial(_vad, cfg), timeout),
            *(Check(f"asr {name}", partial(_asr, cfg, name), max(timeout, ASR_LIMIT_S)) for name in names),
        ],
    )


async def _vad(cfg: Config) -> Outcome:
    try:
        vad = await in_thread(lambda: create_vad(cfg.voice_in.vad))
    except VadError as exc:
        return Outcome("FAIL", f"voice_in.vad = {cfg.voice_in.vad!r}: {exc}")
    score = vad.probability(np.zeros(vad.frame_samples, np.int16))
    return Outcome("OK", f"loaded; a frame of silence scores {score:.2f}")


async def _asr(cfg: Config, name: str) -> Outcome:
    asr = cfg.voice_in.resolved(cfg.resolve).asr.model_copy(update={"engine": name, "fallback": ""})
    engine = create_asr(asr)
    began = time.monotonic()
    try:
        await engine.open()
        opened = time.monotonic() - began
        stream = engine.stream()
        stream.feed(np.zeros(round(TURN_S * engine.sample_rate), np.int16))
        transcript = await stream.finish()
    except AsrError as exc:
        return Outcome("FAIL", str(exc))
    finally:
        await engine.close()
    turn = time.monotonic() - began - opened
    heard = f", heard {transcript.text!r}" if transcript.text else ""
    return Outcome("OK", f"ready in {opened:.1f} s; a turn of silence recognised in {turn:.2f} s{heard}")
