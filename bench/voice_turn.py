"""A spoken turn, end to end: from the end of the host's speech to the first sample of the avatar's
answer on the program.

Runs the whole broadcaster in this process (the sample avatar, the console, conversation mode with
the default VAD and pocketsphinx, the bundled local LLM and the offline espeak-ng voice), streams
English questions spoken by espeak-ng into ``/mic`` in real time, as the dashboard does, and for each
turn splits the time from the last voiced sample's arrival to the tick carrying the answer's first
sample being due on air:

- ``vad_end_of_turn``: until the VAD calls the turn over (``voice_in.turns.end_of_turn_ms`` of silence);
- ``asr_final``: until the recogniser's final text;
- ``llm_first_sentence``: from the reply's start to its first sentence written and through the filter;
- ``tts_first_chunk``: until that sentence's first audio is on the speech track;
- ``overhead``: the rest: logging the host's words (a SQLite commit), the director's pick, the wait for
  the next tick and the program's lead (``program.lead_ms``), which is when an output sends it.

Prints ``RESULT {json}`` last. Usage: ``python bench/voice_turn.py [--turns 10] [--set key=value ...]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import percentile  # noqa: E402
from bench.mic_client import MicClient  # noqa: E402
from bench.voice_show import RunningShow, running_show, until  # noqa: E402
from tests.speech_samples import silence, speech  # noqa: E402

RATE = 48000
QUESTIONS = (
    "what is the price of the power bank",
    "how long does the battery last",
    "is the tea from this year",
    "can you show me the red one",
    "what is the price of the tea",
)
STAGES = ("vad_end_of_turn", "asr_final", "llm_first_sentence", "tts_first_chunk", "overhead")


async def one_turn(show: RunningShow, mic: MicClient, question: str) -> dict[str, float] | None:
    app = show.app
    listener = app.listener
    assert listener is not None
    turns_before = len(listener.turns)
    replies_before = len(app.show.host.recent)
    await mic.play(np.concatenate([speech(question, RATE), silence(0.3, RATE)]))
    await until(lambda: len(listener.turns) > turns_before and listener.turns[-1].final is not None, 30)
    turn = listener.turns[-1]
    if turn.text:  # logged in the chat log, then handed to the director
        with contextlib.suppress(TimeoutError):
            await until(lambda: turn.candidate is not None, 5)
    if turn.candidate is None:  # nothing recognised, or not logged
        print(f"  {question!r}: not answered (heard {turn.text!r})", file=sys.stderr)
        return None

    def first_utterance() -> Any:
        replies = list(app.show.host.recent)[replies_before:]
        speech_ = replies[-1].speech if replies else None
        if replies and replies[-1].first_sentence_at is not None and speech_ is None:
            return None
        first = speech_.first if speech_ is not None else None
        return first if first is not None and first.start_tick is not None else None

    await until(lambda: first_utterance() is not None, 90)
    reply = list(app.show.host.recent)[replies_before:][-1]
    first = first_utterance()
    spoken = reply.speech.sentences[0] if reply.speech is not None else None
    assert turn.ended is not None and turn.end_detected is not None and turn.final is not None
    assert reply.first_sentence_at is not None and spoken is not None and spoken.queued_at is not None
    on_air = app.clock.due(first.start_tick)
    total = on_air - turn.ended
    parts = {
        "vad_end_of_turn": turn.end_detected - turn.ended,
        "asr_final": turn.final - turn.end_detected,
        "llm_first_sentence": reply.first_sentence_at - reply.started_at,
        "tts_first_chunk": spoken.queued_at - reply.first_sentence_at,
    }
    parts["overhead"] = total - sum(parts.values())
    print(f"  {question!r} -> {turn.text!r}: {total * 1000:.0f} ms", file=sys.stderr)
    await until(lambda: not app.director.speaking(), 120)  # the answer is over before the next question
    await asyncio.sleep(0.5)
    return {"total": total * 1000, **{k: v * 1000 for k, v in parts.items()}}


async def measure(turns: int, overrides: list[str]) -> dict[str, Any]:
    from broadcaster.face.builder import build_avatar  # noqa: PLC0415
    from tests.conftest import grace_hopper  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build_avatar(grace_hopper(), "sample", work / "avatars")
        settings = [
            f"avatar.dir={json.dumps(str(work / 'avatars'))}",
            'voice_in.mode="conversation"',
            "llm.first_token_timeout_s=60",
            *overrides,
        ]
        async with running_show(work, settings) as show:
            app = show.app
            assert app.listener is not None
            await app.show.start_llm()  # the model loaded before the first turn, as a live room has it
            await until(lambda: app.listener is not None and app.listener.asr is not None, 60)
            mic = MicClient(show.port, show.token, RATE)
            await mic.open()
            mic.start_live()
            results: list[dict[str, float]] = []
            try:
                for i in range(turns):
                    found = await one_turn(show, mic, QUESTIONS[i % len(QUESTIONS)])
                    if found is not None:
                        results.append(found)
            finally:
                await mic.close()
            cfg = app.cfg
    totals = [r["total"] for r in results]
    out: dict[str, Any] = {
        "turns": turns,
        "answered": len(results),
        "vad": cfg.voice_in.vad,
        "asr": cfg.voice_in.asr.engine,
        "end_of_turn_ms": cfg.voice_in.turns.end_of_turn_ms,
        "program_lead_ms": cfg.program.lead_ms,
        "turn_p50_ms": percentile(totals, 50),
        "turn_p95_ms": percentile(totals, 95),
    }
    for stage in STAGES:
        values = [r[stage] for r in results]
        out[f"{stage}_p50_ms"] = percentile(values, 50)
        out[f"{stage}_p95_ms"] = percentile(values, 95)
        out[f"{stage}_mean_ms"] = round(statistics.fmean(values), 1) if values else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(measure(args.turns, args.overrides))
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
